//! The records' byte layouts (the table in the parent's doc): each [`Record`] written into a
//! datagram and read back out of one, by its action's known prefix.

use super::*;

// ---- encoding ------------------------------------------------------------------------------

// Writes into a buffer whose room the caller has checked: never grows it past its capacity.
struct Put<'a>(&'a mut Vec<u8>);

impl Put<'_> {
    fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
    fn id(&mut self, id: SyncId) -> &mut Self {
        self.u64(id.id).u32(id.creator)
    }
    fn peer(&mut self, p: &TcpPeer) -> &mut Self {
        self.u32(p.seqlo)
            .u32(p.seqhi)
            .u16(p.max_win)
            .u8(p.wscale)
            .u8(p.state.0)
    }
    fn key(&mut self, k: &FlowKey) -> &mut Self {
        self.u32(k.src.into())
            .u32(k.dst.into())
            .u16(k.sport)
            .u16(k.dport)
    }
}

pub(super) fn encode(rec: &Record, out: &mut Vec<u8>) {
    let mut p = Put(out);
    match rec {
        Record::Clr { creator } => {
            p.u32(*creator);
        }
        Record::Ins(r) => {
            p.id(r.id)
                .u8(r.stack.proto)
                .u8(r.timeout as u8)
                .u16(0)
                .key(&r.stack)
                .key(&r.wire)
                .peer(&r.src)
                .peer(&r.dst)
                .u32(r.last_age_ms)
                .u32(r.created_age_s)
                .u32(r.rule)
                .u64(r.packets[0])
                .u64(r.packets[1])
                .u64(r.bytes[0])
                .u64(r.bytes[1]);
        }
        Record::UpdC(r) => {
            p.id(r.id)
                .peer(&r.src)
                .peer(&r.dst)
                .u32(r.last_age_ms)
                .u8(r.timeout as u8)
                .u8(0)
                .u16(0);
        }
        Record::DelC(id) | Record::UpdReq(id) | Record::InsAck(id) => {
            p.id(*id);
        }
        Record::Bus(b) => {
            p.u32(b.creator)
                .u32(b.endtime_ms)
                .u8(b.status.to_wire())
                .u8(0)
                .u16(0);
        }
        Record::Ack { seq } => {
            p.u64(*seq);
        }
        Record::Nack { from, to } => {
            p.u64(*from).u64(*to);
        }
        Record::Lease(l) => {
            p.bytes(&l.mac)
                .u16(0)
                .u32(l.ip.into())
                .u64(l.expires)
                .u64(l.updated_ms)
                .u8(l.state)
                .u8(l.hostname_len.min(LEASE_HOSTNAME as u8))
                .u16(0)
                .bytes(&l.hostname);
        }
    }
}

// ---- decoding ------------------------------------------------------------------------------

// Reads a record whose length the walk has checked against the action's known length: every
// read is in bounds; `get` keeps it panic-free even if that promise were broken.
struct Get<'a> {
    b: &'a [u8],
    at: usize,
}

impl Get<'_> {
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut a = [0; N];
        if let Some(s) = self.b.get(self.at..self.at + N) {
            a.copy_from_slice(s);
        }
        self.at += N;
        a
    }
    fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_be_bytes(self.take())
    }
    fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.take())
    }
    fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.take())
    }
    fn id(&mut self) -> SyncId {
        let id = self.u64();
        let creator = self.u32();
        SyncId { creator, id }
    }
    fn peer(&mut self) -> TcpPeer {
        TcpPeer {
            seqlo: self.u32(),
            seqhi: self.u32(),
            max_win: self.u16(),
            wscale: self.u8(),
            state: PeerState(self.u8()),
        }
    }
    fn key(&mut self, proto: u8) -> FlowKey {
        let src = Ipv4Addr::from(self.u32());
        let dst = Ipv4Addr::from(self.u32());
        let sport = self.u16();
        let dport = self.u16();
        FlowKey::new(proto, src, sport, dst, dport)
    }
}

/// Decode one record of a known action from at least its known length. `None`: a field value
/// this version cannot represent (unknown timeout class or bus status).
pub(super) fn decode(act: u8, b: &[u8]) -> Option<Record> {
    let mut g = Get { b, at: 0 };
    Some(match act {
        action::CLR => Record::Clr { creator: g.u32() },
        action::INS => {
            let id = g.id();
            let proto = g.u8();
            let timeout = TimeoutClass::from_number(g.u8())?;
            g.u16();
            let stack = g.key(proto);
            let wire = g.key(proto);
            Record::Ins(InsRecord {
                id,
                stack,
                wire,
                src: g.peer(),
                dst: g.peer(),
                timeout,
                last_age_ms: g.u32(),
                created_age_s: g.u32(),
                rule: g.u32(),
                packets: [g.u64(), g.u64()],
                bytes: [g.u64(), g.u64()],
            })
        }
        action::UPD_C => {
            let id = g.id();
            let src = g.peer();
            let dst = g.peer();
            let last_age_ms = g.u32();
            let timeout = TimeoutClass::from_number(g.u8())?;
            Record::UpdC(UpdCRecord {
                id,
                src,
                dst,
                timeout,
                last_age_ms,
            })
        }
        action::DEL_C => Record::DelC(g.id()),
        action::UPD_REQ => Record::UpdReq(g.id()),
        action::INS_ACK => Record::InsAck(g.id()),
        action::BUS => {
            let creator = g.u32();
            let endtime_ms = g.u32();
            let status = BusStatus::from_wire(g.u8())?;
            Record::Bus(BusRecord {
                creator,
                endtime_ms,
                status,
            })
        }
        action::ACK => Record::Ack { seq: g.u64() },
        action::NACK => Record::Nack {
            from: g.u64(),
            to: g.u64(),
        },
        action::LEASE => {
            let mac = g.take::<6>();
            g.u16();
            let ip = Ipv4Addr::from(g.u32());
            let expires = g.u64();
            let updated_ms = g.u64();
            let state = g.u8();
            let hostname_len = g.u8();
            g.u16();
            let hostname = g.take::<LEASE_HOSTNAME>();
            if usize::from(hostname_len) > LEASE_HOSTNAME {
                return None;
            }
            Record::Lease(LeaseRecord {
                mac,
                ip,
                expires,
                updated_ms,
                state,
                hostname,
                hostname_len,
            })
        }
        _ => return None,
    })
}
