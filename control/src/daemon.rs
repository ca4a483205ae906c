//! `tandemd`: one daemon per box. It loads and compiles the config, starts the workers (one
//! pinned thread each, on AF_XDP), a housekeeping thread (state expiry, neighbour ageing), CARP
//! on a thread of its own ([`crate::carp::thread`]: nothing on the control thread can delay its
//! timers) and serves the control socket from the main thread, which is also where reloads
//! happen.
//!
//! Stop order on SIGTERM/SIGINT: the control socket closes first (no request sees a half-stopped
//! box), then the workers (each detaches its XDP program), then housekeeping.
//!
//! Reload (SIGHUP, `tandemctl config apply`): the file is loaded, validated and compiled into a
//! new generation off to the side; only a complete generation is swapped in (arc-swap), so a
//! packet sees the old ruleset or the new one and a config with errors changes nothing. States
//! survive: they live in the table, not in the generation. A change of dataplane interfaces
//! needs new sockets, so it is refused with a message saying to restart.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tandem_dataplane::io::afxdp::{remove_xdp_programs, PortSpec, Queues, WorkerConfig};
use tandem_dataplane::pipeline::{Dataplane, PipelineConfig};
use tandem_dataplane::state::{Clock, StateTable, TableConfig};
use tandem_dataplane::worker::{IdlePolicy, Worker, WorkerSpec};
use tandem_sync::journal::{JournalConfig, SyncJournal};

use crate::carp::thread::CarpHandle;
use crate::compile::{compile, device_mac, Compiled};
use crate::config::{self, Config};
use crate::config_sync::service::{ConfigSync, SyncRules};
use crate::config_sync::store::StoredPush;
use crate::socket::ControlServer;
use crate::sync_service::{SyncService, SyncSetup};

/// How `tandemd` was started.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub config: PathBuf,
    pub socket: PathBuf,
    /// Workers spin on their rings instead of backing off when idle.
    pub busy_poll: bool,
    /// Where state that outlives a restart is kept (CARP maintenance mode).
    pub state_dir: Option<PathBuf>,
    /// The control socket's group (mode 0660); `None`: root and tandemd's user only (0600).
    pub socket_group: Option<u32>,
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The config file has errors (each on its own line).
    #[error("{0}")]
    Config(config::ConfigErrors),
    /// The config is valid but cannot be run here.
    #[error("{path}: {source}")]
    Compile {
        path: String,
        source: crate::compile::CompileError,
    },
    /// A worker could not open its ports.
    #[error("worker {worker}: {source}")]
    Worker {
        worker: usize,
        source: tandem_dataplane::io::afxdp::OpenError,
    },
    /// The control socket could not be bound.
    #[error("control socket {path}: {source}")]
    Socket {
        path: String,
        source: std::io::Error,
    },
    /// State sync could not start (the sync interface's socket, the key, the thread).
    #[error("{0}")]
    StateSync(crate::sync_service::SyncStartError),
    /// `ha.state_sync.interface` names no interface of the config.
    #[error("ha.state_sync.interface: no interface {0}")]
    NoSyncInterface(String),
    /// Config sync could not start (no sync link, the listener, its threads).
    #[error("{0}")]
    ConfigSync(#[source] crate::config_sync::ConfigSyncError),
    /// The DHCP thread could not be started.
    #[error("dhcp: cannot start the DHCP thread: {0}")]
    Dhcp(std::io::Error),
    /// The CARP thread could not be started.
    #[error("carp: cannot start the CARP thread: {0}")]
    Carp(std::io::Error),
    /// The housekeeping thread (state expiry, neighbour ageing) could not be started.
    #[error("cannot start the housekeeping thread: {0}")]
    Housekeeping(std::io::Error),
    /// Signal handlers could not be installed.
    #[error("signals: {0}")]
    Signals(std::io::Error),
}

/// Why a config was not swapped in (`config apply`, SIGHUP); the running one stays, unchanged.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file cannot be read or does not validate (each error names its field).
    #[error("{0}")]
    Invalid(config::ConfigErrors),
    /// On a config sync secondary: the file merged with the sections the primary pushed does
    /// not validate.
    #[error("{path}: with the sections pushed by {from} (version {version}) merged in:\n{}", .errors.join("\n"))]
    Merge {
        path: String,
        from: String,
        version: u64,
        errors: Vec<String>,
    },
    /// `ha.config_sync`'s channel settings changed (its sections may change at any time).
    #[error(
        "{path}: ha.config_sync changed (other than its sections); restart tandemd to apply this"
    )]
    ConfigSyncChanged { path: String },
    /// It validates but cannot run on this box as the next generation.
    #[error("{path}: {source}")]
    Prepare { path: String, source: PrepareError },
}

/// Why a valid config cannot be the next generation of the running box.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// It does not compile for this box (a device without a MAC, ...).
    #[error("{0}")]
    Compile(crate::compile::CompileError),
    /// A setting the running threads were built with changed.
    #[error("{0} changed; restart tandemd to apply this")]
    RestartNeeded(&'static str),
    /// The dataplane interfaces changed.
    #[error("the dataplane interfaces changed ({old} -> {new}); restart tandemd to apply this")]
    InterfacesChanged { old: String, new: String },
}

/// A running box.
#[derive(Debug)]
pub struct Daemon {
    pub(crate) dp: Arc<Dataplane>,
    pub(crate) workers: Vec<Worker>,
    pub(crate) config_path: PathBuf,
    /// The config in force.
    pub(crate) config: Config,
    /// Its text: the file's, or on a config sync secondary the file merged with the push.
    pub(crate) config_text: Arc<String>,
    /// The config file's own text, as last loaded.
    pub(crate) file_text: String,
    /// What the last apply could not put in force until a restart (a raised state limit, a new
    /// metrics address), for `config apply`'s reply.
    pub(crate) held_until_restart: Vec<String>,
    /// The metrics endpoint's address, bound at start.
    metrics_listen_at_start: Option<std::net::SocketAddr>,
    /// Config sync, when `[ha.config_sync]` is set.
    pub(crate) config_sync: Option<ConfigSync>,
    /// The push in force on a config sync secondary.
    pub(crate) pushed: Option<StoredPush>,
    /// When this box last published what its peer's doctor reads.
    pub(crate) inspection_published: Option<Instant>,
    /// A `tandemctl doctor` waiting for the peer's answer.
    pub(crate) doctor_pending: Option<crate::doctor::online::Pending>,
    /// The sync interface's rules, for config sync's listener (swapped on every apply).
    sync_rules: Arc<arc_swap::ArcSwap<SyncRules>>,
    pub(crate) compiled_devices: Vec<String>,
    pub(crate) generation: u64,
    pub(crate) started: Instant,
    pub(crate) clock: Clock,
    pub(crate) carp: CarpHandle,
    pub(crate) dhcp: crate::dhcp::DhcpHandle,
    pub(crate) sync: Option<SyncService>,
    pub(crate) state_dir: Option<PathBuf>,
    housekeeping: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl Daemon {
    /// Loads, compiles and starts everything but the control socket.
    pub fn start(opts: &DaemonOptions) -> Result<Daemon, DaemonError> {
        let (file_config, file_text) = load(&opts.config).map_err(DaemonError::Config)?;
        if let Some(dir) = &opts.state_dir {
            make_state_dir(dir);
        }
        // A config sync secondary runs its file merged with the last push it accepted.
        let mut pushed =
            crate::config_sync::daemon::stored(&file_config, opts.state_dir.as_deref());
        let (config, text) = match &pushed {
            Some(p) => match crate::config_sync::daemon::effective(&file_text, p) {
                Ok(merged) => merged,
                Err(e) => {
                    tracing::error!(
                        "config sync: the stored push (version {}) no longer fits the file, running the file alone:\n{}",
                        p.version,
                        e.join("\n")
                    );
                    pushed = None;
                    (file_config, file_text.clone())
                }
            },
            None => (file_config, file_text.clone()),
        };
        let compiled = compile(&config, 1, &device_mac).map_err(|source| DaemonError::Compile {
            path: opts.config.display().to_string(),
            source,
        })?;
        let Compiled {
            generation,
            devices,
            sync: sync_filter,
        } = compiled;
        let sync_rules = Arc::new(arc_swap::ArcSwap::from_pointee(link_rules(
            &config,
            sync_filter,
        )));
        let nworkers = usize::from(config.system.workers.max(1));
        // The key index, the workers' table, is mapped whole for the limit (it never grows).
        // The id index (walked by sync, expiry and the CLI; a worker only inserts into it and
        // removes from it, never looks a key up) grows on demand: presized for the limit, its
        // 4096 shards spread a small table over megabytes, which cost every new connection
        // 18-37 %, and growing costs the sync thread nothing measurable (perf/RESULTS.md).
        let table_config = TableConfig {
            creator: config.system.host_id.get(),
            limit: config.system.state_limit,
            capacity: 0,
            ..TableConfig::default()
        };
        // With state sync, every insert, update and delete of the workers goes to the journal
        // the sync thread drains.
        let state_sync = config.ha.state_sync.as_ref().filter(|s| s.enabled);
        let journal = state_sync.map(|_| Arc::new(SyncJournal::new(JournalConfig::default())));
        let states = match &journal {
            Some(j) => StateTable::with_journal(table_config, j.clone()),
            None => StateTable::new(table_config),
        };
        // Sized from this config: nothing is held at start.
        let _ = crate::compile::apply_table_limits(&states, &config.system);
        let dp = Dataplane::new(generation, states);
        // IP aliases are always held; CARP VIPs only once CARP elects this box master.
        let clock = Clock::new();
        let (control_tx, control_rx) = crossbeam_channel::bounded(1024);
        // DHCP has its own queue: a flood of it never takes CARP's places.
        let (dhcp_tx, dhcp_rx) = crossbeam_channel::bounded(256);

        let ncpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let exclusive = nworkers == 1;
        let names: Vec<&str> = devices.iter().map(String::as_str).collect();
        if !exclusive {
            // Shared interfaces: stale programs go once, before any worker binds.
            remove_xdp_programs(&names)
                .map_err(|source| DaemonError::Worker { worker: 0, source })?;
        }
        let mut workers = Vec::with_capacity(nworkers);
        for w in 0..nworkers {
            let ports = devices
                .iter()
                .enumerate()
                .map(|(i, dev)| PortSpec {
                    if_index: u8::try_from(i).unwrap_or(u8::MAX),
                    name: dev.clone(),
                    queues: worker_queues(dev, w, nworkers),
                })
                .collect();
            let spec = WorkerSpec {
                index: w,
                // Core 0 is left to the control plane and the kernel when there is more than one.
                core: Some(if ncpus > 1 { (w + 1) % ncpus } else { 0 }),
                ports: WorkerConfig {
                    ports,
                    exclusive,
                    ring_size: config.system.ring_size,
                    ..WorkerConfig::default()
                },
                pipeline: PipelineConfig::default(),
                idle: if opts.busy_poll {
                    IdlePolicy::BusyPoll
                } else {
                    IdlePolicy::default()
                },
                budget: 256,
                dhcp: Some(dhcp_tx.clone()),
            };
            let worker = Worker::start(dp.clone(), spec, clock, control_tx.clone())
                .map_err(|source| DaemonError::Worker { worker: w, source })?;
            workers.push(worker);
        }
        tracing::info!(
            hostname = %config.system.hostname,
            workers = nworkers,
            interfaces = ?devices,
            "dataplane running"
        );
        hint_state_pages(config.system.state_limit);
        let housekeeping =
            Some(start_housekeeping(dp.clone(), clock).map_err(DaemonError::Housekeeping)?);
        // State sync before CARP starts: its bulk update holds CARP demoted, so that a box that
        // (re)starts takes no VIP before it holds the peer's states.
        // DHCP leases ride the state sync link (the DHCP server's failover peer).
        let (lease_out_tx, lease_out_rx) = crossbeam_channel::bounded(4096);
        let (lease_in_tx, lease_in_rx) = crossbeam_channel::bounded(4096);
        let mut replication = crate::dhcp::Replication::default();
        let sync = match (state_sync, journal) {
            (Some(ss), Some(journal)) => {
                let iface = config
                    .interface(&ss.interface)
                    .ok_or_else(|| DaemonError::NoSyncInterface(ss.interface.clone()))?;
                let setup = SyncSetup {
                    host_id: config.system.host_id.get(),
                    key: ss.key.as_bytes().to_vec(),
                    peer: ss.peer,
                    device: iface.device.clone(),
                    own_ip: iface.ip(),
                    rules: sync_rules.clone(),
                    state_dir: opts.state_dir.clone(),
                    leases: crate::sync_service::LeaseLink {
                        to_peer: Some(lease_out_rx),
                        from_peer: Some(lease_in_tx),
                    },
                };
                replication = crate::dhcp::Replication {
                    to_peer: Some(lease_out_tx),
                    from_peer: Some(lease_in_rx),
                };
                let service = SyncService::start(setup, dp.states.clone(), journal, clock)
                    .map_err(DaemonError::StateSync)?;
                Some(service)
            }
            _ => None,
        };
        // Adverts and gratuitous ARPs leave through worker 0, which has a port on every
        // dataplane interface.
        let carp = CarpHandle::start(
            &config,
            &devices,
            dp.clone(),
            workers[0].slow_tx.clone(),
            opts.state_dir.clone(),
            control_rx,
            sync.as_ref().is_some_and(SyncService::bulk_pending),
        )
        .map_err(DaemonError::Carp)?;
        let dhcp = crate::dhcp::DhcpHandle::start(
            &config,
            dp.clone(),
            dhcp_rx,
            workers[0].slow_tx.clone(),
            opts.state_dir.clone(),
            replication,
        )
        .map_err(DaemonError::Dhcp)?;
        let config_sync =
            crate::config_sync::daemon::start(&config, pushed.as_ref(), sync_rules.clone())
                .map_err(DaemonError::ConfigSync)?;
        let metrics_listen_at_start = config.system.metrics_listen;
        let daemon = Daemon {
            dp,
            workers,
            config_path: opts.config.clone(),
            config,
            config_text: Arc::new(text),
            file_text,
            held_until_restart: Vec::new(),
            metrics_listen_at_start,
            config_sync,
            pushed,
            inspection_published: None,
            doctor_pending: None,
            sync_rules,
            compiled_devices: devices,
            generation: 1,
            started: Instant::now(),
            clock,
            carp,
            dhcp,
            sync,
            state_dir: opts.state_dir.clone(),
            housekeeping,
        };
        // The primary checks its secondary at once: it may have missed changes while down.
        daemon.offer_config(false);
        Ok(daemon)
    }

    /// Loads `path` (or the running config's file), compiles it and swaps it in atomically;
    /// `path` becomes the config file (SIGHUP reads it). Returns the new generation number. On
    /// any error nothing changes.
    pub fn reload(&mut self, path: Option<&Path>) -> Result<u64, ReloadError> {
        let path = path.map_or_else(|| self.config_path.clone(), Path::to_path_buf);
        let (file_config, file_text) = load(&path).map_err(ReloadError::Invalid)?;
        self.apply_file(path, file_config, file_text, true)
    }

    /// Applies a config file's `text` read by someone else (a caller of `config apply FILE`,
    /// who read it with its own rights), named as `path`. With `adopt`, `path` becomes the
    /// config file as with [`reload`](Self::reload); without, the config file stays what it
    /// was (a restart or SIGHUP reads it again). Returns the new generation number.
    pub fn apply_text(
        &mut self,
        path: &Path,
        text: String,
        adopt: bool,
    ) -> Result<u64, ReloadError> {
        let config = parse_warned(path, &text).map_err(ReloadError::Invalid)?;
        self.apply_file(path.to_path_buf(), config, text, adopt)
    }

    fn apply_file(
        &mut self,
        path: PathBuf,
        file_config: Config,
        file_text: String,
        adopt: bool,
    ) -> Result<u64, ReloadError> {
        // On a config sync secondary the pushed sections stay in force over the file's.
        let (config, text) = match &self.pushed {
            Some(p) => crate::config_sync::daemon::effective(&file_text, p).map_err(|errors| {
                ReloadError::Merge {
                    path: path.display().to_string(),
                    from: p.from.clone(),
                    version: p.version,
                    errors,
                }
            })?,
            None => (file_config, file_text.clone()),
        };
        if config
            .ha
            .config_sync
            .as_ref()
            .map(|c| (c.sync_to, c.port, &c.username, &c.password))
            != self
                .config
                .ha
                .config_sync
                .as_ref()
                .map(|c| (c.sync_to, c.port, &c.username, &c.password))
        {
            return Err(ReloadError::ConfigSyncChanged {
                path: path.display().to_string(),
            });
        }
        let prepared = self
            .prepare(config)
            .map_err(|source| ReloadError::Prepare {
                path: path.display().to_string(),
                source,
            })?;
        let metrics_held = (prepared.config.system.metrics_listen != self.metrics_listen_at_start)
            .then(|| {
                let note = "system.metrics.listen changed: the endpoint keeps its address until tandemd restarts";
                tracing::warn!("{note}");
                note.to_owned()
            });
        let number = self.commit(prepared, text);
        self.held_until_restart.extend(metrics_held);
        self.file_text = file_text;
        if adopt {
            self.config_path = path;
            tracing::info!(generation = number, file = %self.config_path.display(), "config applied");
        } else {
            tracing::info!(
                generation = number,
                file = %path.display(),
                config_file = %self.config_path.display(),
                "config applied from a file sent by a caller; the config file is unchanged"
            );
        }
        self.offer_config(false);
        Ok(number)
    }

    /// Compiles `config` as the next generation and checks that it can be swapped in: what the
    /// running threads were built with cannot change under them. Changes nothing.
    pub(crate) fn prepare(&self, config: Config) -> Result<Prepared, PrepareError> {
        let number = self.generation + 1;
        let compiled = compile(&config, number, &device_mac).map_err(PrepareError::Compile)?;
        // What the running threads were built with cannot change under them: say so rather than
        // apply half of the file.
        let restart_needed = [
            (
                config.system.host_id != self.config.system.host_id,
                "system.host_id",
            ),
            (
                config.system.workers != self.config.system.workers,
                "system.workers",
            ),
            (
                config.system.ring_size != self.config.system.ring_size,
                "system.ring_size",
            ),
            (
                config.ha.state_sync != self.config.ha.state_sync,
                "ha.state_sync",
            ),
            // The sync and config sync sockets are bound to the link's device and address at
            // start, and state sync's rules see datagrams addressed to that address.
            (
                sync_link_of(&config) != sync_link_of(&self.config),
                "the sync interface's device or address",
            ),
        ];
        if let Some((_, field)) = restart_needed.iter().find(|(changed, _)| *changed) {
            return Err(PrepareError::RestartNeeded(field));
        }
        if compiled.devices != self.compiled_devices {
            return Err(PrepareError::InterfacesChanged {
                old: self.compiled_devices.join(","),
                new: compiled.devices.join(","),
            });
        }
        Ok(Prepared {
            config,
            compiled,
            number,
        })
    }

    /// Swaps a prepared generation in; `text` is the config's text. Returns its number.
    pub(crate) fn commit(&mut self, prepared: Prepared, text: String) -> u64 {
        let Prepared {
            config,
            compiled,
            number,
        } = prepared;
        self.sync_rules
            .store(Arc::new(link_rules(&config, compiled.sync)));
        self.held_until_restart =
            crate::compile::apply_table_limits(&self.dp.states, &config.system)
                .into_iter()
                .collect();
        let old = self.dp.generation.load_full();
        self.dp.apply(compiled.generation);
        if config.system.kill_states_on_reload {
            let new = self.dp.generation.load();
            crate::state_kill::kill_unpassed(&self.dp.states, &old.ruleset, &new.ruleset);
        }
        // Every reload: only the groups whose settings changed (an interface address included)
        // restart; the others run on untouched.
        self.carp.reconfigure(&config, &self.compiled_devices);
        self.dhcp.reconfigure(&config);
        self.generation = number;
        self.config = config;
        self.config_text = Arc::new(text);
        number
    }

    /// Stops CARP (masters bow out so the peer takes over at once), then the workers (detaching
    /// XDP) and housekeeping.
    pub fn stop(mut self) {
        self.carp.stop();
        self.dhcp.stop();
        // The bow-out adverts are on the slow-path channel: let the worker send them.
        let deadline = Instant::now() + Duration::from_millis(200);
        while self.workers.first().is_some_and(|w| !w.slow_tx.is_empty())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        for w in self.workers.drain(..) {
            w.stop();
        }
        if let Some(s) = self.sync.take() {
            s.stop();
        }
        if let Some((stop, t)) = self.housekeeping.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = t.join();
        }
        if self.workers.is_empty() && self.config.system.workers > 1 {
            let names: Vec<&str> = self.compiled_devices.iter().map(String::as_str).collect();
            let _ = remove_xdp_programs(&names);
        }
        tracing::info!("stopped");
    }

    /// CARP runs on its own thread; the control loop only passes on state sync's bulk update
    /// (its demotion).
    fn run_carp(&mut self) {
        if let Some(s) = &self.sync {
            self.carp.set_sync_pending(s.bulk_pending());
        }
    }

    /// How long the control loop may sleep between looks at signals.
    fn poll_timeout(&self) -> Duration {
        Duration::from_millis(20)
    }
}

/// A compiled generation checked by [`Daemon::prepare`], ready to swap in.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub(crate) config: Config,
    pub(crate) compiled: Compiled,
    number: u64,
}

/// The rules of the state sync interface (or the first sync interface), for the sync services.
/// The sync link as the sync threads were built with it: its device and address.
fn sync_link_of(config: &Config) -> Option<(&str, std::net::Ipv4Addr)> {
    config.sync_link().map(|i| (i.device.as_str(), i.ip()))
}

fn link_rules(config: &Config, filter: crate::compile::SyncFilter) -> SyncRules {
    let name = config
        .sync_link()
        .map(|i| i.name.clone())
        .unwrap_or_default();
    let in_if = filter.index(&name).unwrap_or(0);
    crate::config_sync::daemon::sync_rules(Arc::new(filter.ruleset), in_if)
}

/// Which RX queues of `dev` worker `w` of `n` binds: all of them for one worker, else every
/// n-th. Unreadable queue counts fall back to all (the worker's open then reports the error).
fn worker_queues(dev: &str, w: usize, n: usize) -> Queues {
    if n <= 1 {
        return Queues::All;
    }
    match tandem_dataplane::io::afxdp::rx_queue_count(dev) {
        Ok(count) => Queues::Only((0..count).filter(|q| *q as usize % n == w).collect()),
        Err(_) => Queues::All,
    }
}

/// Creates the state dir (0700: it holds boot ids, leases and the config sync's last push) if
/// it is missing; the packaged unit has systemd make it, a hand-started tandemd did without
/// (boot ids not persisted). An existing dir is left as it is.
fn make_state_dir(dir: &Path) {
    use std::os::unix::fs::DirBuilderExt;
    if let Err(e) = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        tracing::warn!(
            "state dir {}: {e}: boot ids, leases and config pushes are not kept",
            dir.display()
        );
    }
}

fn load(path: &Path) -> Result<(Config, String), config::ConfigErrors> {
    let (config, text) = config::load_with_text(path)?;
    log_warnings(path, &config, &text);
    Ok((config, text))
}

/// Validates `text` (named as `path`); weak but valid settings (a short CARP password) are
/// logged at every start and reload.
fn parse_warned(path: &Path, text: &str) -> Result<Config, config::ConfigErrors> {
    let config = config::parse(&path.display().to_string(), text)?;
    log_warnings(path, &config, text);
    Ok(config)
}

/// Logs the warnings of `config`, parsed from `text`, each with its line.
fn log_warnings(path: &Path, config: &Config, text: &str) {
    for w in config::warnings_in(&path.display().to_string(), config, text) {
        tracing::warn!("{w}");
    }
}

/// State expiry and neighbour ageing, off the workers' cores' critical path: a slice of the
/// table every 100 ms, so that a million states never stall anything.
fn start_housekeeping(
    dp: Arc<Dataplane>,
    clock: Clock,
) -> std::io::Result<(Arc<AtomicBool>, JoinHandle<()>)> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let t = std::thread::Builder::new()
        .name("tandem-housekeeping".into())
        .spawn(move || {
            // Expiry deletes are this thread's own changes: its own journal queue.
            let by = dp.states.producer();
            while !s.load(Ordering::Relaxed) {
                let now = clock.now_ms();
                dp.states.expire(now, dp.states.expire_budget(), &by);
                dp.neigh.expire(now);
                std::thread::sleep(Duration::from_millis(100));
            }
        })?;
    Ok((stop, t))
}

/// What the systemd unit sets (see [`hint_state_pages`]).
const HUGE_PAGE_TUNABLES: &str = "glibc.malloc.hugetlb=1:glibc.malloc.top_pad=67108864";

/// States are single `Arc`s, malloc'd by the worker threads. With transparent huge pages in
/// "madvise" mode (Debian's default) glibc keeps its heaps on 4 KiB pages unless told otherwise,
/// and a lookup among many states then pays a TLB miss for the state on top of the cache miss.
/// `glibc.malloc.hugetlb=1` alone advises a thread's heap only for its size at creation (a few
/// hundred KiB), so the states stay on small pages; `glibc.malloc.top_pad` makes that the whole
/// 64 MiB heap. The systemd unit sets both; a box started by hand is told how.
fn hint_state_pages(state_limit: u32) {
    const LARGE_TABLE: u32 = 100_000;
    let tunables = std::env::var("GLIBC_TUNABLES").unwrap_or_default();
    let thp =
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    if state_limit >= LARGE_TABLE
        && thp.contains("[madvise]")
        && !(tunables.contains("glibc.malloc.hugetlb=")
            && tunables.contains("glibc.malloc.top_pad="))
    {
        tracing::info!(
            state_limit,
            "states are on 4 KiB pages: GLIBC_TUNABLES={HUGE_PAGE_TUNABLES} in tandemd's \
             environment (as packaging/tandemd.service sets) puts them on 2 MiB pages, for \
             fewer TLB misses with many states"
        );
    }
}

/// Runs the daemon until SIGTERM or SIGINT. SIGHUP reloads the config file.
pub fn run(opts: &DaemonOptions) -> Result<(), DaemonError> {
    let term = Arc::new(AtomicBool::new(false));
    let hup = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, term.clone()).map_err(DaemonError::Signals)?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
        .map_err(DaemonError::Signals)?;

    let mut daemon = Daemon::start(opts)?;
    let mut server = match ControlServer::bind_with_group(&opts.socket, opts.socket_group) {
        Ok(s) => s,
        Err(source) => {
            daemon.stop();
            return Err(DaemonError::Socket {
                path: opts.socket.display().to_string(),
                source,
            });
        }
    };
    tracing::info!(socket = %opts.socket.display(), "control socket ready");
    let metrics = match daemon.config.system.metrics_listen {
        Some(addr) => {
            // A firewall that cannot serve its metrics still forwards: the failure is logged
            // (and the endpoint missing from Prometheus is its own alert), not fatal.
            match crate::metrics::server::MetricsServer::start(addr, Some(daemon.dp.states.clone()))
            {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::error!(listen = %addr, "metrics endpoint not started: {e}");
                    None
                }
            }
        }
        None => None,
    };
    // Workers bound, CARP and sync started, the socket answers: ready for systemd
    // (Type=notify). Without NOTIFY_SOCKET these are no-ops.
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    let watchdog = sd_notify::watchdog_enabled().map(|d| d / 2);
    let mut last_ping = Instant::now();
    while !term.load(Ordering::Relaxed) {
        if let Err(e) = server.poll_once(daemon.poll_timeout(), &mut daemon) {
            tracing::warn!("control socket: {e}");
        }
        daemon.run_carp();
        daemon.run_config_sync();
        if hup.swap(false, Ordering::Relaxed) {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
            match daemon.reload(None) {
                Ok(g) => tracing::info!(generation = g, "SIGHUP: config reloaded"),
                Err(e) => tracing::error!("SIGHUP: config refused, the running one stays: {e}"),
            }
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        }
        if let Some(m) = metrics.as_ref().filter(|m| m.wanted()) {
            let mut snap = daemon.metrics();
            m.add_to(&mut snap);
            m.publish(snap);
        }
        // The watchdog is fed from this loop only: a wedged control loop is restarted.
        if watchdog.is_some_and(|half| last_ping.elapsed() >= half) {
            let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            last_ping = Instant::now();
        }
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    drop(metrics);
    tracing::info!("stopping");
    drop(server);
    daemon.stop();
    Ok(())
}
