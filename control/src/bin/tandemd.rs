//! tandemd, tandem's daemon: one per box.
//!
//! `tandemd --config FILE [--socket PATH] [--busy-poll]` runs the box;
//! `--log-format text|json|journald` picks the log output.
//! `tandemd --check-config FILE` validates a config file: `FILE: OK` and exit 0, or every error
//! on stderr, one per line, and exit 1. Warnings (valid but weak settings) go to stderr as
//! `warning: FILE: PATH: MESSAGE`, and what the doctor finds in the one box (`tandemctl doctor`'s
//! checks that need no peer) as `warning: doctor (SEVERITY): ...`; neither changes the exit
//! status.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Parser};

/// tandem's daemon: a userspace HA router/firewall.
#[derive(Debug, Parser)]
#[command(name = "tandemd", version)]
#[command(after_long_help = "\
Signals:
  SIGHUP           re-read the config file and apply it as `tandemctl config apply` does; a
                   config with errors is refused and the running one stays (logged)
  SIGTERM, SIGINT  stop: CARP masters bow out (the peer takes over at once), workers detach

Files:
  /etc/tandem/tandem.toml      the config (docs/config.md: every field, default and range)
  /run/tandem/tandemd.sock     the control socket (tandemctl)
  /var/lib/tandem/             --state-dir: maintenance mode, boot ids, the last config push
                               accepted (config-sync.json, with CARP passwords) and DHCP leases

Exit status:
  0  stopped on a signal, or --check-config found no error
  1  --check-config found errors, or the daemon could not start (the reason on stderr)
  2  a usage error (an unknown option, or neither --config nor --check-config)")]
#[command(group(ArgGroup::new("mode").required(true).args(["config", "check_config"])))]
pub(crate) struct Args {
    /// Run the box with this config file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Control socket path (with --config) [default: /run/tandem/tandemd.sock].
    #[arg(long, value_name = "PATH", conflicts_with = "check_config")]
    socket: Option<PathBuf>,

    /// Members of this group (name or number) may use the control socket too (mode 0660;
    /// default 0600: root only).
    #[arg(long, value_name = "GROUP", conflicts_with = "check_config")]
    socket_group: Option<String>,

    /// Workers spin on their rings when idle instead of backing off (a dedicated box).
    #[arg(long, conflicts_with = "check_config")]
    busy_poll: bool,

    /// Directory for state that outlives a restart (0700): CARP maintenance mode, boot ids,
    /// the config push in force on a config sync secondary, DHCP leases.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/lib/tandem",
        conflicts_with = "check_config"
    )]
    state_dir: PathBuf,

    /// Validate this config file and exit: 0 if valid, 1 with every error on stderr. Weak
    /// settings and the doctor's one-box findings are warnings on stderr.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,

    /// Log format on stderr. Default: journald (with fields) when started by systemd with its
    /// journal on stderr (JOURNAL_STREAM), else text. RUST_LOG filters (default info).
    #[arg(
        long,
        value_enum,
        value_name = "FORMAT",
        conflicts_with = "check_config"
    )]
    log_format: Option<LogFormat>,
}

/// How tandemd logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// One line per event, for people.
    Text,
    /// One JSON object per line, with the event's fields.
    Json,
    /// Straight to journald, each field a journal field (VHID, INTERFACE, PEER...).
    Journald,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(file) = &args.check_config {
        return check_config(file);
    }
    let Some(config) = args.config else {
        return ExitCode::from(2);
    };
    init_logs(args.log_format);
    let socket_group = match args
        .socket_group
        .as_deref()
        .map(|g| (g, tandem_control::peer::group_id(g)))
    {
        Some((g, None)) => {
            eprintln!("tandemd: --socket-group {g}: no such group");
            return ExitCode::FAILURE;
        }
        Some((_, id)) => id,
        None => None,
    };
    let opts = tandem_control::daemon::DaemonOptions {
        socket_group,
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

/// Whether stderr is the journal's stream: systemd sets `JOURNAL_STREAM=DEV:INODE` to it, but a
/// shell started from a unit inherits the variable, so stderr itself must be that file
/// (systemd.exec(5)).
fn stderr_is_the_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Some(var) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = var.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    // /proc/self/fd/2 resolves to the open file itself, sockets included.
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

fn init_logs(format: Option<LogFormat>) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let format = format.unwrap_or(if stderr_is_the_journal() {
        LogFormat::Journald
    } else {
        LogFormat::Text
    });
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Journald => match tracing_journald::layer() {
            Ok(j) => registry
                .with(j.with_syslog_identifier("tandemd".into()))
                .init(),
            Err(e) => {
                registry
                    .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
                    .init();
                tracing::warn!("journald not reachable ({e}): logging text to stderr");
            }
        },
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::io::stderr),
            )
            .init(),
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .init(),
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    use tandem_control::doctor::{self, BoxView};
    match tandem_control::config::load_with_text(file) {
        Ok((config, text)) => {
            let name = file.display().to_string();
            for w in tandem_control::config::warnings_in(&name, &config, &text) {
                eprintln!("warning: {w}");
            }
            // Valid is not yet safe to fail over with: the doctor's checks of one box (rules
            // that shut out the peer's CARP adverts or sync, NAT to a box address), as
            // warnings. The exit status stays the validation's: the unit runs this before
            // every start.
            let box_view = BoxView {
                config: &config,
                live: None,
                text: None,
            };
            let report = doctor::examine(&box_view, None, None);
            // The config's own warnings, which the doctor repeats, are printed above.
            let found: Vec<_> = report
                .findings
                .iter()
                .filter(|f| f.id != "config-warning")
                .collect();
            for f in &found {
                eprintln!("warning: doctor ({}): {}", f.severity.as_str(), f.line());
            }
            if !found.is_empty() {
                eprintln!(
                    "warning: `tandemctl doctor --config FILE --peer-config PEER_FILE` checks the pair"
                );
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
