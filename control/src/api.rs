//! The control protocol's commands and data: what `tandemd` answers and `tandemctl` reads.
//!
//! Every exchange is one [`Request`] line and one
//! [`Reply`](crate::socket::Reply) line (see [`crate::socket`]). `cmd` is one of the names of
//! [`Command`]; `args` is the command's args type below serialised as JSON (absent or `{}` when
//! it has none); `data` of a successful reply is the command's reply type.
//!
//! | `cmd`             | `args`               | `data`                |
//! |-------------------|----------------------|-----------------------|
//! | `status`          | -                    | [`StatusReply`]       |
//! | `carp`            | -                    | [`CarpReply`]         |
//! | `carp.enable`     | -                    | [`CarpReply`] (after) |
//! | `carp.disable`    | -                    | [`CarpReply`] (after) |
//! | `maintenance.on`  | -                    | [`CarpReply`] (after) |
//! | `maintenance.off` | -                    | [`CarpReply`] (after) |
//! | `states`          | [`StatesArgs`]       | [`StatesReply`]       |
//! | `states.kill`     | [`StatesKillArgs`]   | [`StatesKillReply`]   |
//! | `rules`           | -                    | [`RulesReply`]        |
//! | `stats`           | -                    | [`StatsReply`]        |
//! | `sync`            | -                    | [`SyncReply`]         |
//! | `config.check`    | [`ConfigCheckArgs`]  | [`ConfigCheckReply`]  |
//! | `config.apply`    | [`ConfigApplyArgs`]  | [`ConfigApplyReply`]  |
//! | `config.show`     | -                    | [`ConfigShowReply`]   |
//! | `config.sync`     | -                    | [`ConfigSyncReply`]   |
//! | `config.sync.now` | -                    | [`ConfigSyncReply`] (before the session) |
//! | `doctor`          | -                    | [`DoctorReply`](crate::doctor::online::DoctorReply): `pending` until the peer answered |
//! | `capture.start`   | [`CaptureStartArgs`] | `null`                |
//! | `capture.poll`    | [`CapturePollArgs`]  | [`CapturePollReply`]  |
//! | `capture.stop`    | -                    | [`CaptureStopReply`]  |
//! | `dhcp.leases`     | -                    | [`DhcpLeasesReply`]   |
//!
//! Rules both sides keep:
//! - Addresses travel as strings (`"172.25.46.100"`, `"192.168.0.100:40000"`), MACs as
//!   `"00:00:5e:00:01:01"`, durations in whole seconds (`_s`) or milliseconds (`_ms`).
//! - A refusal (`ok:false`) carries a message for the operator: what and why, e.g.
//!   `"unknown interface \"dmz\" (interfaces: lan, wan)"`. `tandemctl` prints it as is.
//! - `config.check` answers `ok:true` with `valid:false` and every error when the file is invalid:
//!   the check worked, the file did not pass. `config.apply` of an invalid file is a refusal whose
//!   message holds every error, one per line; nothing is applied.
//! - Paths in args are absolute: `tandemctl` resolves them against its working directory.
//! - A capture (`capture.start`) runs until `count` frames are taken, `capture.stop`, or nobody
//!   polls it for a while (the dataplane's tap lets a new capture take over a stale one); there is
//!   one at a time and a second `capture.start` is refused. `capture.poll` returns the frames
//!   taken since the last poll, bytes in lowercase hex.
//! - Replies may grow fields: readers ignore the ones they do not know, and fields added later
//!   carry `#[serde(default)]`.

use std::net::{Ipv4Addr, SocketAddrV4};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::socket::Request;

/// A command of the control protocol, with its name on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Status,
    Carp,
    CarpEnable,
    CarpDisable,
    MaintenanceOn,
    MaintenanceOff,
    States,
    Rules,
    Stats,
    Sync,
    ConfigCheck,
    ConfigApply,
    ConfigShow,
    ConfigSync,
    ConfigSyncNow,
    Doctor,
    CaptureStart,
    CapturePoll,
    CaptureStop,
    DhcpLeases,
    StatesKill,
}

impl Command {
    /// Every command, in the order of the module doc's table.
    pub const ALL: [Command; 21] = [
        Command::Status,
        Command::Carp,
        Command::CarpEnable,
        Command::CarpDisable,
        Command::MaintenanceOn,
        Command::MaintenanceOff,
        Command::States,
        Command::Rules,
        Command::Stats,
        Command::Sync,
        Command::ConfigCheck,
        Command::ConfigApply,
        Command::ConfigShow,
        Command::ConfigSync,
        Command::ConfigSyncNow,
        Command::Doctor,
        Command::CaptureStart,
        Command::CapturePoll,
        Command::CaptureStop,
        Command::DhcpLeases,
        Command::StatesKill,
    ];

    /// The command's name on the wire (`Request::cmd`).
    pub fn name(self) -> &'static str {
        match self {
            Command::Status => "status",
            Command::Carp => "carp",
            Command::CarpEnable => "carp.enable",
            Command::CarpDisable => "carp.disable",
            Command::MaintenanceOn => "maintenance.on",
            Command::MaintenanceOff => "maintenance.off",
            Command::States => "states",
            Command::Rules => "rules",
            Command::Stats => "stats",
            Command::Sync => "sync",
            Command::ConfigCheck => "config.check",
            Command::ConfigApply => "config.apply",
            Command::ConfigShow => "config.show",
            Command::ConfigSync => "config.sync",
            Command::ConfigSyncNow => "config.sync.now",
            Command::Doctor => "doctor",
            Command::CaptureStart => "capture.start",
            Command::CapturePoll => "capture.poll",
            Command::CaptureStop => "capture.stop",
            Command::DhcpLeases => "dhcp.leases",
            Command::StatesKill => "states.kill",
        }
    }

    /// The command named `name`, if any.
    pub fn from_name(name: &str) -> Option<Command> {
        Command::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The command of a request, or the refusal for an unknown one.
    pub fn of(req: &Request) -> Result<Command, ApiError> {
        Command::from_name(&req.cmd).ok_or_else(|| ApiError::UnknownCommand(req.cmd.clone()))
    }

    /// A request for this command with `args` (use `&NoArgs` for none).
    pub fn request<A: Serialize>(self, args: &A) -> Request {
        // Our args types hold only strings, numbers and options: serialising cannot fail.
        let args = serde_json::to_value(args).unwrap_or(Value::Null);
        let args = match args {
            Value::Object(m) if m.is_empty() => Value::Null,
            v => v,
        };
        Request::new(self.name(), args)
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The args of a command that takes none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

/// Why a request or a reply of the control protocol cannot be read or written. The Display
/// form is the refusal the operator reads (`tandemctl` prints it as is).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// `cmd` names no [`Command`]; the message lists the ones there are.
    #[error("unknown command {0:?} (commands: {names})", names = command_names())]
    UnknownCommand(String),
    /// The args do not read as the command's args type (the message names the field).
    #[error("bad arguments to {cmd}: {source}")]
    BadArguments {
        cmd: String,
        source: serde_json::Error,
    },
    /// A reply type did not serialise: a bug of ours, never the operator's input.
    #[error("internal error: cannot encode reply: {0}")]
    Encode(#[source] serde_json::Error),
    /// The daemon answered data of another shape than the command's reply type.
    #[error("unreadable reply to {cmd} from tandemd (a different version?): {source}")]
    UnreadableReply {
        cmd: Command,
        source: serde_json::Error,
    },
    /// A hex string (a captured frame) with an odd number of digits.
    #[error("odd-length hex ({0} digits)")]
    OddHex(usize),
    /// A hex string with a character that is not a hex digit, at this offset.
    #[error("not hex at offset {0}")]
    NotHex(usize),
}

/// Every command's name, comma-separated, for the refusal of an unknown one.
fn command_names() -> String {
    let known: Vec<&str> = Command::ALL.iter().map(|c| c.name()).collect();
    known.join(", ")
}

/// Reads a request's args as `T` (absent args read as `{}`), or the refusal naming the command
/// and the faulty field.
pub fn parse_args<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    let args = match &req.args {
        Value::Null => Value::Object(Map::new()),
        v => v.clone(),
    };
    serde_json::from_value(args).map_err(|source| ApiError::BadArguments {
        cmd: req.cmd.clone(),
        source,
    })
}

/// A reply's data as JSON, for a [`Handler`](crate::socket::Handler). Generic in the error so
/// that a handler returns it as it is, whatever its own error type (one that wraps [`ApiError`]).
pub fn to_data<T: Serialize, E: From<ApiError>>(reply: &T) -> Result<Value, E> {
    serde_json::to_value(reply).map_err(|e| ApiError::Encode(e).into())
}

/// Reads a reply's data as `T`, or the error saying the daemon answered something else.
pub fn from_data<T: DeserializeOwned>(cmd: Command, data: Value) -> Result<T, ApiError> {
    serde_json::from_value(data).map_err(|source| ApiError::UnreadableReply { cmd, source })
}

// ---------------------------------------------------------------------------------------------
// status

/// `status`: the box at a glance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReply {
    pub hostname: String,
    pub host_id: u32,
    /// tandemd's version.
    pub version: String,
    pub uptime_s: u64,
    /// The configuration generation in force (1 for the config the daemon started with).
    pub generation: u64,
    pub config_file: String,
    pub workers: u16,
    /// Entries of each AF_XDP ring (RX, TX, fill, completion) the sockets were opened with
    /// (`system.ring_size`; 0 from a daemon that does not say).
    #[serde(default)]
    pub ring_size: u32,
    pub interfaces: Vec<InterfaceInfo>,
    /// States in the state table.
    pub states: u64,
    /// Config sync in one line (role, peer, in sync or not), when configured.
    #[serde(default)]
    pub config_sync: Option<String>,
}

/// One dataplane interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceInfo {
    /// The config's name (`lan`, `wan`).
    pub name: String,
    /// The kernel device.
    pub device: String,
    /// `up` (the device has carrier) or `down` (no carrier, or administratively down); empty
    /// from a daemon older than this field.
    #[serde(default)]
    pub link: String,
    pub mac: String,
    /// The interface address with its prefix, `192.168.0.11/24`.
    pub address: String,
    #[serde(default)]
    pub rx_packets: u64,
    #[serde(default)]
    pub rx_bytes: u64,
    #[serde(default)]
    pub tx_packets: u64,
    #[serde(default)]
    pub tx_bytes: u64,
    /// How the kernel runs the XDP program on the device: `native` (in the driver) or
    /// `generic` (after an skb is built: slower); empty if unknown.
    #[serde(default)]
    pub xdp: String,
    /// The XDP sockets' mode: `copy` or `zero-copy`; empty if unknown.
    #[serde(default)]
    pub socket: String,
    /// RX queues bound, over all workers.
    #[serde(default)]
    pub queues: u32,
}

// ---------------------------------------------------------------------------------------------
// carp

/// A VHID's CARP state, named as pfSense and carp(4) name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CarpStatus {
    Master,
    Backup,
    Init,
    Disabled,
}

impl CarpStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CarpStatus::Master => "MASTER",
            CarpStatus::Backup => "BACKUP",
            CarpStatus::Init => "INIT",
            CarpStatus::Disabled => "DISABLED",
        }
    }
}

impl std::fmt::Display for CarpStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `carp` (and the CARP switches, which answer the state after the switch). Serialised with
/// `vips` first: `{"vips":[{"interface","vhid","vip","status",...}],...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarpReply {
    pub vips: Vec<CarpVip>,
    /// Whether CARP runs (`carp.disable` turns it off: every VHID `DISABLED`).
    pub enabled: bool,
    /// Persistent maintenance mode: the box demotes itself so the peer takes over.
    pub maintenance: bool,
    /// The box's demotion counter (interface loss, sync not done, maintenance).
    pub demotion: u32,
}

/// One CARP virtual IP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarpVip {
    /// The config's interface name (`wan`); shown uppercased.
    pub interface: String,
    pub vhid: u8,
    pub vip: Ipv4Addr,
    pub status: CarpStatus,
    pub advbase: u8,
    pub advskew: u8,
    /// The demotion this VHID advertises.
    pub demotion: u32,
    /// Why the last transition happened (`"master down"`, `"preempt"`, `"maintenance"`), empty
    /// before the first.
    pub last_transition_reason: String,
    /// The state before the last transition, if there was one.
    #[serde(default)]
    pub previous_status: Option<CarpStatus>,
    /// Seconds since the last transition.
    #[serde(default)]
    pub since_s: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// states

/// `states` filters; every given one must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatesArgs {
    /// Either endpoint, on the stack or the wire side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<Ipv4Addr>,
    /// Either port, on the stack or the wire side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `tcp`, `udp`, `icmp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<String>,
    /// At most this many states in the reply (`count` still counts all that match).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// `states`: `{"count":N,"states":[...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatesReply {
    /// States that match the filters.
    pub count: u64,
    pub states: Vec<StateInfo>,
}

/// Both ends of one side of a state. ICMP carries its query id in the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
}

impl std::fmt::Display for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} -> {}", self.src, self.dst)
    }
}

/// One state, as pf shows it: the stack side (as the initiator sent it) and the wire side
/// (after NAT).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateInfo {
    /// Sync identity, `creator:id` in hex (`"0000000a:00000000000001f4"`).
    pub id: String,
    pub proto: String,
    pub stack: Endpoints,
    pub wire: Endpoints,
    /// Whether the two sides differ.
    pub nat: bool,
    /// `ESTABLISHED`, `SYN_SENT`, ... for TCP; `SINGLE`, `MULTIPLE` for UDP and ICMP.
    pub src_state: String,
    pub dst_state: String,
    pub age_s: u64,
    pub expires_in_s: u64,
    /// Initiator to responder, then back.
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    /// The number of the rule that created the state, if one did.
    pub rule: Option<u32>,
}

impl StateInfo {
    /// The sync identity as `StateInfo::id` shows it.
    pub fn format_id(creator: u32, id: u64) -> String {
        format!("{creator:08x}:{id:016x}")
    }
}

/// `states.kill` (pfctl -k / -K): remove the states that match every given filter (the filters
/// of [`StatesArgs`], plus `rule`), or every state with `all`. A kill with no filter and no `all`
/// is refused, and so is `all` with a filter: nothing is removed by accident. Removed states
/// are replicated to the peer as deletes when state sync runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatesKillArgs {
    /// Either endpoint, on the stack or the wire side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<Ipv4Addr>,
    /// Either port, on the stack or the wire side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `tcp`, `udp`, `icmp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<String>,
    /// The number of the rule that created the state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<u32>,
    /// Every state.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
}

/// `states.kill`: `{"killed":N}`, and a note when the filter names a rule not in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatesKillReply {
    /// States removed by this request.
    pub killed: u64,
    /// Said when `rule` names no rule in force (a typo, most likely): only states created under
    /// that number by an earlier ruleset, or by the peer's, matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// rules

/// `rules`: the filter rules in force, in evaluation order, with their counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RulesReply {
    pub rules: Vec<RuleInfo>,
}

/// One filter rule as the config states it, with its hits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleInfo {
    pub number: u32,
    pub interface: String,
    /// `pass`, `block`, `reject`.
    pub action: String,
    /// `any`, `tcp`, `udp`, `tcp/udp`, `icmp`.
    pub proto: String,
    pub source: String,
    pub destination: String,
    /// Destination port or range, `*` for any.
    pub port: String,
    pub description: String,
    /// Packets that matched the rule (states created, for a pass rule).
    pub hits: u64,
    /// The IP bytes of those packets (a pass rule's first packets; the traffic of the states
    /// it created is counted on the states: `tandemctl states --json`).
    pub bytes: u64,
}

// ---------------------------------------------------------------------------------------------
// stats

/// `stats`: named counters in the daemon's declaration order.
///
/// On the wire: `{"counters":{"rx_frames":12,...},"order":["rx_frames",...]}`. JSON objects lose
/// their order through `serde_json::Value`, so the order travels beside them; build with
/// [`StatsReply::from_pairs`] and read with [`StatsReply::ordered`].
/// `dhcp.leases`: every lease of every DHCP server of the box, by address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhcpLeasesReply {
    pub leases: Vec<DhcpLeaseInfo>,
}

/// One lease: `expires` in unix seconds, `state` one of bound, released, expired, declined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DhcpLeaseInfo {
    pub mac: String,
    pub ip: String,
    pub hostname: String,
    pub expires: u64,
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatsReply {
    pub counters: Map<String, Value>,
    #[serde(default)]
    pub order: Vec<String>,
}

impl StatsReply {
    /// From counters in the order to show them. A repeated name keeps its first place and sums.
    pub fn from_pairs<S: Into<String>>(pairs: impl IntoIterator<Item = (S, u64)>) -> StatsReply {
        let mut counters = Map::new();
        let mut order = Vec::new();
        for (name, v) in pairs {
            let name = name.into();
            let sum = counters.get(&name).and_then(Value::as_u64).unwrap_or(0);
            if !counters.contains_key(&name) {
                order.push(name.clone());
            }
            counters.insert(name, Value::from(sum.wrapping_add(v)));
        }
        StatsReply { counters, order }
    }

    /// The counters in order: `order` first, then any counter it leaves out, by name. Values
    /// that are not unsigned integers read as 0.
    pub fn ordered(&self) -> Vec<(&str, u64)> {
        let mut out: Vec<(&str, u64)> = Vec::with_capacity(self.counters.len());
        let mut seen = std::collections::HashSet::new();
        for name in &self.order {
            if let Some(v) = self.counters.get(name) {
                if seen.insert(name.as_str()) {
                    out.push((name, v.as_u64().unwrap_or(0)));
                }
            }
        }
        for (name, v) in &self.counters {
            if !seen.contains(name.as_str()) {
                out.push((name, v.as_u64().unwrap_or(0)));
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// sync

/// `sync`: the state sync link. Zero and `"not running"` until state sync runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncReply {
    pub running: bool,
    /// The peer's address, if configured.
    pub peer: Option<String>,
    pub sent: u64,
    pub received: u64,
    pub retransmitted: u64,
    pub auth_failed: u64,
    pub dropped: u64,
    /// How far the peer's acknowledgements trail our updates.
    pub lag_ms: u64,
    /// `not running`, `requested`, `in progress`, `done`, `failed: <why>`.
    pub bulk_status: String,
    /// States in this box's table, its own and the peer's (compare the two boxes' figures to
    /// see whether the backup holds what the master does).
    pub states: u64,
    /// Milliseconds since the peer was last heard (any authenticated datagram; each box sends
    /// a keepalive after a second without sending); `None`: never heard.
    #[serde(default)]
    pub peer_heard_ms: Option<u64>,
    /// Milliseconds without hearing the peer: since it was last heard, or since state sync
    /// started if never (what the doctor and the `tandem_sync_peer_heard_seconds` gauge judge).
    #[serde(default)]
    pub peer_silent_ms: u64,
}

impl SyncReply {
    /// What a daemon without state sync answers.
    pub fn not_running() -> SyncReply {
        SyncReply {
            running: false,
            peer: None,
            sent: 0,
            received: 0,
            retransmitted: 0,
            auth_failed: 0,
            dropped: 0,
            lag_ms: 0,
            bulk_status: "not running".into(),
            states: 0,
            peer_heard_ms: None,
            peer_silent_ms: 0,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// config

/// `config.check`: validate a file with the daemon's own validator; nothing is applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigCheckArgs {
    /// Absolute path of the file (how errors name it).
    pub path: String,
    /// The file's content, read by the caller with its own rights (tandemctl sends it). Without
    /// it tandemd reads `path` itself, for root callers only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// `config.check`'s verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigCheckReply {
    pub path: String,
    pub valid: bool,
    /// Every error, one message each, naming the field.
    pub errors: Vec<String>,
}

/// `config.apply`: load, validate and swap in a whole new generation, or nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigApplyArgs {
    /// Absolute path of the file; the daemon's own config file when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The file's content, read by the caller with its own rights (tandemctl sends it). Without
    /// it tandemd reads `path` itself, for root callers only. A root caller's `path` becomes
    /// tandemd's config file (SIGHUP reads it); another caller's does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// `config.apply`'s result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigApplyReply {
    /// The generation now in force.
    pub generation: u64,
    /// False when the file held the configuration already in force (the generation stays).
    pub changed: bool,
    /// tandemd's config file after the apply (what a restart or SIGHUP reads).
    #[serde(default)]
    pub config_file: String,
    /// What the new config says that is not in force until tandemd restarts (a state limit
    /// above the table's size at start, a new metrics address).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_until_restart: Vec<String>,
}

/// `config.show`: the configuration in force, with its secrets (passwords, keys) masked. On a
/// config sync secondary that accepted a push, the text is its file merged with the pushed
/// sections, and `from_peer` says which and from where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigShowReply {
    pub path: String,
    pub text: String,
    #[serde(default)]
    pub from_peer: Option<PushInfo>,
}

/// A push in force on a secondary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushInfo {
    /// The sections that came from the peer.
    pub sections: Vec<String>,
    pub version: u64,
    pub hash: String,
    /// The primary's address and hostname.
    pub from: String,
    pub received_unix: u64,
}

// ---------------------------------------------------------------------------------------------
// config sync

/// `config.sync`: config sync's state on this box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSyncReply {
    /// `primary` (pushes), `secondary` (accepts pushes) or `off`.
    pub role: String,
    /// The primary's target or the secondary's expected source.
    pub peer: Option<String>,
    pub port: u16,
    /// The sections that travel, and those selected that tandem has nothing to sync for.
    pub sections: Vec<String>,
    pub nothing_to_sync: Vec<String>,
    /// The hash of the synced content this box runs, and the one its peer last reported.
    pub local_hash: Option<String>,
    pub peer_hash: Option<String>,
    /// Both boxes run the same content for the synced sections.
    pub in_sync: bool,
    /// The version of the secondary's last accepted push.
    pub version: u64,
    pub peer_hostname: Option<String>,
    /// Seconds since the peer was last heard.
    pub peer_seen_s: Option<u64>,
    pub last_push: Option<PushResult>,
    /// Why the last session failed, if it did.
    pub last_error: Option<String>,
    /// Sessions the primary ran to their end.
    pub sessions: u64,
    /// Of those, the ones `config sync now` forced: it waits for this to move.
    #[serde(default)]
    pub forced_sessions: u64,
}

/// One push and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushResult {
    pub at_unix: u64,
    pub version: u64,
    /// `accepted`, `refused` or `failed`.
    pub result: String,
    pub error: Option<String>,
    pub generation: Option<u64>,
    /// The hash of the content pushed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// capture

/// `capture.start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureStartArgs {
    /// The config's interface name (`lan`); every dataplane interface when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// Stop after this many frames.
    pub count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

impl CaptureStartArgs {
    /// The dataplane filter, once the daemon has resolved `interface` to `if_index`.
    pub fn filter(&self, if_index: Option<u8>) -> tandem_dataplane::capture::CaptureFilter {
        tandem_dataplane::capture::CaptureFilter {
            if_index,
            host: self.host,
            port: self.port,
        }
    }
}

/// Frames in one `capture.poll` reply when the request does not say.
pub const DEFAULT_POLL_MAX: usize = 256;

/// `capture.poll`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapturePollArgs {
    /// At most this many frames in the reply (the daemon's default when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<usize>,
}

/// Whether the dataplane received or sent the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptureDir {
    Rx,
    Tx,
}

impl From<tandem_dataplane::capture::Direction> for CaptureDir {
    fn from(d: tandem_dataplane::capture::Direction) -> CaptureDir {
        match d {
            tandem_dataplane::capture::Direction::Rx => CaptureDir::Rx,
            tandem_dataplane::capture::Direction::Tx => CaptureDir::Tx,
        }
    }
}

/// One captured frame on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureFrame {
    pub if_index: u8,
    pub dir: CaptureDir,
    /// CLOCK_REALTIME, nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// The frame's length on the wire (more than the bytes when cut at the snaplen).
    pub orig_len: u32,
    /// The captured bytes, lowercase hex.
    pub hex: String,
}

impl CaptureFrame {
    /// The captured bytes, or why `hex` is not hex.
    pub fn bytes(&self) -> Result<Vec<u8>, ApiError> {
        hex_decode(&self.hex)
    }
}

impl From<&tandem_dataplane::capture::CapturedFrame> for CaptureFrame {
    fn from(f: &tandem_dataplane::capture::CapturedFrame) -> CaptureFrame {
        CaptureFrame {
            if_index: f.if_index,
            dir: f.direction.into(),
            ts_ns: f.ts_ns,
            orig_len: f.orig_len,
            hex: hex_encode(&f.bytes),
        }
    }
}

/// `capture.poll`: the frames since the last poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapturePollReply {
    pub frames: Vec<CaptureFrame>,
    /// The capture is over and every frame has been handed out.
    pub done: bool,
    pub captured: u64,
    pub dropped: u64,
}

impl CapturePollReply {
    /// What the daemon answers to `capture.poll`: up to `max` frames drained from `tap`, then
    /// whether the capture is over with nothing left, and its counts.
    pub fn drain(tap: &tandem_dataplane::capture::CaptureTap, max: Option<usize>) -> Self {
        let frames: Vec<CaptureFrame> = tap
            .drain(max.unwrap_or(DEFAULT_POLL_MAX))
            .iter()
            .map(CaptureFrame::from)
            .collect();
        CapturePollReply {
            frames,
            done: tap.is_done(),
            captured: tap.captured(),
            dropped: tap.dropped(),
        }
    }
}

/// `capture.stop`: the capture's final counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureStopReply {
    pub captured: u64,
    pub dropped: u64,
}

/// Lowercase hex of `bytes`.
pub fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    s
}

/// The bytes of a hex string (either case).
pub fn hex_decode(s: &str) -> Result<Vec<u8>, ApiError> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return Err(ApiError::OddHex(b.len()));
    }
    b.chunks_exact(2)
        .enumerate()
        .map(|(i, pair)| match (nibble(pair[0]), nibble(pair[1])) {
            (Some(h), Some(l)) => Ok(h << 4 | l),
            _ => Err(ApiError::NotHex(i * 2)),
        })
        .collect()
}

#[cfg(test)]
mod tests;
