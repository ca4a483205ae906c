//! Two boxes over the in-memory link: tables with their journals, replicators, driven time.
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::sync::Arc;

// Re-exported for the tests that remove states; not every test binary does.
#[allow(unused_imports)]
pub use tandem_dataplane::journal::{Origin, Producer};
use tandem_dataplane::state::tcp::flags::{ACK, PSH, SYN};
use tandem_dataplane::state::{
    Direction, FlowKey, Millis, NewState, State, StateTable, TableConfig, TcpSegment,
};
use tandem_sync::journal::{JournalConfig, SyncJournal};
use tandem_sync::replicate::{Event, Replicator, SyncConfig};
use tandem_sync::transport::{mem_pair, MemTransport};
use tandem_sync::wire::SyncKey;

pub const A_ADDR: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
pub const B_ADDR: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
pub const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";

pub struct Node {
    pub table: Arc<StateTable>,
    /// The box's worker: the local changes a test makes go through it.
    pub worker: Producer,
    pub journal: Arc<SyncJournal>,
    pub rep: Replicator,
    pub t: MemTransport,
    pub events: Vec<Event>,
}

pub fn key() -> SyncKey {
    SyncKey::new(KEY).unwrap()
}

pub fn config(host: u32, boot: u32, peer: Ipv4Addr) -> SyncConfig {
    let mut c = SyncConfig::new(host, key(), Some(peer));
    c.boot_id = boot;
    c
}

pub fn node_with(cfg: SyncConfig, jcfg: JournalConfig, t: MemTransport) -> Node {
    let journal = Arc::new(SyncJournal::new(jcfg));
    let table = Arc::new(StateTable::with_journal(
        TableConfig {
            creator: cfg.host_id,
            ..TableConfig::default()
        },
        journal.clone(),
    ));
    let rep = Replicator::new(cfg, table.clone(), journal.clone());
    Node {
        worker: table.producer(),
        table,
        journal,
        rep,
        t,
        events: Vec::new(),
    }
}

pub fn pair() -> (Node, Node) {
    let (ta, tb) = mem_pair(A_ADDR, B_ADDR);
    (
        node_with(config(1, 0xa001, B_ADDR), JournalConfig::default(), ta),
        node_with(config(2, 0xb001, A_ADDR), JournalConfig::default(), tb),
    )
}

impl Node {
    pub fn poll(&mut self, now: Millis) {
        let r = self.rep.poll(&mut self.t, now);
        assert!(r.next_wakeup_ms >= now);
        self.events.extend(r.events);
    }
    pub fn counter(&self, name: &str) -> u64 {
        self.rep
            .counters()
            .snapshot()
            .into_iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("no counter {name}"))
            .1
    }
}

/// Poll both every millisecond over `[from, to)`.
pub fn run(a: &mut Node, b: &mut Node, from: Millis, to: Millis) {
    for now in from..to {
        a.poll(now);
        b.poll(now);
    }
}

pub fn tcp_key(i: u32) -> FlowKey {
    FlowKey::new(
        6,
        Ipv4Addr::from(0x0a00_0000 + i),
        10_000 + (i % 50_000) as u16,
        Ipv4Addr::new(172, 16, 0, 1),
        80,
    )
}

/// A TCP state opened by a SYN, its source NATed to 198.51.100.1 when `nat`.
pub fn insert_tcp(table: &StateTable, by: &Producer, i: u32, nat: bool, now: Millis) -> Arc<State> {
    let stack = tcp_key(i);
    let syn = TcpSegment {
        flags: SYN,
        seq: 1000 + i,
        win: 65_535,
        ..TcpSegment::default()
    };
    let mut new = NewState::first_packet(stack, 7, Some(&syn), 60);
    if nat {
        new.wire = FlowKey::new(
            6,
            Ipv4Addr::new(198, 51, 100, 1),
            20_000 + (i % 40_000) as u16,
            stack.dst,
            stack.dport,
        );
    }
    table.insert(new, now, by).unwrap()
}

pub fn insert_udp(table: &StateTable, by: &Producer, i: u32, now: Millis) -> Arc<State> {
    let stack = FlowKey::new(
        17,
        Ipv4Addr::from(0x0b00_0000 + i),
        5000,
        Ipv4Addr::new(8, 8, 8, 8),
        53,
    );
    table
        .insert(NewState::first_packet(stack, 3, None, 80), now, by)
        .unwrap()
}

/// SYN|ACK then ACK: established (the state was opened by `insert_tcp(i)`).
pub fn establish(table: &StateTable, by: &Producer, s: &Arc<State>, now: Millis) {
    let c = s.tracking().src.seqlo; // client's next seq
    let synack = TcpSegment {
        flags: SYN | ACK,
        seq: 90_000,
        ack: c,
        win: 65_535,
        ..TcpSegment::default()
    };
    s.track_tcp(Direction::Reply, &synack, 60, now).unwrap();
    let ack = TcpSegment {
        flags: ACK,
        seq: c,
        ack: 90_001,
        win: 65_535,
        ..TcpSegment::default()
    };
    s.track_tcp(Direction::Original, &ack, 52, now).unwrap();
    table.updated(s, by);
}

/// The client sends `len` bytes (the state is established).
pub fn client_data(table: &StateTable, by: &Producer, s: &Arc<State>, len: u16, now: Millis) {
    let t = s.tracking();
    let seg = TcpSegment {
        flags: ACK | PSH,
        seq: t.src.seqlo,
        ack: t.dst.seqlo,
        win: 65_535,
        payload_len: len,
        ..TcpSegment::default()
    };
    s.track_tcp(Direction::Original, &seg, u32::from(len) + 52, now)
        .unwrap();
    table.updated(s, by);
}

/// Every state of `from` is on `to` with the same keys, peers and timeout class, and `to` has
/// no state of `from`'s creator that `from` lacks.
pub fn assert_same(from: &StateTable, to: &StateTable) {
    let mut n = 0;
    from.for_each(|s| {
        n += 1;
        let o = to
            .get_by_id(&s.id)
            .unwrap_or_else(|| panic!("state {:?} missing on the peer", { s.id.id }));
        assert_eq!(o.stack, s.stack);
        assert_eq!(o.wire(), s.wire());
        assert_eq!(o.rule, s.rule);
        let (a, b) = (s.tracking(), o.tracking());
        assert_eq!(
            (a.src, a.dst, a.timeout),
            (b.src, b.dst, b.timeout),
            "tracking of {:?}",
            { s.id.id }
        );
        // Found by its keys, both ways.
        assert!(to.lookup(&s.stack).is_some());
        assert!(to.lookup(&s.wire().reversed()).is_some());
    });
    let creator = from.creator();
    let mut extra = 0;
    to.for_each(|s| {
        if { s.id.creator } == creator && from.get_by_id(&s.id).is_none() {
            extra += 1;
        }
    });
    assert_eq!(extra, 0, "states of {creator} on the peer that are gone");
    let _ = n;
}
