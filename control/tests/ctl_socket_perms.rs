//! The control socket's permissions: mode 0600 whatever the umask (0660 and its group with a
//! socket group), peers checked with SO_PEERCRED, and the caller's credentials handed to the
//! handler: `config check|apply FILE` takes the text tandemctl read with the caller's rights,
//! and tandemd opens a file itself only for root.
//!
//! Runs clients as `nobody` (uid/gid 65534): needs root, like the lab tests.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tandem_control::socket::{ControlServer, Handler, Request};

const NOBODY: u32 = 65534;

/// Answers `config.check` as tandemd does (the same function chooses the text).
struct Checker;

impl Handler for Checker {
    type Error = Box<dyn std::error::Error>;
    fn handle(&mut self, req: &Request) -> Result<Value, Self::Error> {
        let peer = req.peer.as_ref().ok_or("no peer credentials")?;
        let path = req.args["path"].as_str().unwrap_or("");
        let sent = req.args["text"].as_str().map(str::to_string);
        let text = tandem_control::peer::config_text(Some(peer), path, sent)?;
        let errors: Vec<String> = match tandem_control::config::parse(path, &text) {
            Ok(_) => vec![],
            Err(e) => e.messages(),
        };
        Ok(json!({"path": path, "valid": errors.is_empty(), "errors": errors}))
    }
}

/// One raw request line over the socket as `uid`, without tandemctl: its reply line.
fn raw_as(uid: u32, socket: &Path, line: &str) -> String {
    let script = "import socket,sys\n\
s=socket.socket(socket.AF_UNIX)\n\
s.connect(sys.argv[1])\n\
s.sendall(sys.argv[2].encode()+b'\\n')\n\
print(s.makefile().readline())";
    let out = Command::new("python3")
        .args(["-c", script])
        .arg(socket)
        .arg(line)
        .uid(uid)
        .gid(uid)
        .output()
        .unwrap();
    text(&out)
}

fn serve(mut server: ControlServer) -> (Arc<AtomicBool>, std::thread::JoinHandle<u64>) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let t = std::thread::spawn(move || {
        while !s.load(Ordering::Relaxed) {
            server
                .poll_once(Duration::from_millis(10), &mut Checker)
                .unwrap();
        }
        server.refused_peers
    });
    (stop, t)
}

fn ctl_as(uid: u32, gid: u32, socket: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tandemctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tandem-perm-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

#[test]
fn socket_modes_peers_and_caller_readable_files() {
    tandem_testlab::require_root();
    let d = dir("sock");
    // SAFETY: umask has no preconditions; this test binary has one test, so no other thread
    // creates files meanwhile.
    let old = unsafe { libc::umask(0) };
    let path = d.join("root.sock");
    let server = ControlServer::bind(&path).unwrap();
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let m = std::fs::metadata(&path).unwrap();
    assert_eq!(m.mode() & 0o777, 0o600, "root-only socket under umask 0");
    // A socket whose mode was loosened by hand still refuses a stranger: SO_PEERCRED.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (stop, t) = serve(server);
    let out = ctl_as(NOBODY, NOBODY, &path, &["config", "check", "/etc/hostname"]);
    // Refused: the connection closes with no reply (a served check would answer with the
    // file's parse errors).
    assert!(
        !out.status.success() && text(&out).contains("no reply from tandemd"),
        "nobody was served: {}",
        text(&out)
    );
    stop.store(true, Ordering::Relaxed);
    assert_eq!(t.join().unwrap(), 1, "the refusal is counted");

    // With a socket group: 0660, that group, its members served with their own rights.
    let path = d.join("group.sock");
    let server = ControlServer::bind_with_group(&path, Some(NOBODY)).unwrap();
    let m = std::fs::metadata(&path).unwrap();
    assert_eq!((m.mode() & 0o777, m.gid()), (0o660, NOBODY));
    let (stop, t) = serve(server);
    let secret = d.join("secret.toml");
    std::fs::write(&secret, "x = 1\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let s = secret.display().to_string();
    // tandemctl reads the file with its caller's rights: nobody cannot.
    let out = ctl_as(NOBODY, NOBODY, &path, &["config", "check", &s]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Permission denied"), "{}", text(&out));
    // Nor can nobody make tandemd open it: a request without the text is refused, and no
    // parse error quotes the secret's content.
    let req = format!(r#"{{"cmd":"config.check","args":{{"path":"{s}"}}}}"#);
    let reply = raw_as(NOBODY, &path, &req);
    assert!(reply.contains("opens files only for root"), "{reply}");
    assert!(!reply.contains("x = 1"), "{reply}");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = ctl_as(NOBODY, NOBODY, &path, &["config", "check", &s]);
    // Readable: its text reaches tandemd, which finds it is no tandem config.
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("unknown field"), "{}", text(&out));
    // Root reads everything, and may have tandemd open a path; a device is refused unread.
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = ctl_as(0, 0, &path, &["config", "check", &s]);
    assert!(text(&out).contains("unknown field"), "{}", text(&out));
    let reply = raw_as(
        0,
        &path,
        r#"{"cmd":"config.check","args":{"path":"/dev/zero"}}"#,
    );
    assert!(reply.contains("not a regular file"), "{reply}");
    let reply = raw_as(
        0,
        &path,
        &format!(r#"{{"cmd":"config.check","args":{{"path":"{s}"}}}}"#),
    );
    assert!(reply.contains("unknown field"), "{reply}");
    stop.store(true, Ordering::Relaxed);
    assert_eq!(t.join().unwrap(), 0);
    let _ = std::fs::remove_dir_all(&d);
}
