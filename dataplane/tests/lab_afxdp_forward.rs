//! AF_XDP worker ports on real veth pairs.
//!
//! Root only (skipped, with a message, otherwise). Tests bind sockets: run them one at a time,
//! `cargo test -p tandem-dataplane --test lab_afxdp_forward -- --test-threads=1`.
//!
//! Network safety: each test creates its own namespace `tdxdp-<pid>-<n>` (`ip netns add`) and
//! its veth pairs inside it (`ip -n NS link add ...`); nothing is added to the root namespace.
//! Code that must run inside (AF_XDP sockets, packet sockets, netlink queries) runs on threads the
//! test spawns ([`NetNs::spawn`]), each of which enters the namespace with setns(2) before
//! anything else; the harness's own thread never changes namespace. [`NetNs`]'s drop deletes the
//! namespace, on panic too, which also destroys its veth pairs and their XDP programs.
#![cfg(feature = "afxdp")]

use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tandem_dataplane::io::afxdp::{
    attached_xdp, BindMode, OpenError, PortSpec, Queues, WorkerConfig, WorkerPorts,
};
use tandem_dataplane::io::{Ports, Verdict, FRAME_SIZE};

/// Local experimental ethertype: nothing in the kernel answers it.
const ETHERTYPE: u16 = 0x88b5;
const MAGIC: &[u8; 8] = b"tandemXD";
const FRAME_LEN: usize = 60;

/// A network namespace of this test, deleted on drop.
struct NetNs {
    name: String,
}

impl NetNs {
    fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "tdxdp-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        run("ip", &["netns", "add", &name]);
        let ns = Self { name };
        // Quiet links: no IPv6 router solicitations or DAD from the namespace's own stack.
        // /proc/sys/net answers for the namespace of the thread that opens it.
        ns.run(|| {
            for conf in ["all", "default"] {
                let path = format!("/proc/sys/net/ipv6/conf/{conf}/disable_ipv6");
                let _ = std::fs::write(path, "1"); // absent when IPv6 is off altogether
            }
        });
        ns
    }

    /// A veth pair `a`<->`b` in the namespace, two queues each, both up.
    fn veth(&self, a: &str, b: &str) {
        let cmd = format!(
            "link add {a} numtxqueues 2 numrxqueues 2 type veth peer name {b} numtxqueues 2 \
             numrxqueues 2"
        );
        self.ip(&cmd);
        self.ip(&format!("link set {a} up"));
        self.ip(&format!("link set {b} up"));
    }

    fn ip(&self, args: &str) {
        let mut all = vec!["-n", &self.name];
        all.extend(args.split_whitespace());
        run("ip", &all);
    }

    /// Runs `f` on a new thread that first enters this namespace.
    fn spawn<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
        let name = self.name.clone();
        thread::spawn(move || {
            enter_ns(&name);
            f()
        })
    }

    /// Runs `f` in this namespace and returns its result; a panic in `f` panics here.
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        join(self.spawn(f))
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn join<T>(h: JoinHandle<T>) -> T {
    h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().expect("run command");
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Moves the calling thread into namespace `name` (setns(2) on /var/run/netns/NAME).
fn enter_ns(name: &str) {
    let f = std::fs::File::open(format!("/var/run/netns/{name}")).expect("open netns");
    // SAFETY: a valid namespace fd; CLONE_NEWNET moves only this thread's network namespace.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {name}: {}", std::io::Error::last_os_error());
}

fn config(ports: &[(u8, &str)]) -> WorkerConfig {
    WorkerConfig {
        ports: ports
            .iter()
            .map(|&(if_index, name)| PortSpec {
                if_index,
                name: name.to_string(),
                queues: Queues::All,
            })
            .collect(),
        ..WorkerConfig::default()
    }
}

fn open(config: &WorkerConfig) -> WorkerPorts {
    WorkerPorts::open(config).unwrap_or_else(|e| panic!("open: {e}"))
}

/// A test frame: our ethertype, `seq` and the magic in the payload.
fn frame(seq: u32) -> [u8; FRAME_LEN] {
    let mut f = [0u8; FRAME_LEN];
    f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x02]);
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0x01]);
    f[12..14].copy_from_slice(&ETHERTYPE.to_be_bytes());
    f[14..18].copy_from_slice(&seq.to_be_bytes());
    f[18..26].copy_from_slice(MAGIC);
    f
}

/// The sequence number of a test frame, None for any other frame.
fn seq_of(f: &[u8]) -> Option<u32> {
    (f.len() >= 26 && f[12..14] == ETHERTYPE.to_be_bytes() && &f[18..26] == MAGIC)
        .then(|| u32::from_be_bytes([f[14], f[15], f[16], f[17]]))
}

/// An AF_PACKET socket on one interface for our ethertype (kernel side of the tests).
struct PacketSocket(libc::c_int);

impl PacketSocket {
    fn new(ifname: &str) -> Self {
        let proto = ETHERTYPE.to_be();
        // SAFETY: plain syscall.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
        assert!(
            fd >= 0,
            "packet socket: {}",
            std::io::Error::last_os_error()
        );
        let sock = Self(fd);
        let ifindex = tandem_dataplane::io::afxdp::kernel_ifindex(ifname).expect("ifindex");
        // SAFETY: all-zero is a valid sockaddr_ll.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is a sockaddr_ll of the size given.
        let rc = unsafe {
            libc::bind(
                fd,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(
            rc,
            0,
            "bind packet socket: {}",
            std::io::Error::last_os_error()
        );
        let rcvbuf: libc::c_int = 16 << 20;
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: 100_000,
        };
        // SAFETY: option values of the sizes given.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&rcvbuf as *const libc::c_int).cast(),
                4,
            );
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
        }
        sock
    }

    fn send(&self, f: &[u8]) -> bool {
        // SAFETY: `f` is valid for `f.len()` bytes.
        unsafe { libc::send(self.0, f.as_ptr().cast(), f.len(), 0) == f.len() as isize }
    }

    /// One frame, or None after the 100 ms receive timeout.
    fn recv(&self, buf: &mut [u8]) -> Option<usize> {
        // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
        let n = unsafe { libc::recv(self.0, buf.as_mut_ptr().cast(), buf.len(), 0) };
        (n >= 0).then_some(n as usize)
    }
}

impl Drop for PacketSocket {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.0) };
    }
}

/// (1) Two-interface forwarder: frames sent by the kernel on a0 reach the worker on a1, leave on
/// b1 without a copy (same UMEM) and arrive on b0, intact and each once.
#[test]
fn forwards_from_one_interface_to_another() {
    tandem_testlab::require_root();
    // Packet tests share two cores with busy workers: one at a time, machine-wide.
    let _lab = tandem_testlab::lock().expect("the lab lock");
    const N: u32 = 20_000;
    let ns = NetNs::new();
    ns.veth("a0", "a1");
    ns.veth("b0", "b1");

    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let worker = ns.spawn({
        let stop = stop.clone();
        move || {
            let mut ports = open(&config(&[(0, "a1"), (1, "b1")]));
            ready_tx.send((ports.mode(), ports.bound())).unwrap();
            let mut handler = |in_if, _buf: &mut [u8], len| match in_if {
                0 => Verdict::Tx { out_if: 1, len },
                _ => Verdict::Drop,
            };
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if ports.poll(256, &mut handler) == 0 {
                    thread::yield_now();
                }
            }
            let elapsed = started.elapsed();
            let audit = ports.frames_accounted();
            let counters = *ports.counters();
            drop(ports);
            let left = (attached_xdp("a1").unwrap(), attached_xdp("b1").unwrap());
            (counters, audit, left, elapsed)
        }
    });
    let (mode, bound) = ready_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("worker ready");
    eprintln!("bound {bound:?} in {mode} mode");
    let expect: Vec<(String, u32)> = [("a1", 0), ("a1", 1), ("b1", 0), ("b1", 1)]
        .iter()
        .map(|&(n, q)| (n.into(), q))
        .collect();
    assert_eq!(
        bound, expect,
        "a socket on every RX queue of both interfaces"
    );

    let sending = Arc::new(AtomicBool::new(true));
    let receiver = ns.spawn({
        let sending = sending.clone();
        move || {
            let sock = PacketSocket::new("b0");
            let mut seen = vec![0u32; N as usize];
            let mut buf = [0u8; 2048];
            let mut idle_since = Instant::now();
            loop {
                match sock.recv(&mut buf) {
                    Some(n) => {
                        idle_since = Instant::now();
                        if let Some(seq) = seq_of(&buf[..n]) {
                            assert_eq!(n, FRAME_LEN, "frame {seq} arrived with length {n}");
                            assert_eq!(&buf[..n], &frame(seq)[..], "frame {seq} changed");
                            seen[seq as usize] += 1;
                        }
                    }
                    None if !sending.load(Ordering::Relaxed)
                        && idle_since.elapsed() > Duration::from_secs(1) =>
                    {
                        break
                    }
                    None => {}
                }
            }
            seen
        }
    });
    thread::sleep(Duration::from_millis(100));
    ns.run(|| {
        let sock = PacketSocket::new("a0");
        for seq in 0..N {
            assert!(sock.send(&frame(seq)), "send on a0");
            // Paced: copy mode on veth loses frames at full rate (shared/reference notes).
            if seq % 16 == 15 {
                thread::sleep(Duration::from_micros(200));
            }
        }
    });
    sending.store(false, Ordering::Relaxed);
    let seen = join(receiver);
    stop.store(true, Ordering::Relaxed);
    let (c, audit, left, elapsed) = join(worker);
    let arrived = seen.iter().filter(|&&n| n > 0).count() as u32;
    eprintln!("{c:?}\n{arrived}/{N} arrived on b0, worker ran {elapsed:?}");

    assert!(seen.iter().all(|&n| n <= 1), "a frame arrived twice");
    assert!(
        arrived >= N * 99 / 100,
        "only {arrived} of {N} frames crossed the worker"
    );
    assert!(
        c.tx >= u64::from(arrived),
        "b0 got frames the worker did not send"
    );
    assert_eq!(
        c.rx,
        c.tx + c.dropped + c.bad_verdict + c.tx_ring_full + c.rx_too_long,
        "{c:?}"
    );
    assert_eq!(c.bad_verdict, 0);
    let audit = audit.unwrap_or_else(|e| panic!("frames not accounted: {e}"));
    assert_eq!(audit.free + audit.in_fill + audit.in_tx, audit.total);
    assert_eq!(
        left,
        (None, None),
        "the XDP programs stay after the worker stopped"
    );
}

/// (2) Frame accounting: 10 million frames (`TDXDP_FRAMES` to change) circulate a0 -> a1 ->
/// worker -> b0 -> b1 -> worker -> a0 ..., every hop a descriptor moving from one interface's
/// RX ring to another interface's TX ring. Frames are injected with `send_copy`: every round for the first half
/// (the pool runs dry), then when a round is short; ring-full, starvation and kernel losses happen on the way. At the end every
/// frame is back: free + in fill rings == total, nothing in TX rings, no chunk twice.
#[test]
fn ten_million_frames_all_accounted() {
    tandem_testlab::require_root();
    // Packet tests share two cores with busy workers: one at a time, machine-wide.
    let _lab = tandem_testlab::lock().expect("the lab lock");
    let target: u64 = std::env::var("TDXDP_FRAMES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    let ns = NetNs::new();
    ns.veth("a0", "a1");
    ns.veth("b0", "b1");
    ns.run(move || {
        // A small UMEM and small rings (1024 frames for 8 sockets: 64 in each fill ring, TX
        // rings of 64) so that injection fills TX rings (tx_ring_full) and the kernel drops
        // frames it has no fill entry for; frames must come back all the same.
        let mut cfg = config(&[(0, "a0"), (1, "a1"), (2, "b0"), (3, "b1")]);
        cfg.frames = 1024;
        cfg.ring_size = 64;
        let mut ports = open(&cfg);
        let total = ports.frames_accounted().expect("fresh ports").total;
        let mut bad = 0u64;
        let mut handler = |in_if, buf: &mut [u8], len| {
            if buf.len() != FRAME_SIZE || len != FRAME_LEN || seq_of(&buf[..len]).is_none() {
                bad += 1;
                return Verdict::Drop;
            }
            match in_if {
                1 => Verdict::Tx { out_if: 2, len },
                3 => Verdict::Tx { out_if: 0, len },
                _ => Verdict::Drop,
            }
        };
        let (mut copies_ok, mut copies_ring_full, mut seq) = (0u64, 0u64, 0u32);
        let started = Instant::now();
        let mut last_progress = (Instant::now(), 0u64);
        let mut next_audit = 1_000_000;
        while ports.counters().rx < target {
            let n = ports.poll(256, &mut handler);
            // First half: inject every round, until the pool runs dry (starvation, full rings);
            // second half: only when a round is short, as losses thin the circulation out.
            if n < 128 || ports.counters().rx < target / 2 {
                for _ in 0..64 {
                    let no_frame = ports.counters().send_no_frame;
                    seq = seq.wrapping_add(1);
                    if ports.send_copy(0, &frame(seq)) {
                        copies_ok += 1;
                    } else {
                        if ports.counters().send_no_frame == no_frame {
                            copies_ring_full += 1;
                        }
                        break;
                    }
                }
            }
            let rx = ports.counters().rx;
            if rx >= next_audit {
                ports.frames_accounted().unwrap_or_else(|e| panic!("after {rx} frames: {e}"));
                next_audit += 1_000_000;
            }
            if rx > last_progress.1 {
                last_progress = (Instant::now(), rx);
            }
            assert!(
                last_progress.0.elapsed() < Duration::from_secs(10),
                "no frame for 10 s: {:?}",
                ports.counters()
            );
        }
        let elapsed = started.elapsed();
        // Drain: everything that arrives now is dropped, until nothing has arrived for a while.
        let mut drop_all = |_, _: &mut [u8], _| Verdict::Drop;
        let mut quiet = 0;
        while quiet < 200 {
            if ports.poll(256, &mut drop_all) == 0 {
                quiet += 1;
                thread::sleep(Duration::from_millis(1));
            } else {
                quiet = 0;
            }
        }
        let c = *ports.counters();
        let audit = ports.frames_accounted().unwrap_or_else(|e| panic!("at the end: {e}"));
        eprintln!(
            "{c:?}\n{:?}\n{audit:?}\n{} frames in {elapsed:?}: {:.2} Mpps through the worker; {copies_ok} \
             injected",
            ports.kernel_stats(),
            c.rx,
            c.rx as f64 / elapsed.as_secs_f64() / 1e6
        );
        assert_eq!(bad, 0, "frames arrived with a wrong length or content");
        assert!(c.rx >= target);
        assert_eq!(audit.in_tx, 0, "TX rings drained");
        assert_eq!(audit.free + audit.in_fill, total, "every frame back");
        assert_eq!(ports.free_frames() as u32, audit.free);
        assert_eq!(
            c.rx + copies_ok + copies_ring_full,
            c.tx + c.dropped + c.bad_verdict + c.tx_ring_full + c.rx_too_long,
            "each frame received or injected was sent, dropped or returned: {c:?}"
        );
        assert_eq!(c.completed, c.tx, "every frame sent completed");
    });
}

/// Helper process for [`stale_program_is_replaced`]: binds in the namespace named by
/// `TDXDP_STALE_NS`, says so, and waits to be killed.
#[test]
#[ignore = "helper process of stale_program_is_replaced, started by it"]
fn stale_child_helper() {
    let Ok(ns) = std::env::var("TDXDP_STALE_NS") else {
        return;
    };
    let h = thread::spawn(move || {
        enter_ns(&ns);
        let ports = open(&config(&[(0, "a1"), (1, "b1")]));
        println!("TDXDP-READY");
        thread::sleep(Duration::from_secs(120));
        drop(ports);
    });
    join(h);
}

/// Kills its child process (SIGKILL) on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// (3) A start after kill -9: a process binds, is SIGKILLed with its XDP programs still
/// attached (libxdp's reference count never drops), and a new worker replaces them, forwards,
/// and leaves no program behind when it stops.
#[test]
fn stale_program_is_replaced() {
    tandem_testlab::require_root();
    // Packet tests share two cores with busy workers: one at a time, machine-wide.
    let _lab = tandem_testlab::lock().expect("the lab lock");
    let ns = NetNs::new();
    ns.veth("a0", "a1");
    ns.veth("b0", "b1");
    let exe = std::env::current_exe().expect("test binary");
    let child = Command::new(exe)
        .args([
            "stale_child_helper",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("TDXDP_STALE_NS", &ns.name)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn helper");
    let mut child = Killed(child);
    let out = child.0.stdout.take().expect("stdout");
    let ready = BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.ends_with("TDXDP-READY")); // after libtest's "test NAME ... "
    assert!(ready, "helper did not bind");
    child.0.kill().expect("SIGKILL helper");
    child.0.wait().expect("reap helper");

    let stale = ns.run(|| attached_xdp("a1").unwrap());
    let stale = stale.expect("the killed process left its XDP program on a1");

    let (fresh, rx, c) = ns.run(move || {
        let mut ports = open(&config(&[(0, "a1"), (1, "b1")]));
        let fresh = attached_xdp("a1").unwrap().expect("a program after open");
        let sock = PacketSocket::new("a0");
        for seq in 0..200 {
            sock.send(&frame(seq));
        }
        let mut forward = |in_if, _: &mut [u8], len| match in_if {
            0 => Verdict::Tx { out_if: 1, len },
            _ => Verdict::Drop,
        };
        let deadline = Instant::now() + Duration::from_secs(3);
        while ports.counters().rx < 200 && Instant::now() < deadline {
            if ports.poll(64, &mut forward) == 0 {
                thread::sleep(Duration::from_millis(1));
            }
        }
        let c = *ports.counters();
        drop(ports);
        let after = (attached_xdp("a1").unwrap(), attached_xdp("b1").unwrap());
        assert_eq!(after, (None, None), "programs left after a clean stop");
        (fresh, c.rx, c)
    });
    eprintln!("stale {stale:?} replaced by {fresh:?}; {c:?}");
    assert_ne!(
        fresh.prog_id, stale.prog_id,
        "the stale program was reused, not replaced"
    );
    assert!(
        rx >= 190,
        "the restarted worker received {rx} of 200 frames"
    );
}

/// (4) Binding refuses to start when a queue cannot be bound, and says which.
#[test]
fn refuses_to_start_when_a_queue_cannot_be_bound() {
    tandem_testlab::require_root();
    // Packet tests share two cores with busy workers: one at a time, machine-wide.
    let _lab = tandem_testlab::lock().expect("the lab lock");
    let ns = NetNs::new();
    ns.veth("a0", "a1");
    ns.run(|| {
        // No such interface.
        let e = WorkerPorts::open(&config(&[(0, "a1"), (1, "nosuch0")])).unwrap_err();
        assert!(matches!(e, OpenError::NoInterface { .. }), "{e:?}");
        assert!(e.to_string().contains("nosuch0"), "{e}");

        // A queue the interface does not have.
        let mut cfg = config(&[(0, "a1")]);
        cfg.ports[0].queues = Queues::Only(vec![0, 5]);
        let e = WorkerPorts::open(&cfg).unwrap_err();
        assert!(
            matches!(
                e,
                OpenError::NoQueue {
                    queue: 5,
                    count: 2,
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(
            e.to_string().contains("a1") && e.to_string().contains("queue 5"),
            "{e}"
        );

        // A queue another socket holds: the whole open fails, naming it, and unbinds the rest.
        let mut holder_cfg = config(&[(0, "a1")]);
        holder_cfg.ports[0].queues = Queues::Only(vec![1]);
        holder_cfg.exclusive = false;
        let holder = open(&holder_cfg);
        let mut cfg = config(&[(0, "a1")]);
        cfg.exclusive = false;
        let e = WorkerPorts::open(&cfg).unwrap_err();
        assert!(matches!(e, OpenError::Bind { queue: 1, .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("a1") && msg.contains("RX queue 1"), "{msg}");
        eprintln!("{msg}");
        assert!(
            attached_xdp("a1").unwrap().is_some(),
            "the holder's program was removed"
        );
        drop(holder);
        assert_eq!(
            attached_xdp("a1").unwrap(),
            None,
            "the failed open left a program"
        );

        // Zero-copy demanded on veth, which has none.
        let mut cfg = config(&[(0, "a1")]);
        cfg.mode = BindMode::ZeroCopy;
        match WorkerPorts::open(&cfg) {
            Err(e) => {
                assert!(matches!(e, OpenError::Bind { queue: 0, .. }), "{e:?}");
                eprintln!("zero-copy on veth: {e}");
            }
            Ok(p) => eprintln!("zero-copy on veth bound in {} mode", p.mode()),
        }
    });
}

/// (5) An idle worker's wait (`wait_rx`, what the worker blocks in when its rings are empty):
/// with nothing sent it returns at its timeout, saying so; asleep with a timeout far longer
/// than the test, it is woken by a frame sent 200 ms after it went to sleep, which the next
/// round then takes. A wait the kernel did not wake would time out and fail the test; one that
/// did not sleep would end before the frame was sent.
#[test]
fn an_idle_worker_is_woken_by_its_first_frame() {
    tandem_testlab::require_root();
    // Packet tests share two cores with busy workers: one at a time, machine-wide.
    let _lab = tandem_testlab::lock().expect("the lab lock");
    let ns = NetNs::new();
    ns.veth("a0", "a1");
    let (ready_tx, ready_rx) = mpsc::channel();
    let worker = ns.spawn(move || {
        let mut ports = open(&config(&[(0, "a1")]));
        // The namespace is quiet (no addresses, no IPv6): nothing to wake for.
        let started = Instant::now();
        let quiet = ports.wait_rx(Duration::from_millis(20));
        let quiet_waited = started.elapsed();
        ready_tx.send(()).unwrap();
        let started = Instant::now();
        let woke = ports.wait_rx(Duration::from_secs(120));
        let waited = started.elapsed();
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.is_empty() && Instant::now() < deadline {
            ports.poll(64, &mut |_, buf: &mut [u8], len: usize| {
                got.extend(seq_of(&buf[..len]));
                Verdict::Drop
            });
        }
        (quiet, quiet_waited, woke, waited, got)
    });
    ready_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("worker ready");
    // The worker goes to sleep right after saying it is ready; the frame comes well after.
    thread::sleep(Duration::from_millis(200));
    ns.run(|| assert!(PacketSocket::new("a0").send(&frame(7)), "send on a0"));
    let (quiet, quiet_waited, woke, waited, got) = join(worker);
    eprintln!("quiet wait {quiet_waited:?}; woken after {waited:?}, frames {got:?}");
    assert!(!quiet, "a wait with nothing sent said a frame was there");
    assert!(
        quiet_waited >= Duration::from_millis(20) && quiet_waited < Duration::from_secs(10),
        "a 20 ms wait took {quiet_waited:?}"
    );
    assert!(
        waited >= Duration::from_millis(150),
        "the wait ended after {waited:?}, before the frame was sent: it did not sleep"
    );
    assert!(woke, "the wait ended after {waited:?} without a frame");
    assert_eq!(got, vec![7], "the round after the wait took the frame");
}

/// The running kernel's (major, minor) version, from /proc/sys/kernel/osrelease.
fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// (6) A burst leaves in one system call: in copy mode the kernel sends TX frames only inside
/// `sendto`, 32 per call unless the socket raised `XDP_MAX_TX_SKB_BUDGET` (Linux 6.17 and
/// later). On such a kernel the worker's budget is its TX ring's size, and 128 queued frames
/// leave with one kick and all arrive, with no round after it to send leftovers; on an older
/// kernel the budget is 32 and the same burst takes at least four kicks.
#[test]
fn a_burst_leaves_in_one_kick() {
    tandem_testlab::require_root();
    // Packet tests share two cores with busy workers: one at a time, machine-wide.
    let _lab = tandem_testlab::lock().expect("the lab lock");
    const BURST: u32 = 128;
    let ns = NetNs::new();
    ns.veth("a0", "a1");
    let (budget, ring, kicks, got, mode) = ns.run(|| {
        let config = config(&[(0, "a1")]);
        let mut ports = open(&config);
        let sink = PacketSocket::new("a0");
        for seq in 0..BURST {
            assert!(ports.queue_copy(0, &frame(seq)), "queue frame {seq}");
        }
        let before = ports.counters().tx_kicks;
        ports.flush();
        let kicks = ports.counters().tx_kicks - before;
        // Only the kernel works from here: the ports are not polled again.
        let mut got = vec![false; BURST as usize];
        let mut buf = [0u8; 2048];
        let deadline = Instant::now() + Duration::from_secs(10);
        while got.iter().any(|g| !g) && Instant::now() < deadline {
            if let Some(n) = sink.recv(&mut buf) {
                if let Some(seq) = seq_of(&buf[..n]) {
                    got[seq as usize] = true;
                }
            }
        }
        let arrived = got.iter().filter(|&&g| g).count() as u32;
        (
            ports.tx_budget(),
            config.ring_size,
            kicks,
            arrived,
            ports.mode(),
        )
    });
    eprintln!(
        "{mode} mode, tx budget {budget} (ring {ring}): {kicks} kicks, {got}/{BURST} arrived"
    );
    if mode != BindMode::Copy {
        eprintln!("zero-copy: the kernel sends from the driver, no budget to check");
        return;
    }
    if kernel_version() >= (6, 17) {
        assert_eq!(
            budget, ring as usize,
            "Linux 6.17+ takes the TX ring's size as budget"
        );
    }
    if budget == ring as usize {
        assert_eq!(kicks, 1, "one sendto for the burst");
    } else {
        assert_eq!(budget, 32, "the kernel's fixed budget");
        assert!(
            kicks >= u64::from(BURST / 32),
            "{kicks} kicks for {BURST} frames"
        );
    }
    assert_eq!(
        got, BURST,
        "every frame of the burst left in the kicks of the flush"
    );
}
