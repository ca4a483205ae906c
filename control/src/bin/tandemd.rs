//! tandemd, tandem's daemon: one per box.
//!
//! `tandemd --config FILE [--socket PATH] [--busy-poll]` runs the box;
//! `tandemd --check-config FILE` validates a config file: `FILE: OK` and exit 0, or every error
//! on stderr, one per line, and exit 1. Warnings (valid but weak settings) go to stderr as
//! `warning: FILE: PATH: MESSAGE` and do not change the exit status.

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

    /// Workers spin on their rings when idle instead of backing off (a dedicated box).
    #[arg(long, conflicts_with = "check_config")]
    busy_poll: bool,

    /// Directory for state that outlives a restart (CARP maintenance mode).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/lib/tandem",
        conflicts_with = "check_config"
    )]
    state_dir: PathBuf,

    /// Validate this config file and exit: 0 if valid, 1 with every error on stderr.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(file) = &args.check_config {
        return check_config(file);
    }
    let Some(config) = args.config else {
        return ExitCode::from(2);
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let opts = tandem_control::daemon::DaemonOptions {
        config,
        socket: args
            .socket
            .unwrap_or_else(|| PathBuf::from(tandem_control::socket::DEFAULT_SOCKET)),
        busy_poll: args.busy_poll,
        state_dir: Some(args.state_dir),
    };
    match tandem_control::daemon::run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tandemd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match tandem_control::config::load(file) {
        Ok(config) => {
            for w in tandem_control::config::warnings(&file.display().to_string(), &config) {
                eprintln!("warning: {w}");
            }
            println!("{}: OK", file.display());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}
