//! `tla`: the command line of TLA (Test, Learn, Adapt).
//!
//! `tla versions` inspects the version space of a campaign spec; `tla simulate` runs a
//! policy against a simulated world. This binary parses flags and calls the library
//! crates; it holds no statistics of its own.

mod simulate;
mod versions;

use clap::{Parser, Subcommand};

/// Test, Learn, Adapt: choose ad versions, learn which parts work for whom, adapt.
#[derive(Debug, Parser)]
#[command(name = "tla", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Count, show, sample or list the versions of a campaign spec.
    Versions(versions::VersionsArgs),
    /// Run a policy online against a simulated world file.
    Simulate(simulate::SimulateArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Versions(args) => versions::run(args),
        Command::Simulate(args) => simulate::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::from(2)
        }
    }
}
