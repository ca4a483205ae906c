//! The state sync frame: pfsync-shaped, authenticated, sequenced. This file is the spec
//! (docs/sync-protocol.md explains the why); all integers are big-endian.
//!
//! ```text
//! IPv4 (proto 240, TTL 255; the receiver checks TTL 255 and the source address)
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +---------------+---------------+-------------------------------+
//! |  version 0x82 |     flags     |  length (whole datagram, MAC) |  0
//! +---------------+---------------+-------------------------------+
//! |                   host id (pfsync creator id)                 |  4
//! +---------------------------------------------------------------+
//! |     boot id (per sender start, only increases: time-based)    |  8
//! +---------------------------------------------------------------+
//! |           timestamp (sender's monotonic ms mod 2^32)          | 12
//! +---------------------------------------------------------------+
//! | sequence number (u64; bit 63 set: control number; 0 not used) | 16
//! +                                                               +
//! |                                                               |
//! +---------------+---------------+-------------------------------+
//! |    action     | rec len words |            count              | 24 subheader
//! +---------------+---------------+-------------------------------+
//! |             count x (record length x 4) bytes of records      |
//! +---------------------------------------------------------------+
//! |                 ... more subheaders and records ...           |
//! +---------------------------------------------------------------+
//! |        HMAC-SHA256(key, every byte above)[..16]               | length - 16
//! +---------------------------------------------------------------+
//! ```
//!
//! Records (offsets in bytes; `id` = u64 state id then u32 creator, 12 bytes; `peer` = seqlo
//! u32, seqhi u32, max_win u16, wscale u8, state u8, 12 bytes; `key` = src u32, dst u32,
//! sport u16, dport u16, 12 bytes, its protocol carried once per record):
//!
//! ```text
//! CLR      0  4  creator u32                                                   (1 word)
//! INS     13 108 id 0, proto u8 12, timeout u8 13, pad u16 14, stack key 16,
//!                wire key 28, src peer 40, dst peer 52, last_age_ms u32 64,
//!                created_age_s u32 68, rule u32 72, packets[2] u64 76,
//!                bytes[2] u64 92                                               (27 words)
//! UPD_C    4 44  id 0, src peer 12, dst peer 24, last_age_ms u32 36,
//!                timeout u8 40, pad 41..44                                     (11 words)
//! DEL_C    7 12  id                                                            (3 words)
//! UPD_REQ  5 12  id; creator 0 and id 0: bulk request                          (3 words)
//! BUS     10 12  creator u32 0, endtime_ms u32 4, status u8 8 (1 START, 2 END),
//!                pad 9..12                                                     (3 words)
//! INS_ACK  2 12  id                                                            (3 words)
//! ACK     32  8  seq u64: every sequenced datagram up to it has arrived        (2 words)
//! NACK    33 16  from u64, to u64: these are missing, send them again          (4 words)
//! ```
//!
//! A record longer than this version's record of its action is read by its known prefix (a
//! newer peer appended fields); shorter is `malformed`, as is a timeout class or BUS status
//! this version does not know. An action this version does not know is skipped by its length
//! and counted (`unknown_action`), as pfsync's dispatch table does. Flags this version does
//! not know are ignored. Per 1480-byte datagram: 13 INS, 32 UPD_C or 119 DEL_C.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::net::Ipv4Addr;

use tandem_dataplane::state::{FlowKey, PeerState, SyncId, TcpPeer, TimeoutClass};

mod codec;
use codec::{decode, encode};

/// Version byte of tandem sync v2. The high bit keeps it apart from every pfsync version
/// (FreeBSD 5, OpenBSD 6, older 1-4): tandem is pfsync-shaped, not pfsync-compatible (MAC,
/// sequence numbers, its own record layouts). v1 (0x81) sent ACK/NACK with sequence number 0
/// and random boot ids; v2 gives them a control number (bit 63) and makes boot ids increase
/// (issue 10.2, 10.3): a v1 peer would take a control number for a huge data gap, so the
/// versions do not talk (`bad_version`).
pub const VERSION: u8 = 0x82;
/// IP protocol number (pfsync's).
pub const IPPROTO_SYNC: u8 = tandem_dataplane::wire::ipv4::proto::PFSYNC;
/// Required IP TTL (pfsync's `PFSYNC_DFLTTL`): a datagram from off the link has a lower one.
pub const TTL: u8 = 255;
/// Header length.
pub const HEADER_LEN: usize = 24;
/// Subheader length.
pub const SUBHEADER_LEN: usize = 4;
/// Length of the truncated HMAC-SHA256 tag at the end of every datagram.
pub const MAC_LEN: usize = 16;
/// The smallest datagram: a header and a MAC, no record (a keepalive).
pub const MIN_LEN: usize = HEADER_LEN + MAC_LEN;
/// Default payload size: a 1500-byte link minus the 20-byte IPv4 header.
pub const DEFAULT_MTU: usize = 1500 - 20;

/// Header flag: the sender asks for an ACK now (end of a burst or bulk, retransmit buffer
/// filling up) instead of at the receiver's next ACK tick. Unknown flags are ignored.
pub const FLAG_ACK_REQ: u8 = 0x01;

/// Action numbers: pfsync's (FreeBSD numbering; INS is 13 as FreeBSD's INS_1400 and OpenBSD's
/// INS), then ours from 32.
pub mod action {
    /// Clear all states of a creator.
    pub const CLR: u8 = 0;
    /// Acknowledge an insert (pfsync defer).
    pub const INS_ACK: u8 = 2;
    /// Compact update.
    pub const UPD_C: u8 = 4;
    /// Request a full state (0/0: a bulk update).
    pub const UPD_REQ: u8 = 5;
    /// Compact delete.
    pub const DEL_C: u8 = 7;
    /// Bulk update status.
    pub const BUS: u8 = 10;
    /// Full state (insert, or answer to UPD_REQ, or bulk).
    pub const INS: u8 = 13;
    /// Highest sequence number received in order.
    pub const ACK: u8 = 32;
    /// A range of missing sequence numbers.
    pub const NACK: u8 = 33;
    /// A DHCP lease (the DHCP server's failover peer, as Kea's hot-standby sends them).
    pub const LEASE: u8 = 48;
}

/// Record lengths in bytes, this version.
pub mod len {
    /// CLR.
    pub const CLR: usize = 4;
    /// INS.
    pub const INS: usize = 108;
    /// UPD_C.
    pub const UPD_C: usize = 44;
    /// DEL_C.
    pub const DEL_C: usize = 12;
    /// UPD_REQ.
    pub const UPD_REQ: usize = 12;
    /// BUS.
    pub const BUS: usize = 12;
    /// INS_ACK.
    pub const INS_ACK: usize = 12;
    /// ACK.
    pub const ACK: usize = 8;
    /// NACK.
    pub const NACK: usize = 16;
    /// LEASE.
    pub const LEASE: usize = 64;
}

/// This version's record length of a known action, `None` for an unknown one.
pub const fn record_len(act: u8) -> Option<usize> {
    Some(match act {
        action::CLR => len::CLR,
        action::INS => len::INS,
        action::UPD_C => len::UPD_C,
        action::DEL_C => len::DEL_C,
        action::UPD_REQ => len::UPD_REQ,
        action::BUS => len::BUS,
        action::INS_ACK => len::INS_ACK,
        action::ACK => len::ACK,
        action::NACK => len::NACK,
        action::LEASE => len::LEASE,
        _ => return None,
    })
}

mod field {
    // Header.
    pub const VERSION: usize = 0;
    pub const FLAGS: usize = 1;
    pub const LENGTH: usize = 2;
    pub const HOST: usize = 4;
    pub const BOOT: usize = 8;
    pub const TIMESTAMP: usize = 12;
    pub const SEQ: usize = 16;
}

/// The authentication key (`ha.state_sync.key`): HMAC-SHA256, keyed once, cloned per datagram.
#[derive(Clone)]
pub struct SyncKey(Hmac<Sha256>);

impl std::fmt::Debug for SyncKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncKey(..)")
    }
}

/// Why a key was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// ha.state_sync.key: the key is empty (use 32 random bytes)
    #[error("ha.state_sync.key: the key is empty (use 32 random bytes)")]
    Empty,
}

impl SyncKey {
    /// A key from its bytes (any non-empty length; 32 random bytes recommended).
    pub fn new(key: &[u8]) -> Result<Self, KeyError> {
        if key.is_empty() {
            return Err(KeyError::Empty);
        }
        // HMAC takes keys of any length: this cannot fail.
        Hmac::<Sha256>::new_from_slice(key)
            .map(SyncKey)
            .map_err(|_| KeyError::Empty)
    }

    fn tag(&self, data: &[u8]) -> [u8; MAC_LEN] {
        let mut m = self.0.clone();
        m.update(data);
        let full = m.finalize().into_bytes();
        let mut t = [0; MAC_LEN];
        t.copy_from_slice(&full[..MAC_LEN]);
        t
    }

    fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        let mut m = self.0.clone();
        m.update(data);
        // Constant time (subtle), over the leftmost MAC_LEN bytes.
        m.verify_truncated_left(tag).is_ok()
    }
}

/// Why a datagram was dropped, cheapest check first. Each variant is one counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Reject {
    /// shorter than a header and a MAC
    #[error("sync datagram shorter than a header and a MAC")]
    Short,
    /// not tandem sync v1 (pfsync from a BSD box, or another version)
    #[error("sync datagram of an unknown version")]
    BadVersion,
    /// the header's length is not the datagram's, or not a multiple of 4
    #[error("sync datagram length does not match its header")]
    BadLength,
    /// the MAC does not match: wrong key, corruption or forgery
    #[error("sync datagram MAC mismatch")]
    BadMac,
    /// an authenticated datagram whose subheaders or records do not parse
    #[error("sync datagram malformed (subheader, record length or field value)")]
    Malformed,
}

impl Reject {
    /// The counter's name.
    pub const fn counter(self) -> &'static str {
        match self {
            Reject::Short => "short",
            Reject::BadVersion => "bad_version",
            Reject::BadLength => "bad_length",
            Reject::BadMac => "bad_mac",
            Reject::Malformed => "malformed",
        }
    }
}

/// A datagram's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Flags ([`FLAG_ACK_REQ`]; others ignored).
    pub flags: u8,
    /// Total length, MAC included.
    pub length: u16,
    /// The sender's host id (pfsync creator id).
    pub host: u32,
    /// The sender's boot id.
    pub boot: u32,
    /// The sender's monotonic clock in ms, modulo 2^32.
    pub timestamp: u32,
    /// Sequence number; bit 63 set ([`crate::replay::CONTROL`]): a control datagram's number.
    pub seq: u64,
}

/// Bulk update status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusStatus {
    /// The bulk update begins.
    Start,
    /// The bulk update is complete.
    End,
}

impl BusStatus {
    const fn to_wire(self) -> u8 {
        match self {
            BusStatus::Start => 1,
            BusStatus::End => 2,
        }
    }
    const fn from_wire(b: u8) -> Option<Self> {
        match b {
            1 => Some(BusStatus::Start),
            2 => Some(BusStatus::End),
            _ => None,
        }
    }
}

/// A full state (INS): what the peer needs to create it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InsRecord {
    /// Identity.
    pub id: SyncId,
    /// First packet's key before translation (carries the protocol for both keys).
    pub stack: FlowKey,
    /// First packet's key after translation (same protocol as `stack`).
    pub wire: FlowKey,
    /// The first packet's sender.
    pub src: TcpPeer,
    /// The other side.
    pub dst: TcpPeer,
    /// Timeout class in force.
    pub timeout: TimeoutClass,
    /// Milliseconds since the last packet (relative: the clocks need not agree).
    pub last_age_ms: u32,
    /// Seconds since creation.
    pub created_age_s: u32,
    /// Rule number.
    pub rule: u32,
    /// Packets `[original, reply]`.
    pub packets: [u64; 2],
    /// Bytes `[original, reply]`.
    pub bytes: [u64; 2],
}

/// A compact update (UPD_C): the tracking of a state the peer has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdCRecord {
    /// Identity.
    pub id: SyncId,
    /// The first packet's sender.
    pub src: TcpPeer,
    /// The other side.
    pub dst: TcpPeer,
    /// Timeout class in force.
    pub timeout: TimeoutClass,
    /// Milliseconds since the last packet.
    pub last_age_ms: u32,
}

/// Bulk update status (BUS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusRecord {
    /// The creator id of the node sending the bulk update.
    pub creator: u32,
    /// END: ms between the request's reception and the end (pfsync's `endtime`); START: 0.
    pub endtime_ms: u32,
    /// Start or end.
    pub status: BusStatus,
}

/// The longest hostname a LEASE record carries.
pub const LEASE_HOSTNAME: usize = 32;

/// LEASE: one DHCP lease as its server last changed it. The receiver keeps the record with the
/// newer `updated_ms` for an address.
///
/// ```text
/// 0      6    8      12        20           28     29      30   32              64
/// | mac  | 0  | ip   | expires | updated_ms | state| hn len| 0  | hostname (32) |
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseRecord {
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    /// Unix seconds.
    pub expires: u64,
    /// Unix milliseconds of the change.
    pub updated_ms: u64,
    /// The server's lease state (its own numbering, opaque here).
    pub state: u8,
    /// The first `hostname_len` bytes of `hostname`.
    pub hostname: [u8; LEASE_HOSTNAME],
    pub hostname_len: u8,
}

/// One record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// CLR: forget every state of `creator`.
    Clr {
        /// Creator id.
        creator: u32,
    },
    /// INS: a full state.
    Ins(InsRecord),
    /// UPD_C: compact update.
    UpdC(UpdCRecord),
    /// DEL_C: delete.
    DelC(SyncId),
    /// UPD_REQ: send me this state in full; `{creator: 0, id: 0}` asks for a bulk update.
    UpdReq(SyncId),
    /// BUS: bulk update status.
    Bus(BusRecord),
    /// INS_ACK: I have this state (defer).
    InsAck(SyncId),
    /// ACK: every sequenced datagram up to `seq` has arrived.
    Ack {
        /// Highest sequence number received in order.
        seq: u64,
    },
    /// NACK: datagrams `from..=to` are missing: send them again.
    Nack {
        /// First missing.
        from: u64,
        /// Last missing.
        to: u64,
    },
    /// LEASE: a DHCP lease.
    Lease(LeaseRecord),
}

impl Record {
    /// The record's action number.
    pub const fn action(&self) -> u8 {
        match self {
            Record::Clr { .. } => action::CLR,
            Record::Ins(_) => action::INS,
            Record::UpdC(_) => action::UPD_C,
            Record::DelC(_) => action::DEL_C,
            Record::UpdReq(_) => action::UPD_REQ,
            Record::Bus(_) => action::BUS,
            Record::InsAck(_) => action::INS_ACK,
            Record::Ack { .. } => action::ACK,
            Record::Nack { .. } => action::NACK,
            Record::Lease(_) => action::LEASE,
        }
    }

    /// The bulk request sentinel (UPD_REQ 0/0).
    pub const BULK_REQUEST: Record = Record::UpdReq(SyncId { creator: 0, id: 0 });
}

// ---- builder -------------------------------------------------------------------------------

/// Packs records into one datagram of at most `mtu` bytes, then seals it with the MAC.
///
/// The buffer is allocated once (`mtu` bytes); pushing a record writes into it and never
/// allocates. A `push_*` that returns false did not fit (nothing was written):
/// [`FrameBuilder::finish`] the datagram, send it, push again (a push after `finish` starts a
/// new datagram). Consecutive records of one action share one subheader (up to 65535).
#[derive(Debug)]
pub struct FrameBuilder {
    key: SyncKey,
    buf: Vec<u8>,
    mtu: usize,
    host: u32,
    boot: u32,
    flags: u8,
    /// Offset of the open subheader, its action and count.
    open: Option<(usize, u8, u16)>,
    records: usize,
    /// `finish` appended the MAC: the next push starts a new datagram.
    sealed: bool,
}

impl FrameBuilder {
    /// A builder for host `host` (creator id) in boot `boot`, for datagrams of at most `mtu`
    /// bytes of IP payload ([`DEFAULT_MTU`]; at least [`MIN_LEN`] + a NACK, at most 65535).
    pub fn new(key: SyncKey, host: u32, boot: u32, mtu: usize) -> Self {
        let mtu = mtu.clamp(MIN_LEN + SUBHEADER_LEN + len::INS, usize::from(u16::MAX));
        let mut b = FrameBuilder {
            key,
            buf: Vec::with_capacity(mtu),
            mtu,
            host,
            boot,
            flags: 0,
            open: None,
            records: 0,
            sealed: false,
        };
        b.clear();
        b
    }

    /// Start a new, empty datagram (keeps the buffer).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.buf.resize(HEADER_LEN, 0);
        self.open = None;
        self.records = 0;
        self.flags = 0;
        self.sealed = false;
    }

    /// The datagram size limit.
    pub fn mtu(&self) -> usize {
        self.mtu
    }

    /// Records pushed since the last [`clear`](FrameBuilder::clear).
    pub fn records(&self) -> usize {
        self.records
    }

    /// True when no record has been pushed.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Set header flags ([`FLAG_ACK_REQ`]) for this datagram.
    pub fn set_flags(&mut self, flags: u8) {
        self.flags = flags;
    }

    /// Would a record of `act` fit now?
    pub fn fits(&self, act: u8) -> bool {
        let rec = record_len(act).unwrap_or(usize::MAX / 2);
        let (used, sub) = match self.open {
            _ if self.sealed => (HEADER_LEN, SUBHEADER_LEN),
            Some((_, a, n)) if a == act && n < u16::MAX => (self.buf.len(), 0),
            _ => (self.buf.len(), SUBHEADER_LEN),
        };
        used + sub + rec + MAC_LEN <= self.mtu
    }

    /// Append a record; false (and nothing written) if it does not fit.
    pub fn push(&mut self, rec: &Record) -> bool {
        let act = rec.action();
        if !self.fits(act) {
            return false;
        }
        if self.sealed {
            self.clear();
        }
        match self.open {
            Some((at, a, n)) if a == act && n < u16::MAX => self.open = Some((at, a, n + 1)),
            open => {
                self.close_subheader_of(open);
                let at = self.buf.len();
                // Record lengths are whole words, at most 108 bytes: 27 fits a byte.
                let words = (record_len(act).unwrap_or(0) / 4) as u8;
                self.buf.extend_from_slice(&[act, words, 0, 0]);
                self.open = Some((at, act, 1));
            }
        }
        encode(rec, &mut self.buf);
        self.records += 1;
        true
    }

    fn close_subheader_of(&mut self, open: Option<(usize, u8, u16)>) {
        if let Some((at, _, n)) = open {
            if let Some(c) = self.buf.get_mut(at + 2..at + 4) {
                c.copy_from_slice(&n.to_be_bytes());
            }
        }
    }

    /// Append a full state.
    pub fn push_ins(&mut self, r: &InsRecord) -> bool {
        self.push(&Record::Ins(*r))
    }
    /// Append a compact update.
    pub fn push_upd_c(&mut self, r: &UpdCRecord) -> bool {
        self.push(&Record::UpdC(*r))
    }
    /// Append a compact delete.
    pub fn push_del_c(&mut self, id: SyncId) -> bool {
        self.push(&Record::DelC(id))
    }
    /// Append a state request (`SyncId {0, 0}`: bulk request).
    pub fn push_upd_req(&mut self, id: SyncId) -> bool {
        self.push(&Record::UpdReq(id))
    }
    /// Append a clear of `creator`'s states.
    pub fn push_clr(&mut self, creator: u32) -> bool {
        self.push(&Record::Clr { creator })
    }
    /// Append a bulk status.
    pub fn push_bus(&mut self, r: &BusRecord) -> bool {
        self.push(&Record::Bus(*r))
    }
    /// Append an insert acknowledgement.
    pub fn push_ins_ack(&mut self, id: SyncId) -> bool {
        self.push(&Record::InsAck(id))
    }
    /// Append an ACK.
    pub fn push_ack(&mut self, seq: u64) -> bool {
        self.push(&Record::Ack { seq })
    }
    /// Append a NACK of `from..=to`.
    pub fn push_nack(&mut self, from: u64, to: u64) -> bool {
        self.push(&Record::Nack { from, to })
    }

    /// Seal the datagram: header (sequence number `seq`, bit 63 set for a control one carrying
    /// only ACK/NACK; timestamp `now_ms`), then the MAC. The bytes stay valid until the next push
    /// (which starts a new datagram) or [`clear`](FrameBuilder::clear); keep a copy to
    /// retransmit (same bytes, same seq). Finishing again re-seals the same records.
    pub fn finish(&mut self, seq: u64, now_ms: u64) -> &[u8] {
        if self.sealed {
            self.buf.truncate(self.buf.len() - MAC_LEN);
        }
        self.close_subheader_of(self.open);
        self.open = None;
        let total = self.buf.len() + MAC_LEN;
        let mut h = [0u8; HEADER_LEN];
        h[field::VERSION] = VERSION;
        h[field::FLAGS] = self.flags;
        h[field::LENGTH..field::LENGTH + 2].copy_from_slice(&(total as u16).to_be_bytes());
        h[field::HOST..field::HOST + 4].copy_from_slice(&self.host.to_be_bytes());
        h[field::BOOT..field::BOOT + 4].copy_from_slice(&self.boot.to_be_bytes());
        h[field::TIMESTAMP..field::TIMESTAMP + 4].copy_from_slice(&(now_ms as u32).to_be_bytes());
        h[field::SEQ..field::SEQ + 8].copy_from_slice(&seq.to_be_bytes());
        self.buf[..HEADER_LEN].copy_from_slice(&h);
        let tag = self.key.tag(&self.buf);
        self.buf.extend_from_slice(&tag);
        self.sealed = true;
        &self.buf
    }
}

// ---- parser --------------------------------------------------------------------------------

/// A checked, authenticated datagram.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    /// The header.
    pub header: Header,
    body: &'a [u8],
    unknown: u32,
}

impl<'a> Frame<'a> {
    /// Subheaders of unknown actions skipped (add to the `unknown_action` counter).
    pub fn unknown_actions(&self) -> u32 {
        self.unknown
    }

    /// The records, in order.
    pub fn records(&self) -> Records<'a> {
        Records {
            body: self.body,
            act: 0,
            rec_len: 0,
            left: 0,
        }
    }
}

/// The records of a [`Frame`] (the frame was walked once in [`parse`]: this cannot fail).
#[derive(Debug, Clone)]
pub struct Records<'a> {
    body: &'a [u8],
    act: u8,
    rec_len: usize,
    left: u16,
}

impl Iterator for Records<'_> {
    type Item = Record;

    fn next(&mut self) -> Option<Record> {
        loop {
            if self.left > 0 {
                self.left -= 1;
                let (rec, rest) = self.body.split_at_checked(self.rec_len)?;
                self.body = rest;
                if let Some(r) = decode(self.act, rec) {
                    return Some(r);
                }
                continue; // unknown action: skipped by length
            }
            let (sub, rest) = self.body.split_at_checked(SUBHEADER_LEN)?;
            self.act = sub[0];
            self.rec_len = usize::from(sub[1]) * 4;
            self.left = u16::from_be_bytes([sub[2], sub[3]]);
            self.body = rest;
        }
    }
}

/// Check and authenticate a datagram (the IP payload), cheapest check first: length, version,
/// declared length, MAC (constant time), then the subheaders and records. The replay check is
/// the caller's ([`crate::replay::ReplayWindow`]), once it knows the sender.
pub fn parse<'a>(datagram: &'a [u8], key: &SyncKey) -> Result<Frame<'a>, Reject> {
    if datagram.len() < MIN_LEN {
        return Err(Reject::Short);
    }
    if datagram[field::VERSION] != VERSION {
        return Err(Reject::BadVersion);
    }
    let be32 = |at: usize| {
        u32::from_be_bytes([
            datagram[at],
            datagram[at + 1],
            datagram[at + 2],
            datagram[at + 3],
        ])
    };
    let length = u16::from_be_bytes([datagram[field::LENGTH], datagram[field::LENGTH + 1]]);
    if usize::from(length) != datagram.len() || !datagram.len().is_multiple_of(4) {
        return Err(Reject::BadLength);
    }
    let (signed, tag) = datagram.split_at(datagram.len() - MAC_LEN);
    if !key.verify(signed, tag) {
        return Err(Reject::BadMac);
    }
    let header = Header {
        flags: datagram[field::FLAGS],
        length,
        host: be32(field::HOST),
        boot: be32(field::BOOT),
        timestamp: be32(field::TIMESTAMP),
        seq: (u64::from(be32(field::SEQ)) << 32) | u64::from(be32(field::SEQ + 4)),
    };
    let body = &signed[HEADER_LEN..];

    // Walk once: every subheader fits, every record of a known action is at least as long as
    // ours and decodes; unknown actions are counted and skipped by length.
    let mut unknown = 0;
    let mut rest = body;
    while !rest.is_empty() {
        let (sub, r) = rest
            .split_at_checked(SUBHEADER_LEN)
            .ok_or(Reject::Malformed)?;
        let act = sub[0];
        let rec_len = usize::from(sub[1]) * 4;
        let count = usize::from(u16::from_be_bytes([sub[2], sub[3]]));
        let (records, r) = r
            .split_at_checked(rec_len * count)
            .ok_or(Reject::Malformed)?;
        rest = r;
        if rec_len == 0 && count > 0 {
            // Zero-length records carry nothing and would let a 1480-byte datagram stand for
            // millions of records.
            return Err(Reject::Malformed);
        }
        match record_len(act) {
            None => unknown += 1,
            Some(known) if rec_len < known => return Err(Reject::Malformed),
            Some(_) => {
                for rec in records.chunks_exact(rec_len) {
                    decode(act, rec).ok_or(Reject::Malformed)?;
                }
            }
        }
    }
    Ok(Frame {
        header,
        body,
        unknown,
    })
}

#[cfg(test)]
mod tests;
