//! `tla simulate`: run a policy online against a world file.

/// Arguments of `tla simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// The world file (tla-creative-world/v1).
    #[arg(long)]
    pub world: std::path::PathBuf,
}

pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet: {}", args.world.display())
}
