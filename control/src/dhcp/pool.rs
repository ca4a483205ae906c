//! One interface's addresses: the leases (bound, released, expired, declined), the offers that
//! wait for a REQUEST, and the static mappings. No I/O and no clock of its own: every call gets
//! `now` (unix seconds), so the tests drive time.
//!
//! Two rules keep hostile clients from starving the others (the DISCOVER flood):
//! an offer never takes an address bound to another client, and offers are capped (a quarter
//! of the pool, at least 4); past the cap the oldest offer is recycled. A flood of DISCOVERs
//! from random MACs thus churns the offers among themselves and never touches a bound lease,
//! and three quarters of the free pool stay for REQUESTs.
//!
//! A REQUEST binds only what this server gave the client: the address it offered it, the
//! address it leases to it, or its static mapping. Without that rule one REQUEST per address,
//! with no DISCOVER, would take the whole pool for a lease time (the offers' cap never sees
//! it). It does not stop a client that follows the protocol from made-up MACs (a DISCOVER,
//! then a REQUEST, per address): no DHCP server can; the server's check that a request's
//! chaddr is its frame's source MAC makes the switch's port security the bound. Under a
//! DISCOVER flood a client whose offer was recycled before its REQUEST came is NAKed and
//! starts again. Every lookup on a DISCOVER or a REQUEST is a map's (offers by address, statics by
//! address), so that a flood costs each packet work in proportion to the pool at most, never
//! to the pool times the offers.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::config::{Dhcp, MAX_HOSTNAME};

/// How long an offer holds its address for the client (RFC 2131 leaves it to the server;
/// ISC dhcpd and Kea use about 30 s too).
pub const OFFER_SECS: u64 = 30;
/// How long a declined address stays out of the pool (RFC 2131 §4.3.3: "mark as not available").
pub const DECLINE_SECS: u64 = 600;
/// The most addresses one client's declines hold out of the pool at once (past it, the oldest
/// comes back). A client declines an address it finds in use (RFC 2131 §4.3.1); one that keeps
/// declining what it is given would otherwise walk the whole pool into quarantine from its one
/// MAC.
pub const MAX_DECLINED_PER_CLIENT: usize = 4;

pub type Mac = [u8; 6];

/// What a lease is now. On the wire (sync) and on disk as its `u8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeaseState {
    Bound = 1,
    Released = 2,
    Expired = 3,
    Declined = 4,
}

impl LeaseState {
    pub fn from_u8(v: u8) -> Option<LeaseState> {
        Some(match v {
            1 => LeaseState::Bound,
            2 => LeaseState::Released,
            3 => LeaseState::Expired,
            4 => LeaseState::Declined,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            LeaseState::Bound => "bound",
            LeaseState::Released => "released",
            LeaseState::Expired => "expired",
            LeaseState::Declined => "declined",
        }
    }
}

/// One address's lease: what is replicated and persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub mac: Mac,
    pub ip: Ipv4Addr,
    /// Unix seconds.
    pub expires: u64,
    pub state: LeaseState,
    /// At most [`MAX_HOSTNAME`] bytes.
    pub hostname: String,
    /// Unix milliseconds of the last change: the newer record wins when the peer's arrives.
    pub updated_ms: u64,
}

impl Lease {
    /// Whether the address belongs to its client right now.
    pub fn holds(&self, now: u64) -> bool {
        matches!(self.state, LeaseState::Bound | LeaseState::Declined) && self.expires > now
    }
}

#[derive(Debug, Clone)]
struct Offer {
    mac: Mac,
    ip: Ipv4Addr,
    expires: u64,
}

/// Why a REQUEST is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nak {
    /// The address is not ours to give (outside the pool, or another client's).
    NotAvailable,
    /// This server neither offered the address to the client nor leases it to it.
    NotOffered,
}

/// One interface's pool.
#[derive(Debug)]
pub struct Pool {
    ranges: Vec<(Ipv4Addr, Ipv4Addr)>,
    statics: HashMap<Mac, (Ipv4Addr, String)>,
    /// The statics by address.
    static_ips: HashMap<Ipv4Addr, Mac>,
    lease_time: u64,
    leases: BTreeMap<Ipv4Addr, Lease>,
    /// Oldest first: the one recycled past the cap.
    offers: VecDeque<Offer>,
    /// The same offers by address (one offer per address: an address offered to one client is
    /// never offered to another while that offer stands).
    offered: HashMap<Ipv4Addr, Offer>,
    max_offers: usize,
}

impl Pool {
    pub fn new(cfg: &Dhcp) -> Pool {
        let size = usize::try_from(cfg.pool_size()).unwrap_or(usize::MAX);
        Pool {
            ranges: cfg.ranges.clone(),
            statics: cfg
                .statics
                .iter()
                .map(|s| (s.mac.0, (s.ip, s.hostname.clone())))
                .collect(),
            static_ips: cfg.statics.iter().map(|s| (s.ip, s.mac.0)).collect(),
            lease_time: u64::from(cfg.lease_time),
            leases: BTreeMap::new(),
            offers: VecDeque::new(),
            offered: HashMap::new(),
            max_offers: (size / 4).max(4),
        }
    }

    pub fn lease_time(&self) -> u64 {
        self.lease_time
    }

    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.leases.values()
    }

    pub fn offers(&self) -> usize {
        self.offers.len()
    }

    fn in_ranges(&self, ip: Ipv4Addr) -> bool {
        self.ranges.iter().any(|(a, b)| (*a..=*b).contains(&ip))
    }

    /// Keeps the offers `keep` says yes to, in both views.
    fn retain_offers(&mut self, keep: impl Fn(&Offer) -> bool) {
        self.offers.retain(|o| keep(o));
        self.offered.retain(|_, o| keep(o));
    }

    fn push_offer(&mut self, o: Offer) {
        if self.offers.len() >= self.max_offers {
            if let Some(old) = self.offers.pop_front() {
                self.offered.remove(&old.ip);
            }
        }
        self.offered.insert(o.ip, o.clone());
        self.offers.push_back(o);
    }

    /// Whether this server gave `mac` the address `ip`: it offered it (an offer that still
    /// stands), leases it to it (in any state but declined: a lapsed lease may be taken up again
    /// while the address is free), or maps it to it.
    fn granted(&self, mac: Mac, ip: Ipv4Addr, now: u64) -> bool {
        self.statics.get(&mac).is_some_and(|(s, _)| *s == ip)
            || self
                .offered
                .get(&ip)
                .is_some_and(|o| o.mac == mac && o.expires > now)
            || self
                .leases
                .get(&ip)
                .is_some_and(|l| l.mac == mac && l.state != LeaseState::Declined)
    }

    /// Whether `mac` may have `ip` now: its static address, or a pool address that no other
    /// client holds, is offered to or is mapped to.
    fn free_for(&self, mac: Mac, ip: Ipv4Addr, now: u64) -> bool {
        if let Some((s, _)) = self.statics.get(&mac) {
            return *s == ip;
        }
        self.in_ranges(ip)
            && !self.static_ips.contains_key(&ip)
            && self
                .leases
                .get(&ip)
                .is_none_or(|l| l.mac == mac || !l.holds(now))
            && self
                .offered
                .get(&ip)
                .is_none_or(|o| o.mac == mac || o.expires <= now)
    }

    /// The lease a client holds (any state but declined), newest first.
    fn lease_of(&self, mac: Mac) -> Option<&Lease> {
        self.leases
            .values()
            .filter(|l| l.mac == mac && l.state != LeaseState::Declined)
            .max_by_key(|l| l.updated_ms)
    }

    /// DISCOVER: the address to offer `mac`, reserved for [`OFFER_SECS`]; `None` when the pool
    /// has nothing free.
    pub fn offer(&mut self, mac: Mac, requested: Option<Ipv4Addr>, now: u64) -> Option<Ipv4Addr> {
        self.retain_offers(|o| o.expires > now && o.mac != mac);
        let ip = self.choose(mac, requested, now)?;
        self.push_offer(Offer {
            mac,
            ip,
            expires: now + OFFER_SECS,
        });
        Some(ip)
    }

    fn choose(&self, mac: Mac, requested: Option<Ipv4Addr>, now: u64) -> Option<Ipv4Addr> {
        if let Some((ip, _)) = self.statics.get(&mac) {
            return Some(*ip);
        }
        if let Some(l) = self.lease_of(mac) {
            if self.free_for(mac, l.ip, now) {
                return Some(l.ip);
            }
        }
        if let Some(ip) = requested.filter(|ip| self.free_for(mac, *ip, now)) {
            return Some(ip);
        }
        // A never-used address first, then the one released or expired longest ago, so that a
        // client that comes back soon finds its old address still free.
        let fresh = self
            .ranges
            .iter()
            .flat_map(|(a, b)| (a.to_bits()..=b.to_bits()).map(Ipv4Addr::from_bits))
            .find(|ip| !self.leases.contains_key(ip) && self.free_for(mac, *ip, now));
        fresh.or_else(|| {
            self.leases
                .values()
                .filter(|l| !l.holds(now) && self.free_for(mac, l.ip, now))
                .min_by_key(|l| l.updated_ms)
                .map(|l| l.ip)
        })
    }

    /// REQUEST for `ip` (selecting, init-reboot, renewing or rebinding): binds it for a lease
    /// time and returns the new lease (to reply with, replicate and persist). Only an address
    /// this server gave the client (an offer, a lease or a static mapping of it) is bound, and
    /// only while it is free for it.
    pub fn request(
        &mut self,
        mac: Mac,
        ip: Ipv4Addr,
        hostname: &str,
        now: u64,
        now_ms: u64,
    ) -> Result<Lease, Nak> {
        if !self.free_for(mac, ip, now) {
            return Err(Nak::NotAvailable);
        }
        if !self.granted(mac, ip, now) {
            return Err(Nak::NotOffered);
        }
        self.retain_offers(|o| o.mac != mac);
        let hostname = match self.statics.get(&mac) {
            Some((_, h)) if !h.is_empty() => h.clone(),
            _ => printable_hostname(hostname),
        };
        let lease = Lease {
            mac,
            ip,
            expires: now + self.lease_time,
            state: LeaseState::Bound,
            hostname,
            updated_ms: now_ms,
        };
        // A client has one address: an older lease of the same client is let go.
        let old: Vec<Ipv4Addr> = self
            .leases
            .values()
            .filter(|l| l.mac == mac && l.ip != ip && l.state == LeaseState::Bound)
            .map(|l| l.ip)
            .collect();
        for o in old {
            if let Some(l) = self.leases.get_mut(&o) {
                l.state = LeaseState::Released;
                l.expires = now;
                l.updated_ms = now_ms;
            }
        }
        self.leases.insert(ip, lease.clone());
        Ok(lease)
    }

    /// Whether this server has any record of `mac` (RFC 2131 §4.3.2: without one, a server
    /// stays silent to an INIT-REBOOT request).
    pub fn knows(&self, mac: Mac) -> bool {
        self.statics.contains_key(&mac) || self.lease_of(mac).is_some()
    }

    /// The client chose another server's offer: its reservation here goes.
    pub fn forget_offer(&mut self, mac: Mac) {
        self.retain_offers(|o| o.mac != mac);
    }

    /// RELEASE (`Declined` for DECLINE): the lease ends now (a declined address stays out of
    /// the pool for [`DECLINE_SECS`]). Returns the changed lease.
    pub fn end(
        &mut self,
        mac: Mac,
        ip: Ipv4Addr,
        state: LeaseState,
        now: u64,
        now_ms: u64,
    ) -> Option<Lease> {
        if state == LeaseState::Declined {
            // Only what this server gave the client: its bound lease, or the address it was
            // offered (Kea likewise ignores a decline for a lease the client does not hold).
            // Otherwise one host declining each free address took the pool out for 10 minutes.
            let its_lease = self
                .leases
                .get(&ip)
                .is_some_and(|l| l.mac == mac && l.state == LeaseState::Bound && l.expires > now);
            let its_offer = self.offered.get(&ip).is_some_and(|o| o.mac == mac);
            if !self.in_ranges(ip) || !(its_lease || its_offer) {
                return None;
            }
            // At the cap, the client's oldest quarantined address comes back to the pool: a
            // client whose addresses keep conflicting (a pool over statically numbered hosts)
            // moves on instead of being given the same address again.
            let held: Vec<(u64, Ipv4Addr)> = self
                .leases
                .values()
                .filter(|l| l.mac == mac && l.state == LeaseState::Declined && l.expires > now)
                .map(|l| (l.expires, l.ip))
                .collect();
            if held.len() >= MAX_DECLINED_PER_CLIENT {
                if let Some(&(_, oldest)) = held.iter().min() {
                    self.leases.remove(&oldest);
                }
            }
            let l = Lease {
                mac,
                ip,
                expires: now + DECLINE_SECS,
                state,
                hostname: String::new(),
                updated_ms: now_ms,
            };
            self.retain_offers(|o| o.mac != mac);
            self.leases.insert(ip, l.clone());
            return Some(l);
        }
        // A client that lets its address go wants no other one either.
        self.retain_offers(|o| o.mac != mac);
        let l = self.leases.get_mut(&ip).filter(|l| l.mac == mac)?;
        l.state = state;
        l.expires = now;
        l.updated_ms = now_ms;
        Some(l.clone())
    }

    /// Time passes: offers lapse, bound leases past their end become expired (returned, to
    /// replicate).
    pub fn expire(&mut self, now: u64, now_ms: u64) -> Vec<Lease> {
        self.retain_offers(|o| o.expires > now);
        let mut out = Vec::new();
        for l in self.leases.values_mut() {
            if l.state == LeaseState::Bound && l.expires <= now {
                l.state = LeaseState::Expired;
                l.updated_ms = now_ms;
                out.push(l.clone());
            }
        }
        out
    }

    /// A lease from the peer or from disk: taken when it is newer than ours for that address.
    /// Returns whether it changed anything.
    pub fn merge(&mut self, mut l: Lease) -> bool {
        match self.leases.get(&l.ip) {
            Some(ours) if ours.updated_ms >= l.updated_ms => false,
            _ => {
                l.hostname = printable_hostname(&l.hostname);
                self.retain_offers(|o| o.ip != l.ip || o.mac == l.mac);
                self.leases.insert(l.ip, l);
                true
            }
        }
    }

    /// The hostname of a static mapping, if any.
    pub fn static_hostname(&self, mac: Mac) -> Option<&str> {
        self.statics.get(&mac).map(|(_, h)| h.as_str())
    }
}

/// A client's hostname as kept: printable ASCII only (a hostname is shown in `tandemctl dhcp
/// leases`, where an escape sequence or a newline would drive the admin's terminal or forge a
/// line), at most [`MAX_HOSTNAME`] bytes.
fn printable_hostname(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(MAX_HOSTNAME)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DhcpStatic, MacAddr};

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    fn cfg(first: &str, last: &str) -> Dhcp {
        Dhcp {
            interface: "lan".into(),
            enabled: true,
            ranges: vec![(ip(first), ip(last))],
            gateway: ip("192.168.0.10"),
            dns: vec![ip("192.168.0.10")],
            domain: None,
            lease_time: 100,
            statics: vec![DhcpStatic {
                mac: MacAddr([2, 0, 0, 0, 0, 0x99]),
                ip: ip("192.168.0.50"),
                hostname: "printer".into(),
            }],
            description: String::new(),
            no_sync: false,
            verify_chaddr: true,
        }
    }

    const A: Mac = [2, 0, 0, 0, 0, 1];
    const B: Mac = [2, 0, 0, 0, 0, 2];

    #[test]
    fn offer_request_renew_release() {
        let mut p = Pool::new(&cfg("192.168.0.150", "192.168.0.151"));
        let a = p.offer(A, None, 0).unwrap();
        assert_eq!(a, ip("192.168.0.150"));
        // Another client is not offered the same address while A's offer stands.
        assert_eq!(p.offer(B, Some(a), 0), Some(ip("192.168.0.151")));
        let l = p.request(A, a, "host-a", 1, 1000).unwrap();
        assert_eq!((l.state, l.expires), (LeaseState::Bound, 101));
        // B cannot take A's bound address.
        assert_eq!(p.request(B, a, "", 2, 2000), Err(Nak::NotAvailable));
        // Renewal extends; the same address on a new DISCOVER.
        assert_eq!(p.request(A, a, "host-a", 50, 50_000).unwrap().expires, 150);
        assert_eq!(p.offer(A, None, 60), Some(a));
        let r = p.end(A, a, LeaseState::Released, 70, 70_000).unwrap();
        assert_eq!(r.state, LeaseState::Released);
        assert_eq!(p.request(B, a, "", 71, 71_000), Err(Nak::NotOffered));
        assert_eq!(p.offer(B, Some(a), 71), Some(a));
        assert!(p.request(B, a, "", 71, 71_000).is_ok());
    }

    #[test]
    fn statics_are_honoured_and_reserved() {
        let mut p = Pool::new(&cfg("192.168.0.40", "192.168.0.60"));
        let printer = [2, 0, 0, 0, 0, 0x99];
        assert_eq!(p.offer(printer, None, 0), Some(ip("192.168.0.50")));
        assert_eq!(
            p.request(printer, ip("192.168.0.50"), "x", 0, 0)
                .unwrap()
                .hostname,
            "printer"
        );
        // Nobody else gets the static address, and the printer gets nothing else.
        assert_eq!(
            p.request(A, ip("192.168.0.50"), "", 0, 0),
            Err(Nak::NotAvailable)
        );
        assert_eq!(
            p.request(printer, ip("192.168.0.41"), "", 0, 0),
            Err(Nak::NotAvailable)
        );
        for _ in 0..30 {
            assert_ne!(p.offer(A, None, 0), Some(ip("192.168.0.50")));
        }
    }

    #[test]
    fn a_discover_flood_cannot_take_bound_leases_or_the_whole_pool() {
        let mut p = Pool::new(&cfg("192.168.0.150", "192.168.0.165")); // 16 addresses
        let a = p.offer(A, None, 0).unwrap();
        p.request(A, a, "", 0, 0).unwrap();
        for i in 0..10_000u32 {
            let mac = [6, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8, 7];
            assert_ne!(p.offer(mac, None, 1), Some(a));
        }
        assert!(p.offers() <= 4, "offers are capped: {}", p.offers());
        // A real client still gets an address, and A keeps its own.
        let b = p.offer(B, None, 1).unwrap();
        assert!(p.request(B, b, "", 1, 1).is_ok());
        assert!(p.request(A, a, "", 2, 2).is_ok());
    }

    #[test]
    fn leases_expire_offers_lapse_and_decline_quarantines() {
        let mut p = Pool::new(&cfg("192.168.0.150", "192.168.0.150"));
        let a = p.offer(A, None, 0).unwrap();
        assert_eq!(
            p.offer(B, None, 1),
            None,
            "the only address is offered to A"
        );
        assert_eq!(
            p.offer(B, None, OFFER_SECS + 1),
            Some(a),
            "A's offer lapsed"
        );
        p.request(B, a, "", 40, 0).unwrap();
        assert!(
            p.end(A, a, LeaseState::Declined, 41, 1).is_none(),
            "not A's"
        );
        assert!(p.end(B, a, LeaseState::Declined, 41, 2).is_some());
        assert_eq!(p.offer(A, None, 42), None, "declined: out of the pool");
        assert_eq!(p.offer(A, None, 41 + DECLINE_SECS), Some(a));
        // B leases it again; once that lease has lapsed, it is no longer B's to decline.
        let t = 41 + DECLINE_SECS + OFFER_SECS + 1;
        assert_eq!(p.offer(B, None, t), Some(a));
        p.request(B, a, "", t, 3).unwrap();
        let gone = p.expire(t + 100, 4);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].state, LeaseState::Expired);
        assert!(p.end(B, a, LeaseState::Declined, t + 101, 5).is_none());
    }

    /// Found by an attacker's review: one host declining each free address (with its own MAC,
    /// no DISCOVER) took the whole pool out for DECLINE_SECS.
    #[test]
    fn a_client_declines_only_what_it_was_given_and_a_few_at_a_time() {
        let mut p = Pool::new(&cfg("192.168.0.150", "192.168.0.199"));
        // Free addresses, and another client's offer: refused.
        assert!(p
            .end(A, ip("192.168.0.150"), LeaseState::Declined, 0, 0)
            .is_none());
        let b_offer = p.offer(B, None, 0).unwrap();
        assert!(p.end(A, b_offer, LeaseState::Declined, 0, 0).is_none());
        // What the client is offered, or leases: taken out, up to the cap.
        let mut now = 1;
        for _ in 0..MAX_DECLINED_PER_CLIENT {
            let x = p.offer(A, None, now).unwrap();
            assert!(p.end(A, x, LeaseState::Declined, now, now).is_some());
            now += 1;
        }
        // Past the cap the decline is taken, and A's oldest quarantined address comes back.
        let x = p.offer(A, None, now).unwrap();
        p.request(A, x, "", now, now).unwrap();
        assert!(p.end(A, x, LeaseState::Declined, now, now).is_some());
        let held: Vec<Ipv4Addr> = p
            .leases
            .values()
            .filter(|l| l.mac == A && l.state == LeaseState::Declined)
            .map(|l| l.ip)
            .collect();
        assert_eq!(held.len(), MAX_DECLINED_PER_CLIENT);
        assert!(held.contains(&x));
        // A is offered something new, not an address it declined.
        let y = p.offer(A, None, now + 1).unwrap();
        assert!(!held.contains(&y));
    }

    #[test]
    fn merge_keeps_the_newer_record() {
        let mut p = Pool::new(&cfg("192.168.0.150", "192.168.0.151"));
        assert_eq!(p.offer(A, None, 0), Some(ip("192.168.0.150")));
        let l = p.request(A, ip("192.168.0.150"), "", 0, 10).unwrap();
        let older = Lease {
            mac: B,
            updated_ms: 5,
            ..l.clone()
        };
        assert!(!p.merge(older));
        let newer = Lease {
            expires: 500,
            updated_ms: 20,
            ..l
        };
        assert!(p.merge(newer));
        assert_eq!(p.leases().next().unwrap().expires, 500);
        assert!(p.knows(A) && !p.knows(B));
    }

    #[test]
    fn a_request_binds_only_what_was_offered_or_leased() {
        let mut p = Pool::new(&cfg("192.168.0.150", "192.168.0.165"));
        // One REQUEST per address, no DISCOVER, a new MAC each (the pool-starving attack):
        // every one refused, nothing bound.
        for (i, bits) in (ip("192.168.0.150").to_bits()..=ip("192.168.0.165").to_bits()).enumerate()
        {
            let mac = [6, 0, 0, 0, 1, i as u8];
            let want = Ipv4Addr::from_bits(bits);
            assert_eq!(p.request(mac, want, "", 1, 1), Err(Nak::NotOffered));
        }
        assert_eq!(p.leases().count(), 0);
        // A client that was offered an address gets it; the address it asks for next without
        // an offer is refused, its own is renewed (and taken up again after it lapsed).
        let a = p.offer(A, None, 2).unwrap();
        p.request(A, a, "", 2, 2).unwrap();
        let other = ip("192.168.0.160");
        assert_eq!(p.request(A, other, "", 3, 3), Err(Nak::NotOffered));
        assert_eq!(p.request(A, a, "", 3, 3).unwrap().ip, a);
        p.expire(1000, 1000);
        assert_eq!(p.request(A, a, "", 1001, 1001).unwrap().ip, a);
        // An offer that lapsed backs nothing.
        let b = p.offer(B, None, 1002).unwrap();
        assert_eq!(
            p.request(B, b, "", 1002 + OFFER_SECS, 1),
            Err(Nak::NotOffered)
        );
        // Another client's lease, declined or not, is not granted by it.
        assert_eq!(p.request(B, a, "", 1003, 2), Err(Nak::NotAvailable));
    }

    #[test]
    fn hostnames_are_kept_printable() {
        let mut p = Pool::new(&cfg("192.168.0.150", "192.168.0.151"));
        let a = p.offer(A, None, 0).unwrap();
        let l = p
            .request(A, a, "\x1b[2J\x1b[H\nfake 10.0.0.1 bound", 0, 1)
            .unwrap();
        assert_eq!(l.hostname, "[2J[Hfake 10.0.0.1 bound");
        let long = p.request(A, a, &"é".repeat(40), 0, 2).unwrap();
        assert_eq!(long.hostname, "");
        let peer = Lease {
            hostname: "x\ty\u{7f}".repeat(20),
            updated_ms: 3,
            ..l
        };
        assert!(p.merge(peer));
        let kept = &p.leases().next().unwrap().hostname;
        assert_eq!(kept.len(), MAX_HOSTNAME.min(40), "{kept:?}");
        assert!(kept.chars().all(|c| c == 'x' || c == 'y'), "{kept:?}");
    }

    #[test]
    fn the_offers_by_address_stay_the_offers() {
        // Offers, requests, releases, declines, expiry and peer records in a pseudo-random
        // mix; after each step the index by address holds exactly the queued offers.
        let mut p = Pool::new(&cfg("192.168.0.150", "192.168.0.181")); // 32 addresses, 8 offers
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for step in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mac = [2, 0, 0, 0, 7, (x >> 8) as u8 % 48];
            let addr = Ipv4Addr::from_bits(ip("192.168.0.150").to_bits() + (x >> 16) as u32 % 36);
            let now = step / 8;
            match x % 6 {
                0 | 1 => {
                    p.offer(mac, Some(addr).filter(|_| x & 64 != 0), now);
                }
                2 => {
                    let _ = p.request(mac, addr, "", now, step);
                }
                3 => {
                    p.end(mac, addr, LeaseState::Released, now, step);
                }
                4 => {
                    p.expire(now, step);
                }
                _ => {
                    p.merge(Lease {
                        mac,
                        ip: addr,
                        expires: now + 5,
                        state: LeaseState::Bound,
                        hostname: String::new(),
                        updated_ms: step,
                    });
                }
            }
            assert!(p.offers.len() <= p.max_offers, "step {step}");
            assert_eq!(p.offers.len(), p.offered.len(), "step {step}");
            for o in &p.offers {
                let by_ip = &p.offered[&o.ip];
                assert_eq!(
                    (by_ip.mac, by_ip.expires),
                    (o.mac, o.expires),
                    "step {step}"
                );
            }
        }
    }
}
