//! CARP advertisements on the wire, compatible with FreeBSD and OpenBSD carp(4).
//!
//! ```text
//!  0       1       2       3       4       5       6               8
//! +---+---+-------+-------+-------+-------+-------+---------------+
//! |ver|typ| vhid  |advskew|authlen|demote |advbase|   checksum    |
//! +---+---+-------+-------+-------+-------+-------+---------------+
//! |                 counter (64 bits, big-endian)                 |  8..16
//! +---------------------------------------------------------------+
//! |                 HMAC-SHA1 (20 bytes)                          | 16..36
//! +---------------------------------------------------------------+
//! ```
//!
//! Version 2, type 1 (advertisement), authlen 7 (counter + HMAC in 32-bit words). Byte 4 is
//! OpenBSD's `carp_demote` (its group demote count); FreeBSD sends 0 there and ignores it. The
//! checksum is the Internet checksum over these 36 bytes. Sources: FreeBSD
//! `sys/netinet/ip_carp.h`, `ip_carp.c` (`carp_send_ad_locked`, `carp_hmac_prepare`); OpenBSD
//! `sys/netinet/ip_carp.c` (`carp_send_ad`, `carp_proto_input_c`).
//!
//! The HMAC-SHA1 key is the password zero-padded to 20 bytes; the message is version, type,
//! vhid, the VHID's IPv4 addresses sorted ascending (4 bytes each), then the 8 counter bytes as
//! they are on the wire. tandem has no IPv6 VIPs, so nothing follows the IPv4 addresses.
//!
//! [`check_advert`] validates a received frame cheapest check first and authenticates last,
//! in constant time; [`ReplayGuard`] then refuses counters that do not grow.

use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha1::Sha1;
use tandem_dataplane::wire::checksum;
use tandem_dataplane::wire::ethernet::{self, EtherType, EthernetFrame, EthernetRepr};
use tandem_dataplane::wire::ipv4::{self, IpProtocol, Ipv4Packet, Ipv4Repr};
use tandem_dataplane::wire::MacAddr;

/// Length of the CARP header (`CTASSERT(sizeof(struct carp_header) == 36)`).
pub const HEADER_LEN: usize = 36;
/// The only CARP version (VRRPv3 is 3 on the same protocol number).
pub const VERSION: u8 = 2;
/// Type advertisement, the only type.
pub const TYPE_ADVERTISEMENT: u8 = 1;
/// Counter and HMAC, in 32-bit words.
pub const AUTHLEN: u8 = 7;
/// Length of the HMAC-SHA1 and of the key.
pub const HMAC_LEN: usize = 20;
/// The key is the password zero-padded to this length (`CARP_KEY_LEN`).
pub const KEY_LEN: usize = 20;
/// IP TTL of every advert, checked on receive (`CARP_DFLTTL`).
pub const TTL: u8 = 255;
/// The IPv4 multicast group of adverts (`INADDR_CARP_GROUP`).
pub const MULTICAST_GROUP: Ipv4Addr = tandem_dataplane::wire::ipv4::CARP_GROUP;
/// DSCP of adverts: CS7, FreeBSD's `net.inet.carp.dscp` default 56 (TOS byte 0xe0).
pub const DSCP: u8 = 56;
/// Length of the whole advert frame [`build_advert`] writes: Ethernet + IPv4 + CARP.
pub const FRAME_LEN: usize = ethernet::HEADER_LEN + ipv4::HEADER_LEN + HEADER_LEN;

mod field {
    pub type Field = core::ops::Range<usize>;
    pub const VER_TYPE: usize = 0;
    pub const VHID: usize = 1;
    pub const ADVSKEW: usize = 2;
    pub const AUTHLEN: usize = 3;
    pub const DEMOTE: usize = 4;
    pub const ADVBASE: usize = 5;
    pub const CHECKSUM: Field = 6..8;
    pub const COUNTER: Field = 8..16;
    pub const HMAC: Field = 16..36;
}

/// The header failed [`CarpPacket::check_len`]: shorter than [`HEADER_LEN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated;

/// A view of a CARP header. After [`new_checked`](Self::new_checked) no accessor can panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CarpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> CarpPacket<T> {
    /// Wraps a buffer without checking it; accessors may panic on a short one.
    pub const fn new_unchecked(buffer: T) -> CarpPacket<T> {
        CarpPacket { buffer }
    }

    /// Wraps a buffer of at least [`HEADER_LEN`] bytes.
    pub fn new_checked(buffer: T) -> Result<CarpPacket<T>, Truncated> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// The buffer holds a whole header.
    pub fn check_len(&self) -> Result<(), Truncated> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Truncated)
        } else {
            Ok(())
        }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The high nibble of byte 0.
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TYPE] >> 4
    }

    /// The low nibble of byte 0.
    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TYPE] & 0x0f
    }

    pub fn vhid(&self) -> u8 {
        self.buffer.as_ref()[field::VHID]
    }

    pub fn advskew(&self) -> u8 {
        self.buffer.as_ref()[field::ADVSKEW]
    }

    pub fn authlen(&self) -> u8 {
        self.buffer.as_ref()[field::AUTHLEN]
    }

    /// OpenBSD's demote count; 0 from FreeBSD.
    pub fn demote(&self) -> u8 {
        self.buffer.as_ref()[field::DEMOTE]
    }

    pub fn advbase(&self) -> u8 {
        self.buffer.as_ref()[field::ADVBASE]
    }

    pub fn checksum(&self) -> u16 {
        let d = &self.buffer.as_ref()[field::CHECKSUM];
        u16::from_be_bytes([d[0], d[1]])
    }

    /// The 8 counter bytes as on the wire (the HMAC covers these).
    pub fn counter_bytes(&self) -> [u8; 8] {
        let mut c = [0u8; 8];
        c.copy_from_slice(&self.buffer.as_ref()[field::COUNTER]);
        c
    }

    /// The counter as a number (`counter[0]` is the high word).
    pub fn counter(&self) -> u64 {
        u64::from_be_bytes(self.counter_bytes())
    }

    pub fn hmac(&self) -> [u8; HMAC_LEN] {
        let mut m = [0u8; HMAC_LEN];
        m.copy_from_slice(&self.buffer.as_ref()[field::HMAC]);
        m
    }

    /// The checksum over the 36-byte header verifies. Bytes after the header (FreeBSD sums
    /// only `sizeof(struct carp_header)`) are not covered.
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(&self.buffer.as_ref()[..HEADER_LEN])) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> CarpPacket<T> {
    pub fn set_version_type(&mut self, version: u8, msg_type: u8) {
        self.buffer.as_mut()[field::VER_TYPE] = (version << 4) | (msg_type & 0x0f);
    }

    pub fn set_vhid(&mut self, v: u8) {
        self.buffer.as_mut()[field::VHID] = v;
    }

    pub fn set_advskew(&mut self, v: u8) {
        self.buffer.as_mut()[field::ADVSKEW] = v;
    }

    pub fn set_authlen(&mut self, v: u8) {
        self.buffer.as_mut()[field::AUTHLEN] = v;
    }

    pub fn set_demote(&mut self, v: u8) {
        self.buffer.as_mut()[field::DEMOTE] = v;
    }

    pub fn set_advbase(&mut self, v: u8) {
        self.buffer.as_mut()[field::ADVBASE] = v;
    }

    pub fn set_checksum(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_counter(&mut self, v: u64) {
        self.buffer.as_mut()[field::COUNTER].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_hmac(&mut self, v: &[u8; HMAC_LEN]) {
        self.buffer.as_mut()[field::HMAC].copy_from_slice(v);
    }

    /// Computes the checksum over the header and stores it.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = checksum::data(&self.buffer.as_ref()[..HEADER_LEN]);
        self.set_checksum(c);
    }
}

/// A CARP advertisement, parsed or to emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CarpRepr {
    pub vhid: u8,
    pub advbase: u8,
    pub advskew: u8,
    /// OpenBSD's demote count.
    pub demote: u8,
    pub counter: u64,
    pub hmac: [u8; HMAC_LEN],
}

impl CarpRepr {
    /// Parses a checked view: checksum, version 2, type 1, each its own [`Reject`]. The HMAC is
    /// not verified here (it needs the group's key).
    pub fn parse<T: AsRef<[u8]>>(p: &CarpPacket<T>) -> Result<CarpRepr, Reject> {
        if !p.verify_checksum() {
            return Err(Reject::BadChecksum);
        }
        if p.version() != VERSION {
            return Err(Reject::BadVersion);
        }
        if p.msg_type() != TYPE_ADVERTISEMENT {
            return Err(Reject::BadType);
        }
        Ok(CarpRepr {
            vhid: p.vhid(),
            advbase: p.advbase(),
            advskew: p.advskew(),
            demote: p.demote(),
            counter: p.counter(),
            hmac: p.hmac(),
        })
    }

    /// Writes the 36-byte header with authlen 7 and the checksum filled.
    ///
    /// # Panics
    ///
    /// If the buffer is shorter than [`HEADER_LEN`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut CarpPacket<T>) {
        p.set_version_type(VERSION, TYPE_ADVERTISEMENT);
        p.set_vhid(self.vhid);
        p.set_advskew(self.advskew);
        p.set_authlen(AUTHLEN);
        p.set_demote(self.demote);
        p.set_advbase(self.advbase);
        p.set_counter(self.counter);
        p.set_hmac(&self.hmac);
        p.fill_checksum();
    }
}

/// The authentication of one VHID: its key and VIPs, with the HMAC state after the fixed part
/// of the message (version, type, vhid, VIPs) precomputed, as FreeBSD's `carp_hmac_prepare`.
#[derive(Clone)]
pub struct CarpAuth {
    vhid: u8,
    vips: Vec<Ipv4Addr>,
    prefix: Hmac<Sha1>,
}

impl fmt::Debug for CarpAuth {
    // The key stays out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CarpAuth")
            .field("vhid", &self.vhid)
            .field("vips", &self.vips)
            .finish_non_exhaustive()
    }
}

impl CarpAuth {
    /// The authentication of `vhid` with `password` (at most [`KEY_LEN`] bytes; longer ones are
    /// cut, the config refuses them) and its IPv4 VIPs in any order.
    pub fn new(vhid: u8, password: &[u8], vips: &[Ipv4Addr]) -> CarpAuth {
        let mut key = [0u8; KEY_LEN];
        let n = password.len().min(KEY_LEN);
        key[..n].copy_from_slice(&password[..n]);
        let mut vips = vips.to_vec();
        vips.sort_unstable();
        // HMAC accepts keys of any length; this cannot fail.
        let mut prefix = <Hmac<Sha1> as Mac>::new_from_slice(&key).expect("HMAC takes any key");
        prefix.update(&[VERSION, TYPE_ADVERTISEMENT, vhid]);
        for ip in &vips {
            prefix.update(&ip.octets());
        }
        CarpAuth { vhid, vips, prefix }
    }

    pub fn vhid(&self) -> u8 {
        self.vhid
    }

    /// The VIPs, sorted ascending (the HMAC's order).
    pub fn vips(&self) -> &[Ipv4Addr] {
        &self.vips
    }

    /// The HMAC of an advert carrying `counter`.
    pub fn compute(&self, counter: u64) -> [u8; HMAC_LEN] {
        let mut m = self.prefix.clone();
        m.update(&counter.to_be_bytes());
        m.finalize().into_bytes().into()
    }

    /// Whether `hmac` authenticates `counter`, compared in constant time.
    pub fn verify(&self, counter: u64, hmac: &[u8; HMAC_LEN]) -> bool {
        let mut m = self.prefix.clone();
        m.update(&counter.to_be_bytes());
        m.verify_slice(hmac).is_ok()
    }
}

/// Why a received advert was dropped; each reason has its own counter, named by [`Reject::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reject {
    /// Not an IPv4 datagram of protocol 112 in an Ethernet II frame (the caller misrouted it).
    NotCarp,
    /// Malformed IPv4: bad header, length or header checksum, or a fragment.
    BadIp,
    /// IP TTL is not 255: sent from off-link (carp's `carps_badttl`).
    BadTtl,
    /// Shorter than the 36-byte CARP header (`carps_badlen`).
    Short,
    /// The CARP checksum fails (`carps_badsum`).
    BadChecksum,
    /// Not version 2 (`carps_badver`).
    BadVersion,
    /// Not type 1, advertisement.
    BadType,
    /// No group with this VHID on the interface (`carps_badvhid`).
    UnknownVhid,
    /// The HMAC does not verify: another password or another VIP set (`carps_badauth`).
    BadAuth,
    /// The counter did not grow since the last advert from this source.
    Replay,
    /// Our own advert came back: our source address or our last counter (OpenBSD's "replay or
    /// network loop detected").
    Loop,
}

impl Reject {
    /// Every reason, in check order.
    pub const ALL: [Reject; 11] = [
        Reject::NotCarp,
        Reject::BadIp,
        Reject::BadTtl,
        Reject::Short,
        Reject::BadChecksum,
        Reject::BadVersion,
        Reject::BadType,
        Reject::UnknownVhid,
        Reject::BadAuth,
        Reject::Replay,
        Reject::Loop,
    ];

    /// The counter name.
    pub const fn name(self) -> &'static str {
        match self {
            Reject::NotCarp => "not_carp",
            Reject::BadIp => "bad_ip",
            Reject::BadTtl => "bad_ttl",
            Reject::Short => "short",
            Reject::BadChecksum => "bad_checksum",
            Reject::BadVersion => "bad_version",
            Reject::BadType => "bad_type",
            Reject::UnknownVhid => "unknown_vhid",
            Reject::BadAuth => "bad_auth",
            Reject::Replay => "replay",
            Reject::Loop => "loop",
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for Reject {}

/// An authenticated advert (not yet checked for replay).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advert {
    pub src_mac: MacAddr,
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub vhid: u8,
    pub advbase: u8,
    pub advskew: u8,
    pub demote: u8,
    pub counter: u64,
}

/// What [`build_advert`] needs.
#[derive(Debug, Clone, Copy)]
pub struct AdvertParams<'a> {
    /// The interface's own address (the advert's IP source, as FreeBSD's `carp_best_ifa`).
    pub src_ip: Ipv4Addr,
    pub advbase: u8,
    /// The effective skew (demotion included).
    pub advskew: u8,
    /// OpenBSD's demote count; 0 is what FreeBSD sends.
    pub demote: u8,
    pub counter: u64,
    /// The group's key and VIPs; its VHID is the advert's.
    pub auth: &'a CarpAuth,
}

/// Writes a whole advert frame into `buf` and returns its length ([`FRAME_LEN`], 70 bytes: no
/// padding needed): from the virtual MAC 00:00:5e:00:01:VHID to 01:00:5e:00:00:12; IPv4 from
/// `src_ip` to 224.0.0.18, TTL 255, protocol 112, DSCP CS7, DF; then the CARP header.
///
/// # Panics
///
/// If `buf` is shorter than [`FRAME_LEN`]; TX frames are 2 KiB UMEM chunks.
pub fn build_advert(buf: &mut [u8], a: &AdvertParams<'_>) -> usize {
    assert!(
        buf.len() >= FRAME_LEN,
        "CARP advert buffer shorter than {FRAME_LEN}"
    );
    let buf = &mut buf[..FRAME_LEN];
    EthernetRepr {
        src_addr: MacAddr::carp_virtual(a.auth.vhid),
        dst_addr: MacAddr::ipv4_multicast(MULTICAST_GROUP),
        ethertype: EtherType::Ipv4,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut *buf));
    let ip = &mut buf[ethernet::HEADER_LEN..];
    Ipv4Repr {
        src: a.src_ip,
        dst: MULTICAST_GROUP,
        protocol: IpProtocol::Carp,
        payload_len: HEADER_LEN,
        ttl: TTL,
        dscp: DSCP,
    }
    .emit(&mut Ipv4Packet::new_unchecked(&mut *ip));
    CarpRepr {
        vhid: a.auth.vhid,
        advbase: a.advbase,
        advskew: a.advskew,
        demote: a.demote,
        counter: a.counter,
        hmac: a.auth.compute(a.counter),
    }
    .emit(&mut CarpPacket::new_unchecked(&mut ip[ipv4::HEADER_LEN..]));
    FRAME_LEN
}

/// Validates a received frame, cheapest check first, and authenticates it last: Ethernet and
/// IPv4 (protocol 112, header checksum, no fragment), TTL 255, length, CARP checksum, version,
/// type, a known VHID (`groups` maps a VHID of the receiving interface to its [`CarpAuth`]),
/// then the HMAC in constant time. Replay is the caller's next step ([`ReplayGuard`]).
pub fn check_advert<'a, F>(frame: &[u8], groups: F) -> Result<Advert, Reject>
where
    F: Fn(u8) -> Option<&'a CarpAuth>,
{
    let eth = EthernetFrame::new_checked(frame).map_err(|_| Reject::NotCarp)?;
    if eth.ethertype() != EtherType::Ipv4 {
        return Err(Reject::NotCarp);
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).map_err(|_| Reject::BadIp)?;
    if ip.next_header() != IpProtocol::Carp {
        return Err(Reject::NotCarp);
    }
    if !ip.verify_checksum() || ip.is_fragment() {
        return Err(Reject::BadIp);
    }
    if ip.ttl() != TTL {
        return Err(Reject::BadTtl);
    }
    let carp = CarpPacket::new_checked(ip.payload()).map_err(|_| Reject::Short)?;
    let repr = CarpRepr::parse(&carp)?;
    let auth = groups(repr.vhid).ok_or(Reject::UnknownVhid)?;
    if !auth.verify(repr.counter, &repr.hmac) {
        return Err(Reject::BadAuth);
    }
    Ok(Advert {
        src_mac: eth.src_addr(),
        src_ip: ip.src_addr(),
        dst_ip: ip.dst_addr(),
        vhid: repr.vhid,
        advbase: repr.advbase,
        advskew: repr.advskew,
        demote: repr.demote,
        counter: repr.counter,
    })
}

/// How a counter passed [`ReplayGuard::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fresh {
    /// Greater than every counter accepted for this VHID, or the first one.
    InOrder,
    /// Lower than the highest counter accepted, but the last of [`RESTART_RUN`] adverts in a row
    /// from the peer's address with strictly increasing counters: taken as a BSD peer that
    /// rebooted and drew a new counter (FreeBSD starts from `arc4random()`).
    AfterRestart,
}

/// Adverts in a row, strictly increasing, from the peer's address, that make the guard accept a
/// counter below its high-water mark (a rebooted BSD peer). A replayed advert resent over and
/// over carries one counter and never makes such a run.
pub const RESTART_RUN: u32 = 3;

/// The largest step between two adverts of a BSD peer's restart run. A BSD box adds 1 to its
/// counter per advert (`sc_counter++`), so a rebooted BSD peer's run steps by 1, or a little more
/// where adverts were lost. tandem's counters step by [`COUNTER_STEP`] on random low bits drawn
/// at each start, and start from the clock, so they restart below their mark only when the
/// clock went back; a recording of a run the guard heard is refused by that run's own mark.
pub const MAX_RESTART_STEP: u64 = 64;

/// Step of tandem's own advert counters: the low 16 bits stay those of the start
/// ([`initial_counter`]: random), so a box recognises its own adverts of this run by them
/// ([`ReplayGuard::note_sent`]). At most 256 adverts/s x 2^16 is 1.7e7 per second, below the
/// clock's 1e9 ns: the counter still never outruns the clock, so it stays monotonic across
/// restarts.
pub const COUNTER_STEP: u64 = 1 << 16;

/// What the guard remembers of a VHID's peer: never forgotten while the group lives.
#[derive(Debug, Clone)]
struct PeerCounter {
    /// The highest counter accepted.
    high: u64,
    /// The source address of the last accepted advert: the peer.
    src: Ipv4Addr,
    /// A run of lower counters from `src` that may be the peer after a reboot: (last, length,
    /// when the last came).
    restart: Option<(u64, u32, Instant)>,
    /// The runs accepted from the peer by their low 16 bits, with the highest counter accepted
    /// on each, the latest last (at most [`RUNS`]). A tandem box draws new random low bits at
    /// each start (and each change of its CARP group) and keeps them for the run, so a counter
    /// on a known run's bits is that run: accepted above its highest (the run going on), a
    /// replay at or below it, wherever the overall mark stands. A BSD peer's counters change
    /// their low bits every advert: for it these are its last adverts.
    runs: Vec<(u16, u64)>,
}

/// Runs (or a BSD peer's adverts) remembered per peer.
const RUNS: usize = 64;

impl PeerCounter {
    fn new(counter: u64, src: Ipv4Addr) -> PeerCounter {
        let mut p = PeerCounter {
            high: counter,
            src,
            restart: None,
            runs: Vec::new(),
        };
        p.accept(counter, src);
        p
    }

    /// Accepts `counter` from `src`.
    fn accept(&mut self, counter: u64, src: Ipv4Addr) {
        self.high = self.high.max(counter);
        self.src = src;
        self.restart = None;
        let low = counter as u16;
        self.runs.retain(|&(l, _)| l != low);
        if self.runs.len() == RUNS {
            self.runs.remove(0);
        }
        self.runs.push((low, counter));
    }

    /// The highest counter accepted on `counter`'s run, if its low bits are a known run's.
    fn run_high(&self, counter: u64) -> Option<u64> {
        let low = counter as u16;
        self.runs.iter().find(|&&(l, _)| l == low).map(|&(_, h)| h)
    }

    /// Whether `step`, between two adverts of a restart run, is how a rebooted peer counts: a
    /// BSD peer adds 1 an advert (a little more when adverts were lost), a tandem peer
    /// [`COUNTER_STEP`] (on new random low bits, which [`PeerCounter::run_high`] has not seen).
    fn restart_step(step: u64) -> bool {
        step <= MAX_RESTART_STEP || step.is_multiple_of(COUNTER_STEP)
    }
}

/// The counters we sent for a VHID in this run: `first + k * COUNTER_STEP` up to `last`.
#[derive(Debug, Clone, Copy)]
struct OwnCounters {
    first: u64,
    last: u64,
}

/// Replay protection per VHID, so that a captured advert cannot make a master yield however
/// long after its capture it is resent (issue 10.1).
///
/// - A counter must be strictly greater than the highest one accepted for the VHID. Keyed by
///   VHID alone, not by source address: the HMAC does not cover the IP header, so a captured
///   advert resent from a new source address is still a replay (a two-box cluster has one peer
///   per VHID). The high-water mark is never forgotten, however long the peer is silent (a
///   backup sends nothing for hours): the old `forget_after` accepted anything after 3 s of
///   silence, which is what the attack waited for.
/// - A counter we sent ourselves in this run is a loop ([`Reject::Loop`]), whoever claims to
///   send it: this is what stops a master's own captured advert resent from a lower address,
///   since a master that never heard its backup has no high-water mark. tandem's counters step
///   by [`COUNTER_STEP`] from a random low half-word, so they are told apart from a peer's.
/// - tandem's counters start from the clock ([`initial_counter`]), so a restarted tandem peer
///   keeps counting upward and is accepted at once. A BSD peer draws a random counter on boot:
///   once it is below our mark, it is accepted after [`RESTART_RUN`] adverts in a row from the
///   peer's address (the source of the last accepted advert) with counters increasing by BSD's
///   steps, at most [`MAX_RESTART_STEP`] ([`Fresh::AfterRestart`]), i.e. after about three of
///   its advert intervals. A run of tandem's steps ([`COUNTER_STEP`]) is a restart only on low
///   bits the peer never used before: a recording of its adverts played back is not.
///
/// Limits (docs/security.md): the memory is the process's: a box that restarts accepts the
/// first authenticated advert it hears (a replay of an advert from before its restart can move
/// it once, until the genuine peer's next advert). An attacker who recorded a run of a BSD
/// peer's adverts and resends them in order from the peer's address passes as that peer
/// rebooted for as long as the recorded run lasts. FreeBSD has no replay check at all ("XXX Replay protection
/// goes here"); OpenBSD only refuses its own last counter.
#[derive(Debug, Clone)]
pub struct ReplayGuard {
    /// How long a restart run may pause between two adverts before it starts over.
    run_gap: Duration,
    peers: HashMap<u8, PeerCounter>,
    own: HashMap<u8, OwnCounters>,
}

impl ReplayGuard {
    /// A guard whose restart runs start over after a pause longer than `run_gap` (the group's
    /// master-down time: a genuine peer's adverts come closer than that).
    pub fn new(run_gap: Duration) -> ReplayGuard {
        ReplayGuard {
            run_gap,
            peers: HashMap::new(),
            own: HashMap::new(),
        }
    }

    /// Records the counter of an advert we sent for `vhid`.
    pub fn note_sent(&mut self, vhid: u8, counter: u64) {
        let own = self.own.entry(vhid).or_insert(OwnCounters {
            first: counter,
            last: counter,
        });
        own.last = counter;
    }

    /// Whether `counter` is one we sent for `vhid` in this run.
    fn is_own(&self, vhid: u8, counter: u64) -> bool {
        self.own.get(&vhid).is_some_and(|o| {
            (o.first..=o.last).contains(&counter)
                && (counter - o.first).is_multiple_of(COUNTER_STEP)
        })
    }

    /// Checks an authenticated advert's counter from `src` at `now`, and remembers it if it
    /// passes.
    pub fn check(
        &mut self,
        vhid: u8,
        src: Ipv4Addr,
        counter: u64,
        now: Instant,
    ) -> Result<Fresh, Reject> {
        if self.is_own(vhid, counter) {
            return Err(Reject::Loop);
        }
        let Some(p) = self.peers.get_mut(&vhid) else {
            self.peers.insert(vhid, PeerCounter::new(counter, src));
            return Ok(Fresh::InOrder);
        };
        // A known run: going on above its highest counter, or a replay. Never a lockout: a
        // forged counter that moved the overall mark does not stop the genuine run.
        if let Some(run_high) = p.run_high(counter) {
            if counter > run_high {
                p.accept(counter, src);
                return Ok(Fresh::InOrder);
            }
            return Err(Reject::Replay);
        }
        if counter > p.high {
            p.accept(counter, src);
            return Ok(Fresh::InOrder);
        }
        if src != p.src {
            return Err(Reject::Replay);
        }
        // A lower counter from the peer's address on bits no known run has: the first of a
        // restart run, or its next.
        let run = match p.restart {
            Some((last, n, at))
                if counter > last
                    && PeerCounter::restart_step(counter - last)
                    && now.saturating_duration_since(at) <= self.run_gap =>
            {
                n + 1
            }
            Some((last, _, _)) if counter == last => return Err(Reject::Replay),
            _ => 1,
        };
        if run >= RESTART_RUN {
            // The peer starts over below the old mark: the mark is its new run's.
            p.high = counter;
            p.accept(counter, src);
            return Ok(Fresh::AfterRestart);
        }
        p.restart = Some((counter, run, now));
        Err(Reject::Replay)
    }

    /// The source of the last advert accepted for `vhid`: the peer.
    pub fn peer(&self, vhid: u8) -> Option<Ipv4Addr> {
        self.peers.get(&vhid).map(|p| p.src)
    }

    /// Forgets everything about `vhid` (its group was removed).
    pub fn forget_vhid(&mut self, vhid: u8) {
        self.peers.remove(&vhid);
        self.own.remove(&vhid);
    }

    /// Forgets the counters we sent for `vhid` (our group restarts: its next adverts are a new
    /// run, on new low bits).
    pub fn forget_own(&mut self, vhid: u8) {
        self.own.remove(&vhid);
    }

    /// Forgets the peer's counter for `vhid`, keeping our own (its key changed: what the old
    /// key authenticated, a counter planted with a leaked key included, counts for nothing).
    pub fn forget_peer(&mut self, vhid: u8) {
        self.peers.remove(&vhid);
    }
}

/// A start for a VHID's advert counter: the Unix time in nanoseconds with the low 16 bits
/// random. FreeBSD starts from `arc4random()` ("this could also be seconds since unix epoch");
/// a random start would look like a replay to a peer that remembers our last counter after we
/// restart, while the clock keeps a restarted box's counter above its previous run's (it sends
/// far fewer than one advert per nanosecond). The random bits come from std's per-process
/// `RandomState` keys.
pub fn initial_counter() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(nanos);
    (nanos & !0xffff) | (h.finish() & 0xffff)
}
