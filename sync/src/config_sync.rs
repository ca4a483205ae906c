//! The config sync channel: XML-RPC's role, carried over TCP on the sync link, authenticated both
//! ways and encrypted. It carries opaque messages; what they mean is the control plane's business
//! (`tandem_control::config_sync`).
//!
//! # Security
//!
//! The channel is the Noise protocol `Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s` (the `snow` crate):
//! both sides hold a 32-byte pre-shared key derived from the configured user name and password
//! ([`ChannelKey::derive`], PBKDF2-HMAC-SHA256), and each session runs a fresh X25519 exchange.
//!
//! - **Mutual authentication.** The initiator's first message is encrypted under the PSK: a
//!   responder without the same credentials cannot read it (it fails with
//!   [`ChannelError::Authentication`]), and the initiator cannot read the responder's answer
//!   unless the responder holds them too.
//! - **Confidentiality and integrity.** Everything after the handshake is ChaCha20-Poly1305 under
//!   keys from the ephemeral exchange (forward secrecy: a password learnt later does not open a
//!   captured session).
//! - **No replay.** The responder's ephemeral key is new in every session, so a session captured
//!   on the link and replayed later fails at the first transport message: the replayed
//!   ciphertext was made for another key.
//! - **Version binding.** The prologue [`PROLOGUE`] names the protocol version: a peer speaking
//!   another version fails the handshake instead of misreading messages.
//!
//! A password is only as strong as it is long: the handshake lets someone who captured one try
//! passwords offline, which the PBKDF2 cost ([`KDF_ROUNDS`]) slows but cannot stop. Use a long
//! random password, as for the state sync key.
//!
//! # Framing
//!
//! On the wire every Noise message is a 2-byte big-endian length and the message (at most
//! 65535 bytes). A channel message ([`Channel::send`]) is a 4-byte big-endian length, then the
//! bytes, encrypted in as many Noise messages as it needs. Receiving is bounded twice: a
//! message longer than the reader's limit is refused before it is read, and every read of a
//! session runs against one deadline, so a slow or silent peer costs a bounded time.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// The Noise protocol of the channel.
pub const NOISE_PARAMS: &str = "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2s";

/// Bound into the handshake: peers of another protocol version fail the handshake.
pub const PROLOGUE: &[u8] = b"tandem config sync v1";

/// PBKDF2 rounds of [`ChannelKey::derive`] (OWASP's 2023 figure for PBKDF2-HMAC-SHA256 is
/// 600000; the key is derived once per config load, so the cost is paid rarely).
pub const KDF_ROUNDS: u32 = 100_000;

/// The most a channel message may hold, for readers that ask for no smaller limit: a config of
/// 10,000 rules is about 2 MB of TOML.
pub const MAX_MESSAGE: usize = 16 << 20;

/// What a responder sends before it closes a session whose handshake it could not read: an
/// empty frame.
const REFUSED: [u8; 2] = [0, 0];
const EMPTY_FRAME: &str = "empty frame";

/// The largest Noise message and its authentication tag.
const NOISE_MAX: usize = 65_535;
const TAG: usize = 16;
/// The most plaintext one Noise message carries.
const CHUNK: usize = NOISE_MAX - TAG;

/// Why a channel failed.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The TCP connection failed or was closed.
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    /// The session's deadline passed.
    #[error("timed out")]
    Timeout,
    /// The peer does not hold the same user name and password (or speaks another version).
    #[error("authentication failed: the peer does not hold the same username and password")]
    Authentication,
    /// A message would exceed the reader's limit.
    #[error("message of {len} bytes refused (limit {limit})")]
    TooLarge { len: usize, limit: usize },
    /// A message that is not the protocol's (bad length, undecryptable after the handshake).
    #[error("protocol error: {0}")]
    Protocol(&'static str),
}

/// The pre-shared key of a cluster's config sync, derived from its credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct ChannelKey([u8; 32]);

impl std::fmt::Debug for ChannelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChannelKey(..)")
    }
}

impl ChannelKey {
    /// PBKDF2-HMAC-SHA256 of the password, salted with the protocol name and the user name (so
    /// one password under two user names gives two keys), [`KDF_ROUNDS`] rounds.
    pub fn derive(username: &str, password: &str) -> ChannelKey {
        let mut salt = PROLOGUE.to_vec();
        salt.push(0);
        salt.extend_from_slice(username.as_bytes());
        let mut key = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<sha2::Sha256>(password.as_bytes(), &salt, KDF_ROUNDS, &mut key);
        ChannelKey(key)
    }
}

/// One authenticated, encrypted session over TCP.
#[derive(Debug)]
pub struct Channel {
    stream: TcpStream,
    noise: snow::TransportState,
    deadline: Instant,
    peer: SocketAddr,
}

impl Channel {
    /// Connects to `addr` and runs the handshake as the initiator. `timeout` bounds the connect;
    /// `session` bounds everything from then on (handshake, sends and receives).
    pub fn connect(
        addr: SocketAddr,
        key: &ChannelKey,
        timeout: Duration,
        session: Duration,
    ) -> Result<Channel, ChannelError> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        let deadline = Instant::now() + session;
        let mut hs = builder(key)?
            .build_initiator()
            .map_err(|_| ChannelError::Protocol("noise setup"))?;
        let mut io = Framed {
            stream: &stream,
            deadline,
        };
        let mut buf = vec![0u8; NOISE_MAX];
        let n = hs
            .write_message(&[], &mut buf)
            .map_err(|_| ChannelError::Protocol("noise handshake"))?;
        io.write_frame(&buf[..n])?;
        let reply = match io.read_frame() {
            Err(ChannelError::Protocol(EMPTY_FRAME)) => return Err(ChannelError::Authentication),
            r => r?,
        };
        hs.read_message(&reply, &mut buf)
            .map_err(|_| ChannelError::Authentication)?;
        let noise = hs
            .into_transport_mode()
            .map_err(|_| ChannelError::Protocol("noise handshake"))?;
        Ok(Channel {
            stream,
            noise,
            deadline,
            peer: addr,
        })
    }

    /// Runs the handshake as the responder on an accepted connection: `handshake` bounds it
    /// (short: a client that never authenticates holds nothing for long), `session` everything
    /// after.
    pub fn accept(
        stream: TcpStream,
        key: &ChannelKey,
        handshake: Duration,
        session: Duration,
    ) -> Result<Channel, ChannelError> {
        let peer = stream.peer_addr()?;
        let deadline = Instant::now() + handshake;
        let mut hs = builder(key)?
            .build_responder()
            .map_err(|_| ChannelError::Protocol("noise setup"))?;
        let mut io = Framed {
            stream: &stream,
            deadline,
        };
        let mut buf = vec![0u8; NOISE_MAX];
        let first = io.read_frame()?;
        if hs.read_message(&first, &mut buf).is_err() {
            // An empty frame tells an initiator with other credentials why the session ends
            // (unauthenticated, so it is a hint for the operator, never acted upon).
            let _ = io.write_raw(&REFUSED);
            return Err(ChannelError::Authentication);
        }
        let n = hs
            .write_message(&[], &mut buf)
            .map_err(|_| ChannelError::Protocol("noise handshake"))?;
        io.write_frame(&buf[..n])?;
        let noise = hs
            .into_transport_mode()
            .map_err(|_| ChannelError::Protocol("noise handshake"))?;
        Ok(Channel {
            stream,
            noise,
            deadline: Instant::now() + session,
            peer,
        })
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Sends one message, encrypted, in as many Noise messages as it takes.
    pub fn send(&mut self, msg: &[u8]) -> Result<(), ChannelError> {
        let len = u32::try_from(msg.len()).map_err(|_| ChannelError::TooLarge {
            len: msg.len(),
            limit: u32::MAX as usize,
        })?;
        let mut plain = Vec::with_capacity(msg.len() + 4);
        plain.extend_from_slice(&len.to_be_bytes());
        plain.extend_from_slice(msg);
        let mut io = Framed {
            stream: &self.stream,
            deadline: self.deadline,
        };
        let mut buf = vec![0u8; NOISE_MAX];
        for chunk in plain.chunks(CHUNK) {
            let n = self
                .noise
                .write_message(chunk, &mut buf)
                .map_err(|_| ChannelError::Protocol("encrypt"))?;
            io.write_frame(&buf[..n])?;
        }
        Ok(())
    }

    /// Receives one message of at most `limit` bytes.
    pub fn recv(&mut self, limit: usize) -> Result<Vec<u8>, ChannelError> {
        let mut io = Framed {
            stream: &self.stream,
            deadline: self.deadline,
        };
        let mut buf = vec![0u8; NOISE_MAX];
        let mut decrypt = |frame: &[u8], buf: &mut [u8]| {
            self.noise
                .read_message(frame, buf)
                .map_err(|_| ChannelError::Protocol("a message that does not decrypt"))
        };
        let n = decrypt(&io.read_frame()?, &mut buf)?;
        let Some((head, rest)) = buf[..n].split_first_chunk::<4>() else {
            return Err(ChannelError::Protocol("message without a length"));
        };
        let len = u32::from_be_bytes(*head) as usize;
        if len > limit {
            return Err(ChannelError::TooLarge { len, limit });
        }
        let mut msg = Vec::with_capacity(len);
        msg.extend_from_slice(rest);
        while msg.len() < len {
            let n = decrypt(&io.read_frame()?, &mut buf)?;
            msg.extend_from_slice(&buf[..n]);
        }
        if msg.len() != len {
            return Err(ChannelError::Protocol("message longer than its length"));
        }
        Ok(msg)
    }
}

fn builder(key: &ChannelKey) -> Result<snow::Builder<'_>, ChannelError> {
    let params = NOISE_PARAMS
        .parse()
        .map_err(|_| ChannelError::Protocol("noise parameters"))?;
    snow::Builder::new(params)
        .prologue(PROLOGUE)
        .and_then(|b| b.psk(0, &key.0))
        .map_err(|_| ChannelError::Protocol("noise setup"))
}

/// Length-prefixed frames on a stream, every read and write against one deadline.
struct Framed<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
}

impl Framed<'_> {
    fn write_frame(&mut self, frame: &[u8]) -> Result<(), ChannelError> {
        let len = u16::try_from(frame.len()).map_err(|_| ChannelError::Protocol("frame size"))?;
        self.arm(false)?;
        let mut s = self.stream;
        let mut out = Vec::with_capacity(frame.len() + 2);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(frame);
        s.write_all(&out).map_err(|e| self.io_error(e))
    }

    fn write_raw(&mut self, bytes: &[u8]) -> Result<(), ChannelError> {
        self.arm(false)?;
        let mut s = self.stream;
        s.write_all(bytes).map_err(|e| self.io_error(e))
    }

    fn read_frame(&mut self) -> Result<Vec<u8>, ChannelError> {
        let mut head = [0u8; 2];
        self.read_exact(&mut head)?;
        let len = usize::from(u16::from_be_bytes(head));
        if len == 0 {
            return Err(ChannelError::Protocol(EMPTY_FRAME));
        }
        let mut frame = vec![0u8; len];
        self.read_exact(&mut frame)?;
        Ok(frame)
    }

    /// `read_exact` whose every read waits at most until the deadline: a peer that trickles a
    /// byte at a time still runs out of time.
    fn read_exact(&mut self, mut buf: &mut [u8]) -> Result<(), ChannelError> {
        while !buf.is_empty() {
            self.arm(true)?;
            let mut s = self.stream;
            match s.read(buf) {
                Ok(0) => {
                    return Err(ChannelError::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "closed by the peer",
                    )))
                }
                Ok(n) => buf = &mut buf[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_error(e)),
            }
        }
        Ok(())
    }

    /// Sets the socket's timeout to what is left of the session.
    fn arm(&self, read: bool) -> Result<(), ChannelError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ChannelError::Timeout);
        }
        if read {
            self.stream.set_read_timeout(Some(left))?;
        } else {
            self.stream.set_write_timeout(Some(left))?;
        }
        Ok(())
    }

    fn io_error(&self, e: io::Error) -> ChannelError {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ChannelError::Timeout,
            _ => ChannelError::Io(e),
        }
    }
}

#[cfg(test)]
mod tests;
