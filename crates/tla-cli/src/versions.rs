//! `tla versions`: count, show, sample and list the versions of a campaign spec.

/// Arguments of `tla versions`.
#[derive(Debug, clap::Args)]
pub struct VersionsArgs {
    /// The campaign spec (TOML or JSON).
    pub spec: std::path::PathBuf,
}

pub fn run(args: VersionsArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet: {}", args.spec.display())
}
