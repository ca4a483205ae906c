//! tandemd, tandem's daemon: one per box.
//!
//! `tandemd --config FILE [--socket PATH]` runs the box (not built yet);
//! `tandemd --check-config FILE` validates a config file: `FILE: OK` and exit 0, or every error
//! on stderr, one per line, and exit 1.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Parser};

/// tandem's daemon: a userspace HA router/firewall.
#[derive(Debug, Parser)]
#[command(name = "tandemd", version, about)]
#[command(group(ArgGroup::new("mode").required(true).args(["config", "check_config"])))]
struct Args {
    /// Run the box with this config file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Control socket path (with --config).
    #[arg(long, value_name = "PATH", conflicts_with = "check_config")]
    socket: Option<PathBuf>,

    /// Validate this config file and exit: 0 if valid, 1 with every error on stderr.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(file) = &args.check_config {
        return check_config(file);
    }
    eprintln!("tandemd: the daemon is not built yet");
    ExitCode::from(2)
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match tandem_control::config::load(file) {
        Ok(_) => {
            println!("{}: OK", file.display());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}
