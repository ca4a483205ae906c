//! What `tandemd` answers on its control socket: each command of [`crate::api`] read from the
//! running daemon. Requests never block the control thread for long: the slowest, `states`,
//! walks the table once and stops at the requested limit.

use std::net::SocketAddrV4;

use serde_json::Value;
use tandem_dataplane::capture::CaptureFilter;
use tandem_dataplane::filter::{AddrMatch, Addrs, ProtoMatch, Rule};
use tandem_dataplane::state::{FlowKey, PeerState, State};
use tandem_dataplane::wire::ipv4::proto;

use crate::api::{self, ApiError, Command};
use crate::carp::runtime::MaintenanceError;
use crate::config;
use crate::config_sync::ConfigSyncError;
use crate::daemon::{Daemon, ReloadError};
use crate::peer::PeerError;
use crate::socket::{Handler, Request};
use crate::state_kill::KillError;

/// Why the daemon refused a control request. Its Display is the reply's `error`, which
/// `tandemctl` prints as is: the lower errors keep their own words.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// An unknown command, bad arguments, a reply that did not encode.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// `maintenance.on|off` could not persist or reach CARP.
    #[error(transparent)]
    Maintenance(#[from] MaintenanceError),
    /// `states.kill` without a filter, with `all` and a filter, or an unknown protocol.
    #[error(transparent)]
    Kill(#[from] KillError),
    /// `config.check|apply FILE`: tandemd has no text to read.
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// `config.apply` with a text but no path to name it by.
    #[error("config.apply: text without its path")]
    TextWithoutPath,
    /// `config.apply` refused; the running config stays.
    #[error(transparent)]
    Apply(#[from] ReloadError),
    /// `config.sync.now` where it cannot push.
    #[error(transparent)]
    ConfigSync(#[from] ConfigSyncError),
    /// `capture.start` names an interface the dataplane does not have.
    #[error("capture: no dataplane interface {name:?} (interfaces: {known})")]
    NoInterface { name: String, known: String },
    /// `capture.start` while another capture runs.
    #[error("capture: another capture is running (it ends after its count, or 10 s after its client stops polling)")]
    CaptureBusy,
}

impl Handler for Daemon {
    type Error = HandlerError;

    fn handle(&mut self, req: &Request) -> Result<Value, HandlerError> {
        match Command::of(req)? {
            Command::Status => api::to_data(&self.status()),
            Command::Carp => api::to_data(&self.carp_reply()),
            Command::CarpEnable | Command::CarpDisable => {
                self.carp
                    .set_enabled(matches!(Command::of(req)?, Command::CarpEnable));
                api::to_data(&self.carp_reply())
            }
            Command::MaintenanceOn | Command::MaintenanceOff => {
                self.carp
                    .set_maintenance(matches!(Command::of(req)?, Command::MaintenanceOn))?;
                api::to_data(&self.carp_reply())
            }
            Command::States => api::to_data(&self.states(&api::parse_args(req)?)),
            Command::StatesKill => api::to_data(&crate::state_kill::kill(
                &self.dp.states,
                &api::parse_args(req)?,
                &self.dp.generation.load().ruleset,
            )?),
            Command::Rules => api::to_data(&self.rules()),
            Command::Stats => api::to_data(&self.stats()),
            Command::DhcpLeases => api::to_data(&api::DhcpLeasesReply {
                leases: self
                    .dhcp
                    .leases()
                    .iter()
                    .map(|l| api::DhcpLeaseInfo {
                        mac: tandem_dataplane::wire::MacAddr(l.mac).to_string(),
                        ip: l.ip.to_string(),
                        hostname: l.hostname.clone(),
                        expires: l.expires,
                        state: l.state.name().to_string(),
                    })
                    .collect(),
            }),
            Command::Sync => {
                let reply = self.sync.as_ref().and_then(|s| s.snapshot().reply);
                api::to_data(&reply.unwrap_or_else(api::SyncReply::not_running))
            }
            Command::ConfigCheck => {
                let args: api::ConfigCheckArgs = api::parse_args(req)?;
                let text = crate::peer::config_text(req.peer.as_ref(), &args.path, args.text)?;
                let reply = match config::parse(&args.path, &text) {
                    Ok(_) => api::ConfigCheckReply {
                        path: args.path,
                        valid: true,
                        errors: vec![],
                    },
                    Err(e) => api::ConfigCheckReply {
                        path: args.path,
                        valid: false,
                        errors: e.messages(),
                    },
                };
                api::to_data(&reply)
            }
            Command::ConfigApply => {
                let args: api::ConfigApplyArgs = api::parse_args(req)?;
                let applied = match args.path {
                    None if args.text.is_some() => return Err(HandlerError::TextWithoutPath),
                    None => self.reload(None),
                    Some(path) => {
                        let text = crate::peer::config_text(req.peer.as_ref(), &path, args.text)?;
                        // Only root's file becomes the config file: SIGHUP and `config apply`
                        // re-read it with tandemd's rights, and answer with what they read.
                        let adopt = req.peer.as_ref().is_none_or(|p| p.uid == 0);
                        self.apply_text(std::path::Path::new(&path), text, adopt)
                    }
                };
                let generation = applied.inspect_err(|e| {
                    tracing::warn!("config apply refused, the running one stays: {e}");
                })?;
                api::to_data(&api::ConfigApplyReply {
                    generation,
                    changed: true,
                    config_file: self.config_path.display().to_string(),
                    held_until_restart: self.held_until_restart.clone(),
                })
            }
            Command::ConfigShow => api::to_data(&self.config_show()),
            Command::ConfigSync => api::to_data(&self.config_sync_reply()),
            Command::Doctor => api::to_data(&self.doctor_step()),
            Command::ConfigSyncNow => {
                let reply = self.config_sync_reply();
                self.config_sync_now()?;
                api::to_data(&reply)
            }
            Command::CaptureStart => {
                let args: api::CaptureStartArgs = api::parse_args(req)?;
                let gen = self.dp.generation.load();
                let if_index = match &args.interface {
                    None => None,
                    Some(name) => Some(gen.interface_index(name).ok_or_else(|| {
                        let known: Vec<&str> =
                            gen.interfaces.iter().map(|i| i.name.as_str()).collect();
                        HandlerError::NoInterface {
                            name: name.clone(),
                            known: known.join(", "),
                        }
                    })?),
                };
                let filter = CaptureFilter {
                    if_index,
                    host: args.host,
                    port: args.port,
                };
                self.dp
                    .capture
                    .start(filter, args.count.max(1))
                    .map_err(|_| HandlerError::CaptureBusy)?;
                Ok(Value::Null)
            }
            Command::CapturePoll => {
                let args: api::CapturePollArgs = api::parse_args(req)?;
                let tap = &self.dp.capture;
                let frames = tap
                    .drain(args.max.unwrap_or(256))
                    .iter()
                    .map(api::CaptureFrame::from)
                    .collect();
                api::to_data(&api::CapturePollReply {
                    frames,
                    done: tap.is_done(),
                    captured: tap.captured(),
                    dropped: tap.dropped(),
                })
            }
            Command::CaptureStop => {
                let tap = &self.dp.capture;
                tap.stop();
                api::to_data(&api::CaptureStopReply {
                    captured: tap.captured(),
                    dropped: tap.dropped(),
                })
            }
        }
    }
}

impl Daemon {
    fn status(&self) -> api::StatusReply {
        let gen = self.dp.generation.load();
        let interfaces = gen
            .interfaces
            .iter()
            .zip(&self.compiled_devices)
            .map(|(i, dev)| {
                let bound = self.workers.iter().map(|w| &w.bound);
                let xdp = bound
                    .clone()
                    .flat_map(|b| &b.xdp)
                    .find(|(name, _)| name == dev)
                    .and_then(|(_, mode)| *mode)
                    .unwrap_or_default();
                let socket = bound
                    .clone()
                    .find(|b| b.queues.iter().any(|(name, _)| name == dev))
                    .map(|b| b.socket_mode.to_string())
                    .unwrap_or_default();
                let queues = bound
                    .flat_map(|b| &b.queues)
                    .filter(|(n, _)| n == dev)
                    .count();
                api::InterfaceInfo {
                    name: i.name.clone(),
                    device: dev.clone(),
                    link: if crate::carp::runtime::link_up(dev) {
                        "up"
                    } else {
                        "down"
                    }
                    .into(),
                    mac: i.mac.to_string(),
                    address: i.addr.map(|(a, l)| format!("{a}/{l}")).unwrap_or_default(),
                    rx_packets: device_stat(dev, "rx_packets"),
                    rx_bytes: device_stat(dev, "rx_bytes"),
                    tx_packets: device_stat(dev, "tx_packets"),
                    tx_bytes: device_stat(dev, "tx_bytes"),
                    xdp: xdp.to_string(),
                    socket,
                    queues: u32::try_from(queues).unwrap_or(u32::MAX),
                }
            })
            .collect();
        api::StatusReply {
            hostname: self.config.system.hostname.clone(),
            host_id: self.config.system.host_id.get(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_s: self.started.elapsed().as_secs(),
            generation: self.generation,
            config_file: self.config_path.display().to_string(),
            workers: u16::try_from(self.workers.len()).unwrap_or(u16::MAX),
            // Changing it is refused until a restart, so the config in force says what the
            // sockets were opened with.
            ring_size: self.config.system.ring_size,
            interfaces,
            states: self.dp.states.len() as u64,
            config_sync: self.config_sync_line(),
        }
    }

    /// `tandemctl carp`'s reply: CARP's status now, in the API's shape.
    pub(crate) fn carp_reply(&self) -> api::CarpReply {
        carp_reply(&self.carp.status())
    }

    fn states(&self, args: &api::StatesArgs) -> api::StatesReply {
        let now = self.clock.now_ms();
        let table = &self.dp.states;
        let (timeouts, adaptive, count) = (table.timeouts(), table.adaptive(), table.len() as u64);
        let limit = args.limit.unwrap_or(10_000);
        let proto = args.proto.as_deref().map(str::to_ascii_lowercase);
        // Addresses and ports as `states kill` matches them; the protocol by its name here.
        let filter = crate::state_kill::KillFilter {
            addr: args.addr,
            port: args.port,
            ..crate::state_kill::KillFilter::ALL
        };
        let mut states = Vec::new();
        let mut matched = 0u64;
        table.for_each(|s| {
            let hit =
                filter.matches(s) && proto.as_deref().is_none_or(|p| p == proto_name(s.proto()));
            if !hit {
                return;
            }
            matched += 1;
            if states.len() < limit {
                states.push(state_info(s, now, &timeouts, &adaptive, count));
            }
        });
        api::StatesReply {
            count: matched,
            states,
        }
    }

    fn rules(&self) -> api::RulesReply {
        let gen = self.dp.generation.load();
        let mut rules = Vec::new();
        for (i, list) in gen.ruleset.all_rules().iter().enumerate() {
            let name = gen.interfaces.get(i).map_or("?", |f| f.name.as_str());
            rules.extend(list.iter().map(|r| rule_info(name, r)));
        }
        api::RulesReply { rules }
    }

    /// The registry's flat view ([`crate::metrics`]): the same values the endpoint serves.
    fn stats(&self) -> api::StatsReply {
        api::StatsReply::from_pairs(self.metrics().flat())
    }
}

/// CARP's status in the API's shape (`tandemctl carp`, the doctor).
pub fn carp_reply(s: &crate::carp::Status) -> api::CarpReply {
    api::CarpReply {
        vips: s
            .vips
            .iter()
            .map(|v| api::CarpVip {
                interface: v.interface.clone(),
                vhid: v.vhid,
                vip: v.vip,
                status: carp_status(v.state),
                advbase: v.advbase,
                advskew: v.advskew,
                demotion: v.demotion,
                last_transition_reason: v.last_reason.clone(),
                previous_status: v.previous.map(carp_status),
                since_s: v.since.map(|d| d.as_secs()),
            })
            .collect(),
        enabled: s.enabled,
        maintenance: s.maintenance,
        demotion: s.demotion,
    }
}

/// The API's name of a CARP state.
pub fn carp_status(s: crate::carp::machine::State) -> api::CarpStatus {
    use crate::carp::machine::State;
    match s {
        State::Init => api::CarpStatus::Init,
        State::Backup => api::CarpStatus::Backup,
        State::Master => api::CarpStatus::Master,
        State::Disabled => api::CarpStatus::Disabled,
    }
}

pub(crate) fn proto_name(p: u8) -> &'static str {
    match p {
        proto::ICMP => "icmp",
        proto::TCP => "tcp",
        proto::UDP => "udp",
        proto::CARP => "carp",
        proto::PFSYNC => "pfsync",
        _ => "other",
    }
}

/// pf's names of a peer's state level (`pfctl -ss`).
pub(crate) fn peer_state_name(proto: u8, s: PeerState) -> String {
    const TCP: [&str; 11] = [
        "CLOSED",
        "LISTEN",
        "SYN_SENT",
        "SYN_RCVD",
        "ESTABLISHED",
        "CLOSE_WAIT",
        "FIN_WAIT_1",
        "CLOSING",
        "LAST_ACK",
        "FIN_WAIT_2",
        "TIME_WAIT",
    ];
    const OTHER: [&str; 3] = ["NO_TRAFFIC", "SINGLE", "MULTIPLE"];
    let names: &[&str] = if proto == 6 { &TCP } else { &OTHER };
    names
        .get(usize::from(s.0))
        .map_or_else(|| s.0.to_string(), |n| (*n).to_string())
}

fn endpoints(k: &FlowKey) -> api::Endpoints {
    api::Endpoints {
        src: SocketAddrV4::new(k.src, k.sport),
        dst: SocketAddrV4::new(k.dst, k.dport),
    }
}

fn state_info(
    s: &State,
    now: u64,
    timeouts: &tandem_dataplane::state::Timeouts,
    adaptive: &tandem_dataplane::state::Adaptive,
    count: u64,
) -> api::StateInfo {
    let t = s.tracking();
    let id = s.id;
    let (creator, sid) = ({ id.creator }, { id.id });
    let deadline = s.deadline(timeouts, adaptive, count).unwrap_or(now);
    api::StateInfo {
        id: api::StateInfo::format_id(creator, sid),
        proto: proto_name(s.proto()).to_string(),
        stack: endpoints(&s.stack),
        wire: endpoints(&s.wire()),
        nat: s.stack != s.wire(),
        src_state: peer_state_name(s.proto(), t.src.state),
        dst_state: peer_state_name(s.proto(), t.dst.state),
        age_s: now.saturating_sub(s.created()) / 1000,
        expires_in_s: deadline.saturating_sub(now) / 1000,
        packets: t.packets,
        bytes: t.bytes,
        rule: Some(s.rule),
    }
}

fn addr_text(m: &AddrMatch) -> String {
    let body = match &m.addrs {
        Addrs::Any => "any".to_string(),
        Addrs::Set(s) => {
            let p: Vec<String> = s.prefixes().iter().map(ToString::to_string).collect();
            if p.is_empty() {
                "none".into()
            } else {
                p.join(",")
            }
        }
    };
    if m.invert {
        format!("!{body}")
    } else {
        body
    }
}

fn rule_info(interface: &str, r: &Rule) -> api::RuleInfo {
    let proto = match r.proto {
        ProtoMatch::Any => "any".to_string(),
        ProtoMatch::Tcp => "tcp".into(),
        ProtoMatch::Udp => "udp".into(),
        ProtoMatch::TcpUdp => "tcp/udp".into(),
        ProtoMatch::Icmp => "icmp".into(),
        ProtoMatch::Proto(n) => proto_name(n).to_string(),
    };
    let port = r.dst_port.map_or_else(
        || "*".to_string(),
        |p| {
            if p.lo == p.hi {
                p.lo.to_string()
            } else {
                format!("{}-{}", p.lo, p.hi)
            }
        },
    );
    api::RuleInfo {
        number: r.number,
        interface: interface.to_string(),
        action: format!("{:?}", r.action).to_lowercase(),
        proto,
        source: addr_text(&r.src),
        destination: addr_text(&r.dst),
        port,
        description: r.description.clone(),
        hits: r.counters.hits(),
        bytes: r.counters.bytes(),
    }
}

/// A kernel statistic of a device (`/sys/class/net/DEV/statistics/NAME`), 0 if unreadable.
fn device_stat(dev: &str, name: &str) -> u64 {
    std::fs::read_to_string(format!("/sys/class/net/{dev}/statistics/{name}"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}
