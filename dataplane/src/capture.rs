//! Packet capture from inside the dataplane: `tandemctl capture`.
//!
//! tcpdump on the host cannot see the frames XDP takes, so the pipeline offers every frame it
//! receives or sends to one [`CaptureTap`], shared by all workers behind an `Arc`. While no
//! capture runs, [`CaptureTap::offer`] is one relaxed atomic load and a branch: no copy, no
//! allocation, no shared cache line written. While one runs, a frame that matches the filter is
//! copied (up to the snaplen) into a bounded channel the control thread drains; a full channel
//! drops the copy and counts it in [`CaptureTap::dropped`], it never makes a worker wait.
//!
//! One capture at a time: [`CaptureTap::start`] refuses with [`Busy`] while another runs, unless
//! that one has not been drained for [`STALE_AFTER`] (its client went away without stopping it).
//! A capture stops by itself after `max_frames` matching frames.
//!
//! The pipeline's side, once per frame: `tap.offer(if_index, Direction::Rx, frame)`.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::wire;
use crate::wire::arp::ArpPacket;
use crate::wire::ethernet::{EtherType, EthernetFrame};
use crate::wire::ipv4::{proto, Ipv4Packet};
use crate::IfIndex;

/// Bytes kept of each frame unless told otherwise.
pub const DEFAULT_SNAPLEN: usize = 2048;

/// Frames the channel holds between two drains unless told otherwise.
pub const DEFAULT_CAPACITY: usize = 4096;

/// A running capture nobody drained for this long may be taken over by a new one.
pub const STALE_AFTER: Duration = Duration::from_secs(10);

/// Whether the frame was received or sent by the dataplane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Rx,
    Tx,
}

/// What to capture; `None` matches anything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureFilter {
    /// Only frames of this interface.
    pub if_index: Option<IfIndex>,
    /// Only IPv4 packets from or to this address, or ARP frames whose sender or target it is.
    pub host: Option<Ipv4Addr>,
    /// Only TCP or UDP segments from or to this port (first fragments only).
    pub port: Option<u16>,
}

// The filter is packed into one u64 so that workers read it in one atomic load, never half of an
// old filter and half of a new one: bits 0..8 if_index, 8 its presence; 9..41 host, 41 its
// presence; 42..58 port, 58 its presence.
const IF_SET: u64 = 1 << 8;
const HOST_SHIFT: u32 = 9;
const HOST_SET: u64 = 1 << 41;
const PORT_SHIFT: u32 = 42;
const PORT_SET: u64 = 1 << 58;

impl CaptureFilter {
    fn pack(&self) -> u64 {
        let mut v = 0;
        if let Some(i) = self.if_index {
            v |= u64::from(i) | IF_SET;
        }
        if let Some(h) = self.host {
            v |= (u64::from(u32::from(h)) << HOST_SHIFT) | HOST_SET;
        }
        if let Some(p) = self.port {
            v |= (u64::from(p) << PORT_SHIFT) | PORT_SET;
        }
        v
    }

    #[allow(clippy::cast_possible_truncation)] // each field is masked to its width first
    fn unpack(v: u64) -> CaptureFilter {
        CaptureFilter {
            if_index: (v & IF_SET != 0).then_some((v & 0xff) as u8),
            host: (v & HOST_SET != 0)
                .then(|| Ipv4Addr::from(((v >> HOST_SHIFT) & 0xffff_ffff) as u32)),
            port: (v & PORT_SET != 0).then_some(((v >> PORT_SHIFT) & 0xffff) as u16),
        }
    }

    /// Whether the frame `bytes`, seen on `if_index`, passes the filter. Reads only what is
    /// there: a short or malformed frame matches only a filter that does not look inside it.
    pub fn matches(&self, if_index: IfIndex, bytes: &[u8]) -> bool {
        if self.if_index.is_some_and(|i| i != if_index) {
            return false;
        }
        if self.host.is_none() && self.port.is_none() {
            return true;
        }
        let Ok(eth) = EthernetFrame::new_checked(bytes) else {
            return false;
        };
        let Some((ethertype, l3)) = eth.untagged() else {
            return false;
        };
        match ethertype {
            EtherType::Ipv4 => self.matches_ipv4(l3),
            EtherType::Arp => self.port.is_none() && self.host.is_some_and(|h| arp_names(l3, h)),
            _ => false,
        }
    }

    fn matches_ipv4(&self, l3: &[u8]) -> bool {
        let Ok(ip) = Ipv4Packet::new_checked(l3) else {
            return false;
        };
        if let Some(h) = self.host {
            if ip.src_addr() != h && ip.dst_addr() != h {
                return false;
            }
        }
        let Some(p) = self.port else {
            return true;
        };
        // Ports are in first fragments only; TCP and UDP both start with them.
        let proto = u8::from(ip.next_header());
        if !(proto == proto::TCP || proto == proto::UDP) || ip.frag_offset() != 0 {
            return false;
        }
        wire::l4_ports(ip.payload()).is_some_and(|(src, dst)| src == p || dst == p)
    }
}

/// Whether an Ethernet/IPv4 ARP packet names `host` as sender or target.
fn arp_names(arp: &[u8], host: Ipv4Addr) -> bool {
    ArpPacket::new_checked(arp)
        .is_ok_and(|a| a.source_protocol_addr() == host || a.target_protocol_addr() == host)
}

/// One captured frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedFrame {
    pub if_index: IfIndex,
    pub direction: Direction,
    /// Wall-clock time of the capture (CLOCK_REALTIME), in nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// The frame's length on the wire.
    pub orig_len: u32,
    /// The frame's first bytes, at most the tap's snaplen.
    pub bytes: Vec<u8>,
}

/// Another capture is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

impl std::fmt::Display for Busy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("another capture is running")
    }
}

impl std::error::Error for Busy {}

/// The capture point shared by all workers (see the module doc).
#[derive(Debug)]
pub struct CaptureTap {
    /// Checked once per frame by the pipeline.
    active: AtomicBool,
    filter: AtomicU64,
    /// Matching frames still to take before the capture stops by itself.
    remaining: AtomicU64,
    captured: AtomicU64,
    dropped: AtomicU64,
    snaplen: usize,
    tx: Sender<CapturedFrame>,
    rx: Receiver<CapturedFrame>,
    /// When the control thread last started or drained a capture (staleness, see STALE_AFTER).
    last_touch: std::sync::Mutex<Instant>,
}

impl Default for CaptureTap {
    fn default() -> Self {
        CaptureTap::new(DEFAULT_CAPACITY, DEFAULT_SNAPLEN)
    }
}

impl CaptureTap {
    /// A tap holding up to `capacity` frames between drains, keeping `snaplen` bytes of each.
    pub fn new(capacity: usize, snaplen: usize) -> CaptureTap {
        let (tx, rx) = crossbeam_channel::bounded(capacity.max(1));
        CaptureTap {
            active: AtomicBool::new(false),
            filter: AtomicU64::new(0),
            remaining: AtomicU64::new(0),
            captured: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            snaplen: snaplen.max(1),
            tx,
            rx,
            last_touch: std::sync::Mutex::new(Instant::now()),
        }
    }

    /// Starts capturing frames that match `filter`, up to `max_frames` of them. Frames and
    /// counts of a previous capture are discarded.
    pub fn start(&self, filter: CaptureFilter, max_frames: u64) -> Result<(), Busy> {
        let mut touch = self.touch();
        if self.active.load(Ordering::Acquire) && touch.elapsed() < STALE_AFTER {
            return Err(Busy);
        }
        self.active.store(false, Ordering::Release);
        while self.rx.try_recv().is_ok() {}
        self.captured.store(0, Ordering::Relaxed);
        self.dropped.store(0, Ordering::Relaxed);
        self.filter.store(filter.pack(), Ordering::Relaxed);
        self.remaining.store(max_frames, Ordering::Relaxed);
        *touch = Instant::now();
        // Release: a worker that sees `active` (Acquire) sees the filter and budget above.
        self.active.store(max_frames > 0, Ordering::Release);
        Ok(())
    }

    /// Stops the capture; frames already captured stay until drained or the next start.
    pub fn stop(&self) {
        self.active.store(false, Ordering::Release);
    }

    /// Whether a capture is taking frames.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// The filter of the current (or last) capture.
    pub fn filter(&self) -> CaptureFilter {
        CaptureFilter::unpack(self.filter.load(Ordering::Relaxed))
    }

    /// Offers a frame the pipeline received (`Rx`) or is sending (`Tx`) on `if_index`. Costs one
    /// relaxed load when no capture runs.
    #[inline]
    pub fn offer(&self, if_index: IfIndex, direction: Direction, frame: &[u8]) {
        if self.active.load(Ordering::Relaxed) {
            self.offer_slow(if_index, direction, frame);
        }
    }

    #[cold]
    #[inline(never)]
    fn offer_slow(&self, if_index: IfIndex, direction: Direction, frame: &[u8]) {
        if !self.active.load(Ordering::Acquire) {
            return;
        }
        let filter = CaptureFilter::unpack(self.filter.load(Ordering::Relaxed));
        if !filter.matches(if_index, frame) {
            return;
        }
        // Take one frame of the budget; the worker taking the last one stops the capture.
        let taken = self
            .remaining
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |r| r.checked_sub(1));
        match taken {
            Err(_) => return,
            Ok(1) => self.active.store(false, Ordering::Release),
            Ok(_) => {}
        }
        let captured = CapturedFrame {
            if_index,
            direction,
            ts_ns: realtime_ns(),
            orig_len: u32::try_from(frame.len()).unwrap_or(u32::MAX),
            bytes: frame[..frame.len().min(self.snaplen)].to_vec(),
        };
        match self.tx.try_send(captured) {
            Ok(()) => {
                self.captured.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Takes up to `max` captured frames, oldest first.
    pub fn drain(&self, max: usize) -> Vec<CapturedFrame> {
        *self.touch() = Instant::now();
        self.rx.try_iter().take(max).collect()
    }

    /// Whether the capture is over (stopped, or its budget spent) and every frame drained.
    pub fn is_done(&self) -> bool {
        !self.is_active() && self.rx.is_empty()
    }

    /// Frames taken into the channel by the current (or last) capture.
    pub fn captured(&self) -> u64 {
        self.captured.load(Ordering::Relaxed)
    }

    /// Matching frames lost because the channel was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn touch(&self) -> std::sync::MutexGuard<'_, Instant> {
        // A poisoned lock only means a panic elsewhere while holding an Instant: still valid.
        self.last_touch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn realtime_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Ethernet + IPv4 + UDP or TCP header (no payload), checksums left zero: the tap does not
    /// look at them.
    fn ip_frame(proto: u8, src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12..14].copy_from_slice(&u16::from(EtherType::Ipv4).to_be_bytes());
        let ip = &mut f[14..];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&40u16.to_be_bytes());
        ip[8] = 64;
        ip[9] = proto;
        ip[12..16].copy_from_slice(&src);
        ip[16..20].copy_from_slice(&dst);
        ip[20..22].copy_from_slice(&sport.to_be_bytes());
        ip[22..24].copy_from_slice(&dport.to_be_bytes());
        f
    }

    fn arp_frame(sender: [u8; 4], target: [u8; 4]) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 28];
        f[12..14].copy_from_slice(&u16::from(EtherType::Arp).to_be_bytes());
        let a = &mut f[14..];
        a[0..6].copy_from_slice(&[0, 1, 8, 0, 6, 4]);
        a[7] = 1;
        a[14..18].copy_from_slice(&sender);
        a[24..28].copy_from_slice(&target);
        f
    }

    const CLIENT: [u8; 4] = [192, 168, 0, 100];
    const SERVER: [u8; 4] = [172, 25, 46, 1];

    #[test]
    fn the_filter_packs_into_one_word_and_back() {
        for f in [
            CaptureFilter::default(),
            CaptureFilter {
                if_index: Some(255),
                host: Some(Ipv4Addr::new(255, 255, 255, 255)),
                port: Some(65535),
            },
            CaptureFilter {
                if_index: Some(0),
                host: Some(Ipv4Addr::new(0, 0, 0, 0)),
                port: Some(0),
            },
            CaptureFilter {
                if_index: None,
                host: Some(Ipv4Addr::new(172, 25, 46, 100)),
                port: None,
            },
        ] {
            assert_eq!(CaptureFilter::unpack(f.pack()), f);
        }
    }

    #[test]
    fn host_and_port_match_either_side() {
        let f = CaptureFilter {
            if_index: Some(1),
            host: Some(Ipv4Addr::from(SERVER)),
            port: Some(80),
        };
        let out = ip_frame(proto::TCP, CLIENT, SERVER, 40000, 80);
        let back = ip_frame(proto::TCP, SERVER, CLIENT, 80, 40000);
        assert!(f.matches(1, &out));
        assert!(f.matches(1, &back));
        assert!(!f.matches(0, &out), "other interface");
        assert!(!f.matches(1, &ip_frame(proto::TCP, CLIENT, SERVER, 40000, 443)));
        assert!(!f.matches(1, &ip_frame(proto::TCP, CLIENT, CLIENT, 40000, 80)));
        assert!(f.matches(1, &ip_frame(proto::UDP, CLIENT, SERVER, 53, 80)));
        // ICMP has no ports: a port filter does not take it.
        assert!(!f.matches(1, &ip_frame(1, CLIENT, SERVER, 80, 80)));
        // A later fragment carries no port either.
        let mut frag = out.clone();
        frag[14 + 7] = 10;
        assert!(!f.matches(1, &frag));
    }

    #[test]
    fn arp_matches_a_host_filter_by_sender_or_target_but_never_a_port_filter() {
        let host = CaptureFilter {
            host: Some(Ipv4Addr::from(SERVER)),
            ..CaptureFilter::default()
        };
        assert!(host.matches(0, &arp_frame(CLIENT, SERVER)));
        assert!(host.matches(0, &arp_frame(SERVER, CLIENT)));
        assert!(!host.matches(0, &arp_frame(CLIENT, CLIENT)));
        let port = CaptureFilter {
            port: Some(80),
            ..CaptureFilter::default()
        };
        assert!(!port.matches(0, &arp_frame(CLIENT, SERVER)));
    }

    #[test]
    fn short_or_odd_frames_never_panic_and_match_only_an_open_filter() {
        let f = CaptureFilter {
            host: Some(Ipv4Addr::from(SERVER)),
            port: Some(80),
            ..CaptureFilter::default()
        };
        let full = ip_frame(proto::TCP, CLIENT, SERVER, 40000, 80);
        for n in 0..full.len() {
            // Truncated before the ports: no match, no panic.
            let m = f.matches(0, &full[..n]);
            assert!(!m || n >= 14 + 24, "matched at {n} bytes");
        }
        let mut bad_ihl = full.clone();
        bad_ihl[14] = 0x4f; // 60-byte header in a 40-byte packet
        assert!(!f.matches(0, &bad_ihl));
        assert!(CaptureFilter::default().matches(3, &[]));
        let mut vlan = vec![0u8; 4];
        vlan[..].copy_from_slice(&[0x81, 0, 0, 5]);
        let mut tagged = full[..12].to_vec();
        tagged.extend_from_slice(&vlan);
        tagged.extend_from_slice(&full[12..]);
        assert!(f.matches(0, &tagged));
    }

    #[test]
    fn nothing_is_captured_while_off_and_a_capture_stops_after_its_count() {
        let tap = CaptureTap::new(16, DEFAULT_SNAPLEN);
        let frame = ip_frame(proto::UDP, CLIENT, SERVER, 1000, 53);
        tap.offer(0, Direction::Rx, &frame);
        assert!(tap.drain(10).is_empty());
        tap.start(CaptureFilter::default(), 2).unwrap();
        assert!(tap.is_active());
        for _ in 0..5 {
            tap.offer(2, Direction::Tx, &frame);
        }
        assert!(!tap.is_active(), "stopped after 2 frames");
        assert_eq!(tap.captured(), 2);
        assert!(!tap.is_done(), "frames still to drain");
        let got = tap.drain(10);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].if_index, 2);
        assert_eq!(got[0].direction, Direction::Tx);
        assert_eq!(got[0].bytes, frame);
        assert!(
            got[0].ts_ns > 1_600_000_000_000_000_000,
            "wall clock, in ns"
        );
        assert!(tap.is_done());
    }

    #[test]
    fn frames_are_cut_at_the_snaplen_and_keep_their_length() {
        let tap = CaptureTap::new(4, 20);
        tap.start(CaptureFilter::default(), 10).unwrap();
        tap.offer(0, Direction::Rx, &[7u8; 100]);
        let got = tap.drain(10);
        assert_eq!(got[0].bytes, vec![7u8; 20]);
        assert_eq!(got[0].orig_len, 100);
    }

    #[test]
    fn a_full_channel_counts_drops_and_never_blocks() {
        let tap = CaptureTap::new(3, DEFAULT_SNAPLEN);
        tap.start(CaptureFilter::default(), 100).unwrap();
        for _ in 0..10 {
            tap.offer(0, Direction::Rx, &[1, 2, 3]);
        }
        assert_eq!(tap.captured(), 3);
        assert_eq!(tap.dropped(), 7);
        assert_eq!(tap.drain(100).len(), 3);
    }

    #[test]
    fn one_capture_at_a_time_and_a_restart_forgets_the_last_one() {
        let tap = CaptureTap::new(8, DEFAULT_SNAPLEN);
        tap.start(CaptureFilter::default(), 10).unwrap();
        assert_eq!(tap.start(CaptureFilter::default(), 10), Err(Busy));
        tap.offer(0, Direction::Rx, &[1]);
        tap.stop();
        tap.offer(0, Direction::Rx, &[2]);
        assert_eq!(tap.captured(), 1);
        let f = CaptureFilter {
            if_index: Some(1),
            ..CaptureFilter::default()
        };
        tap.start(f, 10).unwrap();
        assert_eq!(tap.filter(), f);
        assert_eq!(tap.captured(), 0);
        assert!(tap.drain(10).is_empty(), "old frames discarded");
        tap.offer(0, Direction::Rx, &[3]);
        tap.offer(1, Direction::Rx, &[4]);
        let got = tap.drain(10);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].bytes, vec![4]);
    }

    #[test]
    fn workers_racing_for_the_last_frames_take_exactly_the_count() {
        let tap = Arc::new(CaptureTap::new(10_000, DEFAULT_SNAPLEN));
        tap.start(CaptureFilter::default(), 1000).unwrap();
        let handles: Vec<_> = (0..4u8)
            .map(|w| {
                let tap = tap.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        tap.offer(w, Direction::Rx, &[w]);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(tap.captured(), 1000);
        assert_eq!(tap.drain(usize::MAX).len(), 1000);
        assert!(tap.is_done());
    }
}
