//! The messages of a config sync session, JSON inside the encrypted channel.
//!
//! A session is opened by the primary. It sends [`ToSecondary::Status`] with the hash of what
//! it would push; the secondary answers [`ToPrimary::Status`]. When the hashes differ (or the
//! push is forced) the primary sends [`ToSecondary::Push`] and the secondary answers
//! [`ToPrimary::Accepted`] or [`ToPrimary::Refused`]. Anything else ends the session.

use serde::{Deserialize, Serialize};

/// The most a secondary reads of one message: a config of 10,000 rules is about 2 MB.
pub const MAX_PUSH: usize = 16 << 20;

/// The most a primary reads of an answer (a refusal lists at most [`MAX_ERRORS`] errors).
pub const MAX_ANSWER: usize = 1 << 20;

/// A refusal carries at most this many errors.
pub const MAX_ERRORS: usize = 200;

/// From the primary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ToSecondary {
    /// "What do you run?", with the hash of what the primary would push.
    Status { hash: String, hostname: String },
    /// A new config for the pushed sections.
    Push {
        /// Higher than every version the secondary accepted before.
        version: u64,
        /// [`crate::config_sync::content_hash`] of `payload`.
        hash: String,
        /// The config names of the sections carried; each replaces the secondary's.
        sections: Vec<String>,
        /// The sections, TOML.
        payload: String,
        hostname: String,
    },
}

/// From the secondary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ToPrimary {
    /// What the secondary runs: the version and hash of its last accepted push, if any.
    Status {
        version: u64,
        hash: Option<String>,
        hostname: String,
        generation: u64,
    },
    /// The push is in force as `generation`.
    Accepted { version: u64, generation: u64 },
    /// The push was refused whole; the secondary runs what it ran.
    Refused { errors: Vec<String> },
}
