//! Config sync, XML-RPC's role: the primary's configuration replicated to the secondary.
//!
//! The box whose `[ha.config_sync]` has `sync_to` is the primary: after every successful apply
//! (`tandemctl config apply`, SIGHUP), on `tandemctl config sync now`, and every
//! [`service::CHECK_INTERVAL`] when the content hashes differ, it pushes the selected sections
//! to its peer over [`tandem_sync::config_sync::Channel`] (TCP on the sync link, mutually
//! authenticated from the shared user name and password, encrypted). A box without `sync_to` is
//! a secondary: it accepts pushes and never pushes.
//!
//! - [`payload`]: what travels. The seed's "Select options to sync" map to TOML sections
//!   ([`home`]); items marked `no_sync` stay home; sections tandem has no feature for travel as
//!   "nothing to sync"; per-box sections (system, interfaces, the default gateway, ha) never
//!   travel.
//! - [`merge`]: the secondary's side. Each pushed section replaces its own wholesale, but for
//!   the items its own file marks `no_sync`, and its CARP VIPs keep their own skews (never
//!   outranking the primary's).
//! - [`store`]: what the secondary accepted, persisted so that it survives a restart while the
//!   primary is dead.
//! - [`protocol`]: the messages of a session.
//! - [`service`]: the threads: the primary's pusher, the secondary's listener, the status.
//! - [`daemon`]: the glue in `tandemd`: the role's service, the config in force on a secondary,
//!   applying a push.
//!
//! The secondary applies a push like `config apply`: its own file and the pushed sections are
//! merged, validated in full, compiled and swapped in as one generation, or refused whole with
//! every field-path error (shown and logged on the primary). States survive, as they survive any
//! apply.

pub mod daemon;
pub mod merge;
pub mod payload;
pub mod protocol;
pub mod service;
pub mod store;

use std::net::SocketAddrV4;

use tandem_sync::config_sync::ChannelError;

use crate::config::SyncSection;
use protocol::ToPrimary;

/// Why config sync could not start, a session with the peer failed, or a request about it was
/// refused. The Display form is what the log, `tandemctl config sync` (`last_error`) and the
/// doctor show.
#[derive(Debug, thiserror::Error)]
pub enum ConfigSyncError {
    /// `[ha.config_sync]` is set but no interface has the sync role.
    #[error("ha.config_sync: no sync interface to talk to the peer on")]
    NoSyncLink,
    /// The listener could not bind (the address is not this box's, the port is taken).
    #[error("config sync: cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddrV4,
        source: std::io::Error,
    },
    /// The bound listener could not be made non-blocking.
    #[error("config sync: {0}")]
    Nonblocking(#[source] std::io::Error),
    /// The primary has nowhere to push.
    #[error("config sync: a primary needs sync_to")]
    NoSyncTo,
    /// The pusher or the listener thread could not be spawned.
    #[error("cannot start the config sync thread: {0}")]
    Thread(#[source] std::io::Error),
    /// `config.sync.now` on a box without config sync.
    #[error("config sync is not configured ([ha.config_sync])")]
    NotConfigured,
    /// `config.sync.now` on the secondary, which never pushes.
    #[error("this box is the config sync secondary: it accepts pushes and never pushes (run this on the primary)")]
    Secondary,
    /// Nobody to inspect: the peer's address is not known yet.
    #[error("{}", service::UNKNOWN_PEER)]
    UnknownPeer,
    /// The session could not be opened (connect, handshake).
    #[error("{peer}: cannot open a session: {source}")]
    Open {
        peer: SocketAddrV4,
        source: ChannelError,
    },
    /// An exchange of the session (the status, an inspection) failed.
    #[error("{peer}: {source}")]
    Exchange {
        peer: SocketAddrV4,
        source: ExchangeError,
    },
    /// The push itself failed before an answer (recorded as the push `failed`).
    #[error("{peer}: push version {version}: {source}")]
    Push {
        peer: SocketAddrV4,
        version: u64,
        source: ExchangeError,
    },
    /// The peer answered with a message that does not answer what was asked.
    #[error("{peer}: answered {asked} with {answer:?}")]
    Unexpected {
        peer: SocketAddrV4,
        /// What was asked: `a status`, `a push`, `an inspection`.
        asked: &'static str,
        answer: Box<ToPrimary>,
    },
}

impl ConfigSyncError {
    /// The peer at `peer` answered `asked` with `answer`, which does not answer it.
    fn unexpected(peer: SocketAddrV4, asked: &'static str, answer: ToPrimary) -> Self {
        let answer = Box::new(answer);
        ConfigSyncError::Unexpected {
            peer,
            asked,
            answer,
        }
    }
}

/// Why one message exchange of a session failed; [`ConfigSyncError`] adds the peer.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// Our message did not serialise.
    #[error("{0}")]
    Encode(#[source] serde_json::Error),
    /// The channel broke, timed out or refused a message.
    #[error("{0}")]
    Channel(#[from] ChannelError),
    /// The answer is not a message of the protocol.
    #[error("unreadable answer: {0}")]
    Unreadable(#[source] serde_json::Error),
}

/// Where a section lives in the TOML file, as a key path; `None` for the sections of features
/// tandem does not have ("nothing to sync").
pub fn home(section: SyncSection) -> Option<&'static [&'static str]> {
    Some(match section {
        SyncSection::Rules => &["filter", "rules"],
        SyncSection::Aliases => &["aliases"],
        SyncSection::Nat => &["nat"],
        SyncSection::VirtualIps => &["virtual_ips"],
        SyncSection::StaticRoutes => &["routes", "static"],
        SyncSection::Dhcp => &["dhcp"],
        _ => return None,
    })
}

/// The hash that names a payload: SHA-256 of its text, in hex.
pub fn content_hash(text: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A hash as people read it: its first 12 digits.
pub fn short_hash(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// Whether an item of `section`'s list stays on its box: marked `no_sync`, or a VIP that is not
/// CARP. An IP alias or proxy-ARP address is one box's own: pushed, both boxes would answer ARP
/// for it (pfSense's sync carries CARP VIPs, and IP aliases only when stacked on one).
pub(crate) fn stays_home(section: SyncSection, item: &toml::Value) -> bool {
    is_no_sync(item)
        || (section == SyncSection::VirtualIps
            && item.get("type").and_then(toml::Value::as_str) != Some("carp"))
}

/// Whether a config item (a TOML table) is marked to stay on its box: `no_sync = true`
/// (`nosync` is accepted too, pfSense's spelling).
pub(crate) fn is_no_sync(item: &toml::Value) -> bool {
    ["no_sync", "nosync"]
        .iter()
        .any(|k| item.get(k).and_then(toml::Value::as_bool) == Some(true))
}

/// The value at `path` in `table`.
pub(crate) fn get<'a>(table: &'a toml::Table, path: &[&str]) -> Option<&'a toml::Value> {
    let (last, parents) = path.split_last()?;
    let mut t = table;
    for k in parents {
        t = t.get(*k)?.as_table()?;
    }
    t.get(*last)
}

/// Sets the value at `path`, creating the parent tables; a parent that is not a table is
/// replaced (validation reports what that breaks).
pub(crate) fn set(table: &mut toml::Table, path: &[&str], value: toml::Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut t = table;
    for k in parents {
        let entry = t
            .entry((*k).to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let Some(next) = entry.as_table_mut() else {
            return;
        };
        t = next;
    }
    t.insert((*last).to_string(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The errors read as the strings they replaced (the status, the log and the doctor show
    /// them; the doctor recognises an unknown peer by its text).
    #[test]
    fn errors_keep_their_text() {
        let peer: SocketAddrV4 = "192.168.1.2:8443".parse().unwrap();
        assert_eq!(
            ConfigSyncError::UnknownPeer.to_string(),
            service::UNKNOWN_PEER
        );
        let open = ConfigSyncError::Open {
            peer,
            source: ChannelError::Timeout,
        };
        assert_eq!(
            open.to_string(),
            format!("{peer}: cannot open a session: timed out")
        );
        let answer = ToPrimary::Accepted {
            version: 1,
            generation: 2,
        };
        let text = format!("{peer}: answered a status with {answer:?}");
        let e = ConfigSyncError::unexpected(peer, "a status", answer);
        assert_eq!(e.to_string(), text);
        let push = ConfigSyncError::Push {
            peer,
            version: 7,
            source: ExchangeError::Channel(ChannelError::Authentication),
        };
        assert_eq!(
            push.to_string(),
            format!("{peer}: push version 7: {}", ChannelError::Authentication)
        );
    }
}
