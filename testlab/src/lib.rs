//! Test support: the seed's network lab (`scripts/lab`) in namespaces, torn down by a guard.
//!
//! ```no_run
//! use std::time::Duration;
//! use tandem_testlab::{wait_until, Lab, Node};
//!
//! let lab = Lab::up("nat").expect("lab up");
//! let _fwa = lab.spawn(Node::Fwa, &["sleep", "600"]).expect("spawn");
//! assert!(wait_until(Duration::from_secs(10), Duration::from_millis(100), || {
//!     lab.ping(Node::Fwa, "10.255.0.2", 1)
//! }));
//! // Dropping `lab` (also while a failed assertion unwinds) runs `scripts/lab down`.
//! ```
//!
//! - [`Lab::up`] takes the machine-wide lab lock ([`lock()`]), so lab tests run one at a time
//!   across all test processes, builds a lab with a prefix unique to the process and tag, and
//!   tears it down on drop. Labs leaked by killed test runs are removed on the next `up`.
//!   The lock is reentrant for the thread that holds it (one test may hold two labs); a lab
//!   made on another thread waits until the holder's labs are all down.
//! - Every lab test needs root: [`Lab::up`] fails loudly without it ([`require_root`]); a lab
//!   test never passes by skipping.
//! - Waiting is done with [`wait_until`], never with a bare sleep.

mod lock;
pub mod topology;

pub use lock::{lock, lock_path, LabLock, LOCK_ENV};
pub use topology::{mac, mac_string, Node};

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Namespace prefixes of labs made by this crate start with this; `scripts/test` fails when one
/// is left over.
pub const TEST_PREFIX_MARK: &str = "tl-";

/// `scripts/lab`, found from this crate's manifest directory.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/lab")
}

/// Panics with a clear message unless the process runs as root (effective uid 0).
///
/// Lab tests need it for network namespaces; CI runs as root. A lab test that is not root fails
/// rather than passing silently.
pub fn require_root() {
    let euid = fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1).map(str::to_owned))
    });
    assert_eq!(
        euid.as_deref(),
        Some("0"),
        "lab tests need root (they build network namespaces): run them as root, e.g. scripts/test"
    );
}

/// Calls `cond` every `poll` until it returns true or `timeout` has passed; true if it did. `cond`
/// runs at least once, and once more at the deadline.
pub fn wait_until(timeout: Duration, poll: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        thread::sleep(poll.min(deadline - now));
        if Instant::now() >= deadline {
            return cond();
        }
    }
}

static SEQ: AtomicU32 = AtomicU32::new(0);
static LOG_SEQ: AtomicU32 = AtomicU32::new(0);

/// A prefix unique to this process and call: `tl-TAG-PID-SEQ-` (PID and SEQ in base 36), e.g.
/// `tl-nat-2kq-0-`, giving namespaces such as `tl-nat-2kq-0-fwa`. `tag` is 1 to 6 characters of
/// `[a-z0-9]`.
pub fn unique_prefix(tag: &str) -> String {
    assert!(
        (1..=6).contains(&tag.len())
            && tag
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()),
        "lab tag '{tag}' must be 1 to 6 characters of [a-z0-9]"
    );
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    format!(
        "{TEST_PREFIX_MARK}{tag}-{}-{}-",
        base36(std::process::id()),
        base36(seq)
    )
}

fn base36(mut n: u32) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// The pid encoded in a test prefix made by [`unique_prefix`].
fn prefix_pid(prefix: &str) -> Option<u32> {
    let rest = prefix.strip_prefix(TEST_PREFIX_MARK)?;
    let mut parts = rest.split('-');
    let (_tag, pid) = (parts.next()?, parts.next()?);
    u32::from_str_radix(pid, 36).ok()
}

/// Options of [`Lab::up_with`].
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// RX/TX queues of the lan and wan veths of fwa and fwb (`scripts/lab up --queues`); `None`
    /// keeps the script's default of 1.
    pub queues: Option<u32>,
}

/// A running lab. Dropping it runs `scripts/lab down`, then releases the lab lock.
#[derive(Debug)]
pub struct Lab {
    prefix: String,
    logs: PathBuf,
    // Declared last: released after the lab is down.
    _lock: LabLock,
}

impl Lab {
    /// Builds a lab with a [`unique_prefix`] made from `tag`, after taking the lab lock.
    pub fn up(tag: &str) -> io::Result<Lab> {
        Lab::up_with(tag, &Options::default())
    }

    /// [`Lab::up`] with options.
    pub fn up_with(tag: &str, opts: &Options) -> io::Result<Lab> {
        Lab::up_exact(&unique_prefix(tag), opts)
    }

    /// Builds the lab `prefix` as given. Fails if it exists, unless it is a test lab (starting
    /// with [`TEST_PREFIX_MARK`]) that no live lab holds.
    pub fn up_exact(prefix: &str, opts: &Options) -> io::Result<Lab> {
        require_root();
        let lock = lock()?;
        reap_stale(prefix);
        let mut cmd = Command::new(script());
        cmd.arg("up");
        if let Some(q) = opts.queues {
            cmd.arg("--queues").arg(q.to_string());
        }
        cmd.arg(prefix);
        run_script(&mut cmd)?;
        let logs = std::env::temp_dir().join(format!("tandem-{prefix}logs"));
        let lab = Lab {
            prefix: prefix.to_owned(),
            logs,
            _lock: lock,
        };
        fs::create_dir_all(&lab.logs)?;
        Ok(lab)
    }

    /// The lab's prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The namespace of `node`.
    pub fn ns(&self, node: Node) -> String {
        format!("{}{}", self.prefix, node.name())
    }

    /// A command that runs `program` inside `node` (`ip netns exec`), to be completed by the
    /// caller.
    pub fn command(&self, node: Node, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.arg("netns").arg("exec").arg(self.ns(node)).arg(program);
        cmd
    }

    /// Runs `args` inside `node` and returns its output. Panics only if `ip` cannot be started.
    pub fn exec<S: AsRef<OsStr>>(&self, node: Node, args: &[S]) -> Output {
        let (program, rest) = args.split_first().expect("exec: empty command");
        self.command(node, program)
            .args(rest)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("exec in {}: cannot start ip: {e}", self.ns(node)))
    }

    /// Runs `args` inside `node`, panics with its stderr unless it succeeds, returns its stdout.
    pub fn run<S: AsRef<OsStr>>(&self, node: Node, args: &[S]) -> String {
        let out = self.exec(node, args);
        assert!(
            out.status.success(),
            "in {}: {:?} failed ({}): {}",
            self.ns(node),
            args.iter()
                .map(|a| a.as_ref().to_string_lossy())
                .collect::<Vec<_>>(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `args` inside `node` in the background, its stdout and stderr going to a log file.
    /// The process is killed when the returned guard drops.
    pub fn spawn<S: AsRef<OsStr>>(&self, node: Node, args: &[S]) -> io::Result<Proc> {
        let (program, rest) = args.split_first().expect("spawn: empty command");
        let name = Path::new(program)
            .file_name()
            .unwrap_or(program.as_ref())
            .to_string_lossy()
            .into_owned();
        let log = self.logs.join(format!(
            "{node}-{name}-{}.log",
            LOG_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let out = File::create(&log)?;
        let err = out.try_clone()?;
        let child = self
            .command(node, program)
            .args(rest)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()?;
        Ok(Proc {
            child,
            what: format!("{name} in {}", self.ns(node)),
            log,
        })
    }

    /// True if all `count` echo requests from `node` to `dst` are answered (200 ms apart, within
    /// `count` x 0.2 s + 2 s).
    pub fn ping(&self, node: Node, dst: &str, count: u32) -> bool {
        let deadline = (count * 2).div_ceil(10) + 2;
        self.exec(
            node,
            &[
                "ping",
                "-n",
                "-q",
                "-c",
                &count.to_string(),
                "-i",
                "0.2",
                "-w",
                &deadline.to_string(),
                dst,
            ],
        )
        .status
        .success()
    }

    /// Where the logs of spawned processes go (kept if the test fails).
    pub fn log_dir(&self) -> &Path {
        &self.logs
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Err(e) = run_script(Command::new(script()).arg("down").arg(&self.prefix)) {
            eprintln!("testlab: LEAK: {e}");
        }
        if thread::panicking() {
            eprintln!(
                "testlab: lab {} is down; logs kept in {}",
                self.prefix,
                self.logs.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.logs);
        }
    }
}

fn run_script(cmd: &mut Command) -> io::Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("cannot run {}: {e}", script().display())))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{:?} failed ({}): {}",
            cmd,
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Tears down test labs nobody holds: under the lab lock, a test lab of another process is a
/// leftover of a killed run, and `prefix` itself cannot be live (prefixes are never reused).
fn reap_stale(prefix: &str) {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    let me = std::process::id();
    let mut stale: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter_map(|ns| Node::ALL.iter().find_map(|n| ns.strip_suffix(n.name())))
        .filter(|p| p.starts_with(TEST_PREFIX_MARK))
        .filter(|p| *p == prefix || prefix_pid(p).is_some_and(|pid| pid != me))
        .map(str::to_owned)
        .collect();
    stale.sort();
    stale.dedup();
    for p in stale {
        eprintln!("testlab: removing leftover lab {p}");
        if let Err(e) = run_script(Command::new(script()).arg("down").arg(&p)) {
            eprintln!("testlab: {e}");
        }
    }
}

/// A process started by [`Lab::spawn`]; killed (SIGKILL) and reaped on drop. If the test is
/// failing, the tail of its log is printed.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    what: String,
    log: PathBuf,
}

impl Proc {
    /// The process id (of the command itself: `ip netns exec` execs it).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status, if it has exited.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Waits up to `timeout` for it to exit by itself.
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let mut status = None;
        let mut err = None;
        wait_until(timeout, Duration::from_millis(20), || {
            match self.child.try_wait() {
                Ok(s) => {
                    status = s;
                    s.is_some()
                }
                Err(e) => {
                    err = Some(e);
                    true
                }
            }
        });
        match err {
            Some(e) => Err(e),
            None => Ok(status),
        }
    }

    /// Kills it and returns how it ended.
    pub fn kill(mut self) -> io::Result<ExitStatus> {
        self.stop()
    }

    /// Everything it wrote to stdout and stderr so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The underlying child.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    fn stop(&mut self) -> io::Result<ExitStatus> {
        if let Some(s) = self.child.try_wait()? {
            return Ok(s);
        }
        self.child.kill()?;
        self.child.wait()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!(
                "testlab: cannot stop {} (pid {}): {e}",
                self.what,
                self.child.id()
            );
        }
        if thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "testlab: --- last lines of {} ({}) ---",
                self.what,
                self.log.display()
            );
            for l in tail.iter().rev() {
                eprintln!("  {l}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_prefixes_are_short_valid_and_carry_the_pid() {
        let a = unique_prefix("nat");
        let b = unique_prefix("nat");
        assert_ne!(a, b);
        for p in [&a, &b] {
            assert!(p.starts_with("tl-nat-"), "{p}");
            assert!(p.len() <= 20, "{p} is longer than scripts/lab allows");
            assert_eq!(prefix_pid(p), Some(std::process::id()));
        }
        assert_eq!(base36(0), "0");
        assert_eq!(base36(36 * 36 + 35), "10z");
        assert_eq!(prefix_pid("tl-x-10z-0-"), Some(36 * 36 + 35));
        assert_eq!(prefix_pid("td"), None);
    }

    #[test]
    #[should_panic(expected = "must be 1 to 6 characters")]
    fn long_tags_are_refused() {
        let _ = unique_prefix("toolongtag");
    }

    #[test]
    fn wait_until_sees_a_late_condition_and_gives_up_on_a_false_one() {
        let start = Instant::now();
        assert!(wait_until(
            Duration::from_secs(5),
            Duration::from_millis(5),
            || { start.elapsed() > Duration::from_millis(30) }
        ));
        let start = Instant::now();
        assert!(!wait_until(
            Duration::from_millis(50),
            Duration::from_millis(10),
            || false
        ));
        assert!(start.elapsed() >= Duration::from_millis(50));
    }
}
