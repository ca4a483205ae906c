//! The DHCP thread: one per daemon, its own so that nothing it does (a flood, a disk write)
//! delays the CARP thread or the control loop. It reads the frames the workers hand over,
//! answers when this box is master of the interface's VIP, expires leases, replicates every
//! lease change to the peer and writes the leases to disk.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender};
use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode};
use tandem_dataplane::pipeline::{ControlFrame, Dataplane};
use tandem_dataplane::wire::MacAddr;
use tandem_dataplane::worker::SlowFrame;
use tandem_dataplane::IfIndex;

use super::pool::{Lease, LeaseState, Nak, Pool};
use super::store;
use super::wire::{self, Addressing, Request};
use crate::config::{Config, Dhcp, VipKind};

/// The DHCP thread's counters, for `tandemctl stats` (as `dhcp_NAME`).
#[derive(Debug, Default)]
pub struct DhcpCounters {
    pub received: AtomicU64,
    pub malformed: AtomicU64,
    /// Requests whose chaddr is not the frame's Ethernet source: dropped (`verify_chaddr`, on
    /// by default), as a switch's DHCP snooping does, so that a host cannot request, release
    /// or decline in another's name (or in a thousand made-up ones) from one port.
    pub chaddr_mismatch: AtomicU64,
    /// Relayed requests (giaddr set): dropped, relays are not served (README).
    pub relayed: AtomicU64,
    /// REQUESTs for an address this server neither offered the client nor leases to it
    /// (NAKed, and counted in `naks` too).
    pub unoffered: AtomicU64,
    /// Requests seen while the peer is master (the backup stays silent).
    pub not_master: AtomicU64,
    pub offers: AtomicU64,
    pub acks: AtomicU64,
    pub naks: AtomicU64,
    pub releases: AtomicU64,
    pub declines: AtomicU64,
    pub informs: AtomicU64,
    /// Requests answered with silence: another server chosen, no record (RFC 2131 §4.3.2).
    pub ignored: AtomicU64,
    pub pool_exhausted: AtomicU64,
    /// Replies the workers' queue had no room for.
    pub tx_dropped: AtomicU64,
    /// Lease records received from the peer and taken.
    pub peer_leases: AtomicU64,
}

impl DhcpCounters {
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        let c = |n: &str, v: &AtomicU64| (format!("dhcp_{n}"), v.load(Relaxed));
        vec![
            c("received", &self.received),
            c("malformed", &self.malformed),
            c("chaddr_mismatch", &self.chaddr_mismatch),
            c("relayed", &self.relayed),
            c("unoffered", &self.unoffered),
            c("not_master", &self.not_master),
            c("offers", &self.offers),
            c("acks", &self.acks),
            c("naks", &self.naks),
            c("releases", &self.releases),
            c("declines", &self.declines),
            c("informs", &self.informs),
            c("ignored", &self.ignored),
            c("pool_exhausted", &self.pool_exhausted),
            c("tx_dropped", &self.tx_dropped),
            c("peer_leases", &self.peer_leases),
        ]
    }
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

/// What the rest of the daemon holds of the DHCP thread.
#[derive(Debug)]
pub struct DhcpHandle {
    pub counters: Arc<DhcpCounters>,
    leases: Arc<Mutex<Vec<Lease>>>,
    config_tx: Sender<Config>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The channels of lease replication (state sync's side is `sync_service`).
#[derive(Debug, Default)]
pub struct Replication {
    /// Every lease change, to send to the peer.
    pub to_peer: Option<Sender<Lease>>,
    /// Leases the peer sent.
    pub from_peer: Option<Receiver<Lease>>,
}

impl DhcpHandle {
    pub fn start(
        config: &Config,
        dp: Arc<Dataplane>,
        frames: Receiver<ControlFrame>,
        send: Sender<SlowFrame>,
        state_dir: Option<PathBuf>,
        replication: Replication,
    ) -> std::io::Result<DhcpHandle> {
        let counters = Arc::new(DhcpCounters::default());
        let leases = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (config_tx, config_rx) = crossbeam_channel::bounded(4);
        let mut server = Server {
            servers: BTreeMap::new(),
            dp,
            send,
            counters: counters.clone(),
            published: leases.clone(),
            path: state_dir.map(|d| d.join(store::FILE)),
            dirty: false,
            to_peer: replication.to_peer,
        };
        server.configure(config);
        server.load();
        let from_peer = replication
            .from_peer
            .unwrap_or_else(crossbeam_channel::never);
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("tandem-dhcp".into())
                .spawn(move || server.run(&frames, &config_rx, &from_peer, &stop))?
        };
        Ok(DhcpHandle {
            counters,
            leases,
            config_tx,
            stop,
            thread: Some(thread),
        })
    }

    /// A new config applies at the thread's next turn (leases of a server that stays are kept).
    pub fn reconfigure(&self, config: &Config) {
        let _ = self.config_tx.try_send(config.clone());
    }

    /// Every lease, by address.
    pub fn leases(&self) -> Vec<Lease> {
        self.leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for DhcpHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One interface's server.
#[derive(Debug)]
struct Iface {
    cfg: Dhcp,
    pool: Pool,
    mac: MacAddr,
    netmask: Ipv4Addr,
    /// Server identifier and reply source: the CARP VIP when there is one.
    server_id: Ipv4Addr,
    vhid: Option<u8>,
}

struct Server {
    servers: BTreeMap<IfIndex, Iface>,
    dp: Arc<Dataplane>,
    send: Sender<SlowFrame>,
    counters: Arc<DhcpCounters>,
    published: Arc<Mutex<Vec<Lease>>>,
    path: Option<PathBuf>,
    dirty: bool,
    to_peer: Option<Sender<Lease>>,
}

fn now_secs() -> (u64, u64) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (
        d.as_secs(),
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
    )
}

impl Server {
    fn configure(&mut self, config: &Config) {
        let gen = self.dp.generation.load();
        let mut old = std::mem::take(&mut self.servers);
        for d in config.dhcp.iter().filter(|d| d.enabled) {
            let (Some(i), Some(f)) = (
                gen.interface_index(&d.interface),
                config.interface(&d.interface),
            ) else {
                continue;
            };
            let Some(mac) = gen.interface(i).map(|x| x.mac) else {
                continue;
            };
            let vip = config.vips_on(&d.interface).find_map(|v| match &v.kind {
                VipKind::Carp(c) if f.network().contains(v.address.addr()) => {
                    Some((v.address.addr(), c.vhid))
                }
                _ => None,
            });
            let mut pool = Pool::new(d);
            // Leases of the server this one replaces stay (a reload changes options, not who
            // holds which address).
            if let Some(prev) = old.remove(&i) {
                for l in prev.pool.leases() {
                    pool.merge(l.clone());
                }
            }
            self.servers.insert(
                i,
                Iface {
                    cfg: d.clone(),
                    pool,
                    mac,
                    netmask: f.address.mask(),
                    server_id: vip.map_or(f.ip(), |v| v.0),
                    vhid: vip.map(|v| v.1),
                },
            );
        }
        self.publish();
    }

    fn load(&mut self) {
        let Some(path) = &self.path else { return };
        for l in store::load(path) {
            // The peer learns what this box remembers (the newer record wins there).
            if let Some(tx) = &self.to_peer {
                let _ = tx.try_send(l.clone());
            }
            if let Some(s) = self.server_for(l.ip) {
                s.pool.merge(l);
            }
        }
        self.publish();
    }

    fn server_for(&mut self, ip: Ipv4Addr) -> Option<&mut Iface> {
        self.servers.values_mut().find(|s| {
            let net = u32::from(s.netmask);
            (u32::from(ip) & net) == (u32::from(s.server_id) & net)
        })
    }

    fn run(
        &mut self,
        frames: &Receiver<ControlFrame>,
        config: &Receiver<Config>,
        from_peer: &Receiver<Lease>,
        stop: &AtomicBool,
    ) {
        let mut last_tick = Instant::now();
        let mut last_write = Instant::now();
        while !stop.load(Relaxed) {
            crossbeam_channel::select! {
                recv(frames) -> f => if let Ok(f) = f { self.frame(&f) },
                recv(config) -> c => if let Ok(c) = c { self.configure(&c) },
                recv(from_peer) -> l => if let Ok(l) = l { self.peer_lease(l) },
                default(Duration::from_millis(200)) => {}
            }
            if last_tick.elapsed() >= Duration::from_secs(1) {
                last_tick = Instant::now();
                let (now, now_ms) = now_secs();
                let expired: Vec<Lease> = self
                    .servers
                    .values_mut()
                    .flat_map(|s| s.pool.expire(now, now_ms))
                    .collect();
                for l in expired {
                    self.changed(l);
                }
            }
            // At most one write a second: a burst of ACKs costs one fsync.
            if self.dirty && last_write.elapsed() >= Duration::from_secs(1) {
                last_write = Instant::now();
                self.flush();
            }
        }
        if self.dirty {
            self.flush();
        }
    }

    /// Publishes the leases (for `tandemctl dhcp leases`) and writes them to the lease file.
    /// The write works on its own copy: the control thread never waits on the disk.
    fn flush(&mut self) {
        self.dirty = false;
        let all = self.publish();
        if let Some(path) = &self.path {
            if let Err(e) = store::save(path, &all) {
                tracing::warn!("dhcp: cannot write the leases to {}: {e}", path.display());
            }
        }
    }

    /// Publishes the leases of every pool; returns them.
    fn publish(&self) -> Vec<Lease> {
        let all: Vec<Lease> = self
            .servers
            .values()
            .flat_map(|s| s.pool.leases().cloned())
            .collect();
        all.clone_into(&mut self.published.lock().unwrap_or_else(|e| e.into_inner()));
        all
    }

    /// A lease changed here: replicated, and written soon.
    fn changed(&mut self, l: Lease) {
        if let Some(tx) = &self.to_peer {
            let _ = tx.try_send(l);
        }
        self.dirty = true;
    }

    fn peer_lease(&mut self, l: Lease) {
        if let Some(s) = self.server_for(l.ip) {
            if s.pool.merge(l) {
                inc(&self.counters.peer_leases);
                self.dirty = true;
            }
        }
    }

    fn frame(&mut self, f: &ControlFrame) {
        let c = self.counters.clone();
        inc(&c.received);
        let Ok(req) = wire::parse(&f.bytes) else {
            inc(&c.malformed);
            return;
        };
        let Some(s) = self.servers.get_mut(&f.in_if) else {
            inc(&c.ignored);
            return;
        };
        if s.vhid.is_some_and(|v| !self.dp.held.is_held(v)) {
            inc(&c.not_master);
            return;
        }
        let msg = &req.msg;
        let mac = req.chaddr;
        if !msg.giaddr().is_unspecified() {
            inc(&c.relayed);
            return;
        }
        if s.cfg.verify_chaddr && req.src_mac.0 != mac {
            inc(&c.chaddr_mismatch);
            return;
        }
        let (now, now_ms) = now_secs();
        let requested = match msg.opts().get(OptionCode::RequestedIpAddress) {
            Some(DhcpOption::RequestedIpAddress(ip)) => Some(*ip),
            _ => None,
        };
        let server_id = match msg.opts().get(OptionCode::ServerIdentifier) {
            Some(DhcpOption::ServerIdentifier(ip)) => Some(*ip),
            _ => None,
        };
        let hostname = match msg.opts().get(OptionCode::Hostname) {
            Some(DhcpOption::Hostname(h)) => h.clone(),
            _ => String::new(),
        };
        let reply = match req.kind {
            MessageType::Discover => match s.pool.offer(mac, requested, now) {
                Some(ip) => {
                    inc(&c.offers);
                    Some((MessageType::Offer, ip))
                }
                None => {
                    inc(&c.pool_exhausted);
                    None
                }
            },
            MessageType::Request => {
                let ciaddr = msg.ciaddr();
                // RFC 2131 §4.3.2: selecting (server id), init-reboot (requested, no ciaddr),
                // renewing or rebinding (ciaddr).
                let target = match (server_id, requested) {
                    (Some(sid), _) if sid != s.server_id => {
                        s.pool.forget_offer(mac);
                        None
                    }
                    (Some(_), Some(ip)) => Some(ip),
                    (None, Some(ip)) if ciaddr.is_unspecified() => {
                        // Init-reboot: silent without a record, NAK when on the wrong net.
                        let net = u32::from(s.netmask);
                        if u32::from(ip) & net != u32::from(s.server_id) & net {
                            Some(Ipv4Addr::UNSPECIFIED)
                        } else if s.pool.knows(mac) {
                            Some(ip)
                        } else {
                            None
                        }
                    }
                    // Renewing or rebinding: its own lease is renewed; an address this server
                    // has no lease of for it (a lease file lost) is NAKed, so that the client
                    // asks anew rather than keep an address the pool may give to another.
                    (_, _) if !ciaddr.is_unspecified() => Some(ciaddr),
                    _ => None,
                };
                match target {
                    None => {
                        inc(&c.ignored);
                        None
                    }
                    Some(ip) => match s.pool.request(mac, ip, &hostname, now, now_ms) {
                        Ok(l) => {
                            inc(&c.acks);
                            let ip = l.ip;
                            self.changed(l);
                            Some((MessageType::Ack, ip))
                        }
                        Err(nak) => {
                            inc(&c.naks);
                            if nak == Nak::NotOffered {
                                inc(&c.unoffered);
                            }
                            Some((MessageType::Nak, Ipv4Addr::UNSPECIFIED))
                        }
                    },
                }
            }
            MessageType::Release | MessageType::Decline => {
                let (state, ip, counter) = if req.kind == MessageType::Release {
                    (LeaseState::Released, msg.ciaddr(), &c.releases)
                } else {
                    (
                        LeaseState::Declined,
                        requested.unwrap_or(Ipv4Addr::UNSPECIFIED),
                        &c.declines,
                    )
                };
                if server_id.is_some_and(|sid| sid != s.server_id) {
                    inc(&c.ignored);
                } else if let Some(l) = s.pool.end(mac, ip, state, now, now_ms) {
                    inc(counter);
                    self.changed(l);
                } else {
                    inc(&c.ignored);
                }
                None
            }
            MessageType::Inform => {
                inc(&c.informs);
                Some((MessageType::Ack, Ipv4Addr::UNSPECIFIED))
            }
            _ => {
                inc(&c.ignored);
                None
            }
        };
        let Some((kind, yiaddr)) = reply else { return };
        let Some(s) = self.servers.get(&f.in_if) else {
            return;
        };
        let informed = req.kind == MessageType::Inform;
        if let Some(bytes) = reply_frame(s, &req, kind, yiaddr, informed) {
            let ok = self
                .send
                .try_send(SlowFrame {
                    out_if: f.in_if,
                    bytes,
                })
                .is_ok();
            if !ok {
                inc(&c.tx_dropped);
            }
        }
    }
}

/// The reply to `req` (RFC 2131 §4.3.1 table 3 for the fields, §4.1 for where it goes).
fn reply_frame(
    s: &Iface,
    req: &Request,
    kind: MessageType,
    yiaddr: Ipv4Addr,
    inform: bool,
) -> Option<Vec<u8>> {
    let q = &req.msg;
    let z = Ipv4Addr::UNSPECIFIED;
    let mut m = Message::new_with_id(q.xid(), z, yiaddr, z, q.giaddr(), &req.chaddr);
    m.set_opcode(Opcode::BootReply);
    m.set_flags(q.flags());
    if inform {
        m.set_ciaddr(q.ciaddr());
    }
    let o = m.opts_mut();
    o.insert(DhcpOption::MessageType(kind));
    o.insert(DhcpOption::ServerIdentifier(s.server_id));
    if kind != MessageType::Nak {
        let lease = u32::try_from(s.pool.lease_time()).unwrap_or(u32::MAX);
        if !inform {
            o.insert(DhcpOption::AddressLeaseTime(lease));
            o.insert(DhcpOption::Renewal(lease / 2));
            o.insert(DhcpOption::Rebinding(lease / 8 * 7));
        }
        o.insert(DhcpOption::SubnetMask(s.netmask));
        o.insert(DhcpOption::Router(vec![s.cfg.gateway]));
        if !s.cfg.dns.is_empty() {
            o.insert(DhcpOption::DomainNameServer(s.cfg.dns.clone()));
        }
        if let Some(d) = &s.cfg.domain {
            o.insert(DhcpOption::DomainName(d.clone()));
        }
        if let Some(h) = s.pool.static_hostname(req.chaddr).filter(|h| !h.is_empty()) {
            o.insert(DhcpOption::Hostname(h.to_owned()));
        }
    }
    // Broadcast when the client asks, has no address yet to receive on, or is refused (a NAK
    // goes to everyone: the client may hold an address that is not valid here). Unicast to the
    // frame's source MAC, the client's own unless a bridge rewrote it (`verify_chaddr = false`),
    // in which case only the bridge can hand the reply on.
    let ciaddr = q.ciaddr();
    let (dst_mac, dst_ip) = if kind == MessageType::Nak
        || q.flags().broadcast()
        || (ciaddr.is_unspecified() && yiaddr.is_unspecified())
    {
        (MacAddr::BROADCAST, Ipv4Addr::BROADCAST)
    } else if !ciaddr.is_unspecified() {
        (req.src_mac, ciaddr)
    } else {
        (req.src_mac, yiaddr)
    };
    if kind == MessageType::Nak {
        m.set_flags(Flags::default().set_broadcast());
    }
    let src_mac = s.vhid.map_or(s.mac, MacAddr::carp_virtual);
    wire::build(
        &m,
        &Addressing {
            src_mac,
            dst_mac,
            src_ip: s.server_id,
            dst_ip,
        },
    )
}
