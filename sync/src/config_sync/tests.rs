//! The channel over loopback TCP: round trips, wrong credentials, a replayed session, limits and
//! deadlines.

use super::*;
use std::net::TcpListener;
use std::sync::OnceLock;
use std::thread;

const SESSION: Duration = Duration::from_secs(10);

/// The lab's credentials, derived once (PBKDF2 is slow on purpose).
fn key() -> &'static ChannelKey {
    static K: OnceLock<ChannelKey> = OnceLock::new();
    K.get_or_init(|| ChannelKey::derive("admin", "tandem-lab-config-sync"))
}

fn other_key() -> &'static ChannelKey {
    static K: OnceLock<ChannelKey> = OnceLock::new();
    K.get_or_init(|| ChannelKey::derive("admin", "another password"))
}

/// A responder on a loopback port that runs `serve` on its first session.
fn responder<T: Send + 'static>(
    key: &'static ChannelKey,
    session: Duration,
    serve: impl FnOnce(Result<Channel, ChannelError>) -> T + Send + 'static,
) -> (SocketAddr, thread::JoinHandle<T>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        serve(Channel::accept(s, key, session, session))
    });
    (addr, t)
}

#[test]
fn messages_small_and_large_cross_both_ways() {
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let expect = big.clone();
    let (addr, t) = responder(key(), SESSION, move |ch| {
        let mut ch = ch.unwrap();
        let a = ch.recv(MAX_MESSAGE).unwrap();
        let b = ch.recv(MAX_MESSAGE).unwrap();
        ch.send(b"ok").unwrap();
        ch.send(&b).unwrap();
        (a, b.len())
    });
    let mut ch = Channel::connect(addr, key(), SESSION, SESSION).unwrap();
    ch.send(b"hello").unwrap();
    ch.send(&big).unwrap();
    assert_eq!(ch.recv(16).unwrap(), b"ok");
    assert_eq!(ch.recv(MAX_MESSAGE).unwrap(), expect);
    let (a, blen) = t.join().unwrap();
    assert_eq!(a, b"hello");
    assert_eq!(blen, 3_000_000);
    // An empty message is a message too.
    let (addr, t) = responder(key(), SESSION, |ch| ch.unwrap().recv(10).unwrap());
    Channel::connect(addr, key(), SESSION, SESSION)
        .unwrap()
        .send(b"")
        .unwrap();
    assert_eq!(t.join().unwrap(), b"");
}

#[test]
fn different_credentials_fail_on_both_sides() {
    let (addr, t) = responder(other_key(), SESSION, |ch| ch.err());
    let client = Channel::connect(addr, key(), SESSION, SESSION);
    let server = t.join().unwrap();
    assert!(
        matches!(server, Some(ChannelError::Authentication)),
        "{server:?}"
    );
    // The responder says so before it closes: the initiator knows why.
    assert!(
        matches!(client, Err(ChannelError::Authentication)),
        "{client:?}"
    );
    // The user name is part of the key.
    assert_ne!(
        ChannelKey::derive("admin", "pw"),
        ChannelKey::derive("root", "pw")
    );
}

/// A recording relay: forwards a session and keeps what the initiator sent.
#[test]
fn a_captured_session_replayed_later_is_refused() {
    // The genuine session, through a relay that records the initiator's bytes.
    let (addr, t) = responder(key(), SESSION, |ch| {
        let mut ch = ch.unwrap();
        ch.recv(1024).unwrap()
    });
    let relay = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay_addr = relay.local_addr().unwrap();
    let recorder = thread::spawn(move || {
        let (mut client, _) = relay.accept().unwrap();
        let mut server = TcpStream::connect(addr).unwrap();
        let mut back = server.try_clone().unwrap();
        let mut client_w = client.try_clone().unwrap();
        let pump = thread::spawn(move || {
            let _ = io::copy(&mut back, &mut client_w);
        });
        let mut recorded = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match client.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    recorded.extend_from_slice(&buf[..n]);
                    server.write_all(&buf[..n]).unwrap();
                }
            }
        }
        let _ = server.shutdown(std::net::Shutdown::Write);
        let _ = pump.join();
        recorded
    });
    let mut ch = Channel::connect(relay_addr, key(), SESSION, SESSION).unwrap();
    ch.send(b"push version 7").unwrap();
    assert_eq!(t.join().unwrap(), b"push version 7");
    drop(ch);
    let recorded = recorder.join().unwrap();
    // The same bytes, replayed to a fresh responder: the handshake's first message is accepted
    // (it cannot be told from a new one), but the message after it was sealed for another key.
    let (addr, t) = responder(key(), SESSION, |ch| ch.and_then(|mut c| c.recv(1024)));
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&recorded).unwrap();
    let got = t.join().unwrap();
    assert!(
        matches!(got, Err(ChannelError::Protocol(_))),
        "a replay must not be read: {got:?}"
    );
}

#[test]
fn a_message_over_the_limit_is_refused_before_it_is_read() {
    let (addr, t) = responder(key(), SESSION, |ch| ch.unwrap().recv(1000));
    let mut ch = Channel::connect(addr, key(), SESSION, SESSION).unwrap();
    ch.send(&[7u8; 1001]).unwrap();
    let got = t.join().unwrap();
    assert!(
        matches!(
            got,
            Err(ChannelError::TooLarge {
                len: 1001,
                limit: 1000
            })
        ),
        "{got:?}"
    );
}

#[test]
fn a_silent_or_trickling_peer_runs_out_of_time() {
    let session = Duration::from_millis(300);
    // Silent: connects, says nothing.
    let (addr, t) = responder(key(), session, |ch| ch.err());
    let s = TcpStream::connect(addr).unwrap();
    let start = Instant::now();
    let got = t.join().unwrap();
    assert!(matches!(got, Some(ChannelError::Timeout)), "{got:?}");
    assert!(start.elapsed() < Duration::from_secs(5));
    drop(s);
    // Trickling: a byte every 100 ms keeps every single read short, not the session.
    let (addr, t) = responder(key(), session, |ch| ch.err());
    let mut s = TcpStream::connect(addr).unwrap();
    let start = Instant::now();
    let writer = thread::spawn(move || {
        for _ in 0..50 {
            if s.write_all(&[0x01]).is_err() {
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
    });
    let got = t.join().unwrap();
    assert!(matches!(got, Some(ChannelError::Timeout)), "{got:?}");
    assert!(start.elapsed() < Duration::from_secs(3));
    let _ = writer.join();
}

#[test]
fn garbage_instead_of_a_handshake_is_an_authentication_failure() {
    let (addr, t) = responder(key(), SESSION, |ch| ch.err());
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(&[0, 40]).unwrap();
    s.write_all(&[0xab; 40]).unwrap();
    let got = t.join().unwrap();
    assert!(matches!(got, Some(ChannelError::Authentication)), "{got:?}");
}
