//! tandemctl, tandem's command line: asks `tandemd` over its control socket and shows the answer
//! as pfSense's Status pages would, or as JSON with `--json`.
//!
//! Exit status: 0 done, 1 the request failed (`tandemctl: <why>` on stderr), 2 usage error.

use std::fs::File;
use std::io::BufWriter;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use serde::de::DeserializeOwned;
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use tandem_control::api::{
    self, CapturePollArgs, CapturePollReply, CaptureStartArgs, CarpReply, Command, ConfigApplyArgs,
    ConfigApplyReply, ConfigCheckArgs, ConfigCheckReply, ConfigShowReply, ConfigSyncReply,
    DhcpLeasesReply, NoArgs, RulesReply, StatesArgs, StatesKillArgs, StatesKillReply, StatesReply,
    StatsReply, StatusReply, SyncReply,
};
use tandem_control::human::{
    format_carp, format_config_sync, format_leases, format_rules, format_states, format_stats,
    format_status, format_sync,
};
use tandem_control::pcap::PcapWriter;
use tandem_control::socket::{self, ClientError, DEFAULT_SOCKET};
use tandem_control::state_kill::KillFilter;

/// How long one request may wait for its reply.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How often `capture` asks for frames.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// tandem's command line: status, CARP, states, rules, counters, config and capture.
#[derive(Debug, Parser)]
#[command(name = "tandemctl", version)]
pub(crate) struct Cli {
    /// tandemd's control socket.
    #[arg(long, global = true, value_name = "PATH", default_value = DEFAULT_SOCKET)]
    socket: PathBuf,

    /// Print the daemon's answer as JSON.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// The box: name, uptime, config generation, interfaces.
    Status,
    /// CARP virtual IPs and their state; `enable` or `disable` CARP on this box.
    Carp {
        #[command(subcommand)]
        action: Option<CarpAction>,
    },
    /// Persistent maintenance mode: `on` hands the VIPs to the peer and keeps them there.
    Maintenance {
        #[arg(value_enum)]
        mode: OnOff,
    },
    /// The state table, with NAT mappings; `kill` removes states (pfctl -k / -K).
    #[command(args_conflicts_with_subcommands = true)]
    States {
        #[command(subcommand)]
        action: Option<StatesAction>,
        /// Only states with this address at either end (either side of NAT).
        #[arg(long, value_name = "IP")]
        addr: Option<Ipv4Addr>,
        /// Only states with this port at either end (either side of NAT).
        #[arg(long, value_name = "PORT")]
        port: Option<u16>,
        /// Only states of this protocol.
        #[arg(long, value_enum)]
        proto: Option<Proto>,
        /// Show at most this many.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// Filter rules with their hit counters.
    Rules,
    /// Named counters (those not zero; --all for every one).
    Stats {
        /// Show the counters that are zero too.
        #[arg(long)]
        all: bool,
    },
    /// The state sync link.
    Sync,
    /// Check, apply or show the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Find the misconfigurations that make a failover fail: on the running box and its peer,
    /// or offline on config files (--config, --peer-config). Exit 1 when an error is found.
    Doctor {
        /// Check this config file, with no daemon.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// With --config: the peer's config file, for the checks over the pair.
        #[arg(long, value_name = "FILE", requires = "config")]
        peer_config: Option<PathBuf>,
    },
    /// The DHCP servers' leases (`dhcp leases`).
    Dhcp {
        #[command(subcommand)]
        action: DhcpAction,
    },
    /// Capture frames from inside the dataplane into a pcap file (tcpdump cannot see them).
    Capture {
        /// Only this interface (config name, e.g. lan); all when absent.
        #[arg(long, value_name = "NAME")]
        interface: Option<String>,
        /// Stop after this many frames.
        #[arg(long, value_name = "N", default_value_t = 100,
              value_parser = clap::value_parser!(u64).range(1..))]
        count: u64,
        /// The pcap file to write.
        #[arg(long, value_name = "FILE")]
        write: PathBuf,
        /// Only frames from or to this IPv4 address (ARP: sender or target).
        #[arg(long, value_name = "IP")]
        host: Option<Ipv4Addr>,
        /// Only TCP or UDP frames from or to this port.
        #[arg(long, value_name = "PORT")]
        port: Option<u16>,
        /// Give up waiting for frames after this many seconds.
        #[arg(long, value_name = "S", default_value_t = 30)]
        timeout: u64,
    },
}

#[derive(Debug, Subcommand)]
enum DhcpAction {
    /// Every lease: MAC, address, hostname, expiry (unix seconds), state.
    Leases,
}

#[derive(Debug, Subcommand)]
enum StatesAction {
    /// Remove the states that match every filter given, or every state with --all; the peer
    /// removes them too. Answers {"killed":N}.
    Kill {
        /// States with this address at either end (either side of NAT).
        #[arg(long, value_name = "IP")]
        addr: Option<Ipv4Addr>,
        /// States with this port at either end (either side of NAT).
        #[arg(long, value_name = "PORT")]
        port: Option<u16>,
        /// States of this protocol.
        #[arg(long, value_enum)]
        proto: Option<Proto>,
        /// States created by rule N.
        #[arg(long, value_name = "N")]
        rule: Option<u32>,
        /// Every state (pfctl -F state).
        #[arg(long, conflicts_with_all = ["addr", "port", "proto", "rule"])]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
enum CarpAction {
    /// Run CARP on this box.
    Enable,
    /// Stop CARP on this box: every VHID DISABLED, the peer takes the VIPs.
    Disable,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OnOff {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Proto {
    Tcp,
    Udp,
    Icmp,
}

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
        }
    }
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Validate FILE with the daemon's validator (locally when tandemd is not running).
    Check { file: PathBuf },
    /// Apply FILE (or re-read the daemon's config file) as a new generation, whole or not at all.
    Apply { file: Option<PathBuf> },
    /// The configuration in force (secrets masked; on a secondary, which sections its peer
    /// pushed).
    Show,
    /// Config sync: role, peer, last push, content hashes, in sync or not; `now` pushes at once
    /// (on the primary) and waits for the result.
    Sync {
        #[command(subcommand)]
        action: Option<SyncAction>,
    },
}

#[derive(Debug, Subcommand)]
enum SyncAction {
    /// Push the synced sections to the secondary now, whatever the hashes say.
    Now,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("tandemctl: {msg}");
            // A script that asked for JSON gets its error as JSON too.
            if cli.json {
                println!("{}", serde_json::json!({ "error": msg }));
            }
            ExitCode::FAILURE
        }
    }
}

/// The daemon's socket and how to print.
struct Ctl<'a> {
    socket: &'a Path,
    json: bool,
}

impl Ctl<'_> {
    fn call_raw<A: Serialize>(
        &self,
        cmd: Command,
        args: &A,
    ) -> Result<serde_json::Value, ClientError> {
        socket::request(self.socket, &cmd.request(args), REQUEST_TIMEOUT)
    }

    fn call<A: Serialize, R: DeserializeOwned>(&self, cmd: Command, args: &A) -> Result<R, String> {
        let data = self.call_raw(cmd, args).map_err(|e| e.to_string())?;
        api::from_data(cmd, data).map_err(|e| e.to_string())
    }

    /// Prints `reply` as JSON (typed, so fields come in their declared order) or as text.
    fn show<R: Serialize>(
        &self,
        reply: &R,
        human: impl FnOnce(&R) -> String,
    ) -> Result<(), String> {
        if self.json {
            println!("{}", to_json(reply)?);
        } else {
            print!("{}", human(reply));
        }
        Ok(())
    }
}

fn to_json<T: Serialize + ?Sized>(v: &T) -> Result<String, String> {
    serde_json::to_string(v).map_err(|e| format!("cannot print JSON: {e}"))
}

fn run(cli: &Cli) -> Result<ExitCode, String> {
    let ctl = Ctl {
        socket: &cli.socket,
        json: cli.json,
    };
    match &cli.cmd {
        Cmd::Status => {
            let r: StatusReply = ctl.call(Command::Status, &NoArgs {})?;
            ctl.show(&r, format_status)?;
        }
        Cmd::Carp { action } => {
            let cmd = match action {
                None => Command::Carp,
                Some(CarpAction::Enable) => Command::CarpEnable,
                Some(CarpAction::Disable) => Command::CarpDisable,
            };
            let r: CarpReply = ctl.call(cmd, &NoArgs {})?;
            ctl.show(&r, format_carp)?;
        }
        Cmd::Maintenance { mode } => {
            let cmd = match mode {
                OnOff::On => Command::MaintenanceOn,
                OnOff::Off => Command::MaintenanceOff,
            };
            let r: CarpReply = ctl.call(cmd, &NoArgs {})?;
            ctl.show(&r, format_carp)?;
        }
        Cmd::States {
            action:
                Some(StatesAction::Kill {
                    addr,
                    port,
                    proto,
                    rule,
                    all,
                }),
            ..
        } => {
            let args = StatesKillArgs {
                addr: *addr,
                port: *port,
                proto: proto.map(|p| p.name().to_string()),
                rule: *rule,
                all: *all,
            };
            // Refused here too, before anything is sent: the daemon refuses the same.
            KillFilter::of(&args).map_err(|e| e.to_string())?;
            let r: StatesKillReply = ctl.call(Command::StatesKill, &args)?;
            ctl.show(&r, |r| {
                let note = r
                    .note
                    .as_ref()
                    .map_or(String::new(), |n| format!("note: {n}\n"));
                format!("{} states killed\n{note}", r.killed)
            })?;
        }
        Cmd::States {
            action: None,
            addr,
            port,
            proto,
            limit,
        } => {
            let args = StatesArgs {
                addr: *addr,
                port: *port,
                proto: proto.map(|p| p.name().to_string()),
                limit: *limit,
            };
            let r: StatesReply = ctl.call(Command::States, &args)?;
            ctl.show(&r, format_states)?;
        }
        Cmd::Rules => {
            let r: RulesReply = ctl.call(Command::Rules, &NoArgs {})?;
            ctl.show(&r, format_rules)?;
        }
        Cmd::Stats { all } => {
            let r: StatsReply = ctl.call(Command::Stats, &NoArgs {})?;
            let ordered = r.ordered();
            if ctl.json {
                println!("{}", to_json(&OrderedStats(&ordered))?);
            } else {
                print!("{}", format_stats(&ordered, *all));
            }
        }
        Cmd::Dhcp {
            action: DhcpAction::Leases,
        } => {
            let r: DhcpLeasesReply = ctl.call(Command::DhcpLeases, &NoArgs {})?;
            // JSON keeps `expires` in unix seconds; people read how long is left.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            ctl.show(&r, |r| format_leases(r, now))?;
        }
        Cmd::Sync => {
            let r: SyncReply = ctl.call(Command::Sync, &NoArgs {})?;
            ctl.show(&r, format_sync)?;
        }
        Cmd::Config { action } => return config(&ctl, action),
        Cmd::Doctor {
            config,
            peer_config,
        } => return doctor(&ctl, config.as_deref(), peer_config.as_deref()),
        Cmd::Capture {
            interface,
            count,
            write,
            host,
            port,
            timeout,
        } => {
            let args = CaptureStartArgs {
                interface: interface.clone(),
                count: *count,
                host: *host,
                port: *port,
            };
            capture(&ctl, &args, write, Duration::from_secs(*timeout))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------------
// config

/// A config file's text, read with our own rights and sent to tandemd (which opens files only
/// for root: see `tandem_control::peer`).
fn read_config(path: &Path) -> Result<String, String> {
    tandem_control::config::read_file(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// `path` made absolute against our working directory: the daemon runs elsewhere.
fn absolute(path: &Path) -> Result<String, String> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| format!("cannot resolve {}: {e}", path.display()))?
            .join(path)
    };
    Ok(abs.display().to_string())
}

fn config(ctl: &Ctl<'_>, action: &ConfigAction) -> Result<ExitCode, String> {
    match action {
        ConfigAction::Check { file } => {
            let args = ConfigCheckArgs {
                path: absolute(file)?,
                text: Some(read_config(file)?),
            };
            let (reply, note) = match ctl.call_raw(Command::ConfigCheck, &args) {
                Ok(data) => (
                    api::from_data(Command::ConfigCheck, data).map_err(|e| e.to_string())?,
                    None,
                ),
                Err(ClientError::Connect { path, .. }) => (
                    check_locally(file),
                    Some(format!(
                        "tandemd is not running at {path}: checked locally by tandemctl {}",
                        env!("CARGO_PKG_VERSION")
                    )),
                ),
                Err(e) => return Err(e.to_string()),
            };
            let reply: ConfigCheckReply = reply;
            if let Some(note) = &note {
                eprintln!("tandemctl: {note}");
            }
            if ctl.json {
                println!("{}", to_json(&reply)?);
            } else if reply.valid {
                println!("{}: OK", file.display());
            } else {
                for e in &reply.errors {
                    eprintln!("{e}");
                }
            }
            Ok(if reply.valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        ConfigAction::Apply { file } => {
            let args = ConfigApplyArgs {
                path: file.as_deref().map(absolute).transpose()?,
                text: file.as_deref().map(read_config).transpose()?,
            };
            // Config sync before the apply: a primary's apply pushes, and the push's end is
            // told by its session count moving.
            let sync_before: Option<ConfigSyncReply> =
                ctl.call(Command::ConfigSync, &NoArgs {}).ok();
            let r: ConfigApplyReply = ctl.call(Command::ConfigApply, &args)?;
            if let Some(f) = file {
                if !r.config_file.is_empty()
                    && Path::new(&r.config_file)
                        != Path::new(&args.path.clone().unwrap_or_default())
                {
                    eprintln!(
                        "tandemctl: note: {} is in force, but tandemd's config file is still {} (only root's apply changes it): a restart or reload reads that one",
                        f.display(),
                        r.config_file
                    );
                }
            }
            let what = file.as_ref().map_or_else(
                || "the config file".to_string(),
                |f| f.display().to_string(),
            );
            let human = |r: &ConfigApplyReply| {
                let mut s = if r.changed {
                    format!("{what} applied: generation {}\n", r.generation)
                } else {
                    format!("{what}: no change (generation {})\n", r.generation)
                };
                for held in &r.held_until_restart {
                    s += &format!("note: {held}\n");
                }
                s
            };
            let sync = |r: &ConfigApplyReply| match &sync_before {
                Some(before) if r.changed => after_apply_sync(ctl, before),
                _ => (ExitCode::SUCCESS, None),
            };
            if ctl.json {
                // One document: the reply, with the secondary's refusal as its `error`.
                let (code, refused) = sync(&r);
                let mut v = serde_json::to_value(&r).map_err(|e| e.to_string())?;
                if let Some(e) = refused {
                    v["error"] =
                        format!("applied here, but the secondary refused the push: {e}").into();
                }
                println!("{}", to_json(&v)?);
                Ok(code)
            } else {
                ctl.show(&r, human)?;
                Ok(sync(&r).0)
            }
        }
        ConfigAction::Sync { action } => config_sync(ctl, action.is_some()),
        ConfigAction::Show => {
            let r: ConfigShowReply = ctl.call(Command::ConfigShow, &NoArgs {})?;
            ctl.show(&r, |r| {
                let mut s = format!("# {}\n{}", r.path, r.text);
                if !s.ends_with('\n') {
                    s.push('\n');
                }
                s
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// After a config apply that changed something: on a config sync primary, waits (up to 5 s)
/// for the push it started and says if the secondary refused it (exit 1: this box runs the new
/// config, the secondary the old one) or was not reached (retried on its own, exit 0); on a
/// secondary that runs a push, says that the pushed
/// sections come from the primary (an edit of them in this box's file has no effect). Returns
/// the exit status, and the secondary's refusal if it refused.
fn after_apply_sync(ctl: &Ctl<'_>, before: &ConfigSyncReply) -> (ExitCode, Option<String>) {
    match before.role.as_str() {
        "primary" => {
            let deadline = Instant::now() + Duration::from_secs(5);
            // A session that ended after the apply, with a word on the applied content (the
            // local hash now): in sync, not reached, or a push of that content. A retry already
            // under way when the apply came may end first, with the old content's answer.
            let answers = |r: &ConfigSyncReply| {
                let this = |h: &Option<String>| h.is_some() && *h == r.local_hash;
                r.sessions > before.sessions
                    && (r.in_sync
                        || r.last_error.is_some()
                        || r.last_push.as_ref().is_some_and(|p| this(&p.hash)))
            };
            let done = loop {
                match ctl.call::<_, ConfigSyncReply>(Command::ConfigSync, &NoArgs {}) {
                    Ok(r) if answers(&r) => break Some(r),
                    Ok(_) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(50))
                    }
                    _ => break None,
                }
            };
            let refused = |r: &ConfigSyncReply| {
                r.last_push
                    .as_ref()
                    .filter(|p| p.result == "refused")
                    .map(|p| p.error.clone().unwrap_or_default())
            };
            match done {
                Some(r) if r.in_sync && r.last_error.is_none() => (ExitCode::SUCCESS, None),
                // Not reached: the primary retries every 2 s on its own.
                Some(r) if r.last_error.is_some() => {
                    eprintln!(
                        "tandemctl: note: the secondary was not reached ({}): the push is \
                         retried every 2 s (tandemctl config sync shows when it is in sync)",
                        r.last_error.unwrap_or_default()
                    );
                    (ExitCode::SUCCESS, None)
                }
                // Refused: no retry will do better, the file must change.
                Some(r) if refused(&r).is_some() => {
                    let why = refused(&r).unwrap_or_default();
                    eprintln!(
                        "tandemctl: warning: applied here, but the secondary refused the push: \
                         {why}\ntandemctl: the boxes now run different configs (tandemctl config \
                         sync)"
                    );
                    (ExitCode::FAILURE, Some(why))
                }
                Some(_) => (ExitCode::SUCCESS, None),
                None => {
                    eprintln!(
                        "tandemctl: note: the push to the secondary has not ended after 5 s: \
                         see tandemctl config sync"
                    );
                    (ExitCode::SUCCESS, None)
                }
            }
        }
        "secondary" if before.version > 0 => {
            eprintln!(
                "tandemctl: note: this box is a config sync secondary: {} come from the primary's \
                 last push; an edit of them in this file has no effect (make it on the primary)",
                before.sections.join(", ")
            );
            (ExitCode::SUCCESS, None)
        }
        _ => (ExitCode::SUCCESS, None),
    }
}

/// `config sync [now]`. With `now`: asks the primary to push and waits (up to a session's
/// time) for the session to end; exit 1 unless the secondary then runs the same content.
fn config_sync(ctl: &Ctl<'_>, now: bool) -> Result<ExitCode, String> {
    let mut r: ConfigSyncReply = if now {
        let before: ConfigSyncReply = ctl.call(Command::ConfigSyncNow, &NoArgs {})?;
        let deadline = Instant::now() + Duration::from_secs(35);
        loop {
            let r: ConfigSyncReply = ctl.call(Command::ConfigSync, &NoArgs {})?;
            if r.forced_sessions > before.forced_sessions {
                break r;
            }
            if Instant::now() > deadline {
                return Err("config sync now: no answer from the push session in 35 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    } else {
        ctl.call(Command::ConfigSync, &NoArgs {})?
    };
    if r.role == "off" {
        r.last_error = Some("config sync is not configured ([ha.config_sync])".into());
    }
    ctl.show(&r, format_config_sync)?;
    let failed = now && (!r.in_sync || r.last_error.is_some());
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `doctor`: offline on files, or on the running box (which reads its peer).
fn doctor(
    ctl: &Ctl<'_>,
    file: Option<&Path>,
    peer_file: Option<&Path>,
) -> Result<ExitCode, String> {
    use tandem_control::doctor::{self, online::DoctorReply, BoxView, Report};
    let report: Report = match file {
        Some(file) => {
            // The text too: the push check merges the primary's file into the secondary's.
            let load = |f: &Path| {
                use tandem_control::config;
                let text = config::read_file(f)
                    .map_err(|e| format!("{}: cannot read: {e}", f.display()))?;
                let config =
                    config::parse(&f.display().to_string(), &text).map_err(|e| e.to_string())?;
                Ok::<_, String>((config, text))
            };
            let own = load(file)?;
            let peer = peer_file.map(load).transpose()?;
            doctor::examine(
                &BoxView {
                    config: &own.0,
                    live: None,
                    text: Some(&own.1),
                },
                peer.as_ref()
                    .map(|(c, t)| BoxView {
                        config: c,
                        live: None,
                        text: Some(t),
                    })
                    .as_ref(),
                None,
            )
        }
        None => {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let r: DoctorReply = ctl.call(Command::Doctor, &NoArgs {})?;
                if let (false, Some(report)) = (r.pending, r.report) {
                    break report;
                }
                if Instant::now() > deadline {
                    return Err("doctor: the daemon gave no report in 30 s".into());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    ctl.show(&report, Report::human)?;
    Ok(if report.has_errors() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn check_locally(file: &Path) -> ConfigCheckReply {
    let path = file.display().to_string();
    match tandem_control::config::load(file) {
        Ok(_) => ConfigCheckReply {
            path,
            valid: true,
            errors: Vec::new(),
        },
        Err(errors) => ConfigCheckReply {
            path,
            valid: false,
            errors: errors.messages(),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// capture

fn capture(
    ctl: &Ctl<'_>,
    args: &CaptureStartArgs,
    file: &Path,
    timeout: Duration,
) -> Result<(), String> {
    let f = File::create(file).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    let write_err = |e: std::io::Error| format!("cannot write {}: {e}", file.display());
    let mut pcap = PcapWriter::new(BufWriter::new(f)).map_err(write_err)?;
    if let Err(e) = ctl.call_raw(Command::CaptureStart, args) {
        let _ = std::fs::remove_file(file);
        return Err(e.to_string());
    }
    interrupt::catch();
    let result = capture_loop(ctl, args.count, &mut pcap, timeout);
    // Stop in every case, so the next capture is not refused; the loop's error comes first.
    let stopped = ctl.call_raw(Command::CaptureStop, &NoArgs {});
    let (written, dropped, end) = result?;
    stopped.map_err(|e| format!("capture.stop: {e}"))?;
    pcap.into_inner().map_err(write_err)?;
    match end {
        End::TimedOut => eprintln!(
            "tandemctl: timed out after {} s with {written} of {} frames",
            timeout.as_secs(),
            args.count
        ),
        End::Interrupted => eprintln!(
            "tandemctl: interrupted with {written} of {} frames",
            args.count
        ),
        End::Complete => {}
    }
    if ctl.json {
        let summary = serde_json::json!({
            "file": file.display().to_string(),
            "frames": written,
            "dropped": dropped,
            "timed_out": end == End::TimedOut,
            "interrupted": end == End::Interrupted,
        });
        println!("{summary}");
    } else {
        println!(
            "{written} frames written to {} ({dropped} dropped)",
            file.display()
        );
    }
    Ok(())
}

/// Why a capture ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// `count` frames, or the daemon said the capture is over.
    Complete,
    TimedOut,
    /// Ctrl-C (SIGINT).
    Interrupted,
}

/// Polls until `count` frames are written, the capture is done, `timeout`, or Ctrl-C. Returns
/// frames written, frames the dataplane dropped, and why it ended.
fn capture_loop<W: std::io::Write>(
    ctl: &Ctl<'_>,
    count: u64,
    pcap: &mut PcapWriter<W>,
    timeout: Duration,
) -> Result<(u64, u64, End), String> {
    let deadline = Instant::now() + timeout;
    let mut dropped = 0;
    loop {
        let want = usize::try_from(count - pcap.frames()).unwrap_or(usize::MAX);
        let args = CapturePollArgs { max: Some(want) };
        let r: CapturePollReply = ctl.call(Command::CapturePoll, &args)?;
        for frame in r.frames.iter().take(want) {
            let bytes = frame
                .bytes()
                .map_err(|e| format!("unreadable frame from tandemd: {e}"))?;
            pcap.write_frame(frame.ts_ns, &bytes, frame.orig_len)
                .map_err(|e| format!("cannot write the capture file: {e}"))?;
        }
        pcap.flush()
            .map_err(|e| format!("cannot write the capture file: {e}"))?;
        dropped = dropped.max(r.dropped);
        let end = if pcap.frames() >= count || r.done {
            Some(End::Complete)
        } else if interrupt::happened() {
            Some(End::Interrupted)
        } else if Instant::now() >= deadline {
            Some(End::TimedOut)
        } else {
            None
        };
        if let Some(end) = end {
            return Ok((pcap.frames(), dropped, end));
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// Ctrl-C during a capture ends it cleanly (stop, close the file, say how many), as it does
/// tcpdump; a second Ctrl-C kills tandemctl.
mod interrupt {
    use std::sync::atomic::{AtomicBool, Ordering};

    static INTERRUPTED: AtomicBool = AtomicBool::new(false);

    extern "C" fn on_sigint(_: libc::c_int) {
        INTERRUPTED.store(true, Ordering::Relaxed);
        // SAFETY: signal() is async-signal-safe; this restores the default action so that a
        // second Ctrl-C terminates the process.
        unsafe {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
        }
    }

    /// Catches the next SIGINT.
    pub fn catch() {
        let handler: extern "C" fn(libc::c_int) = on_sigint;
        // SAFETY: the handler only stores to an atomic and calls signal(), both
        // async-signal-safe; it stays valid for the life of the process (a plain fn).
        unsafe {
            libc::signal(libc::SIGINT, handler as libc::sighandler_t);
        }
    }

    /// Whether SIGINT arrived since `catch`.
    pub fn happened() -> bool {
        INTERRUPTED.load(Ordering::Relaxed)
    }
}

/// Counters as one JSON object in their order (serialised directly, not through a `Value`).
struct OrderedStats<'a>(&'a [(&'a str, u64)]);

impl Serialize for OrderedStats<'_> {
    fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        struct Counters<'a>(&'a [(&'a str, u64)]);
        impl Serialize for Counters<'_> {
            fn serialize<S: Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
                let mut m = ser.serialize_map(Some(self.0.len()))?;
                for (k, v) in self.0 {
                    m.serialize_entry(k, v)?;
                }
                m.end()
            }
        }
        let mut m = ser.serialize_map(Some(1))?;
        m.serialize_entry("counters", &Counters(self.0))?;
        m.end()
    }
}
