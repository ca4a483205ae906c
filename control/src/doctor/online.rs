//! `tandemctl doctor` on a running box: this box's config in force and live state, and its
//! peer's, read over the config sync channel by a thread of its own (the control loop never
//! waits on the network: the request answers "pending" until the peer has answered).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, TryRecvError};
use serde::{Deserialize, Serialize};

use super::live::LiveState;
use super::{examine, BoxView, Report};
use crate::config;
use crate::config_sync::service::Inspection;
use crate::config_sync::ConfigSyncError;
use crate::daemon::Daemon;

/// How long an inspection of the peer may take before the doctor reports it unreachable.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// `doctor`: `pending` until the peer answered (or could not); then the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DoctorReply {
    pub pending: bool,
    /// The peer's hostname, when it answered.
    pub peer: Option<String>,
    pub report: Option<Report>,
}

/// Why the doctor has no view of the peer; the report shows it as the peer's error.
#[derive(Debug, thiserror::Error)]
pub enum OnlineError {
    /// The inspection failed (no session, an unknown peer...).
    #[error(transparent)]
    Inspect(#[from] ConfigSyncError),
    /// The peer did not answer within [`PEER_TIMEOUT`].
    #[error("no answer in {} s", PEER_TIMEOUT.as_secs())]
    NoAnswer,
    /// The peer's config in force is not valid for this box's tandem (another version?).
    #[error("its config does not parse here: {0}")]
    PeerConfig(#[source] config::ConfigErrors),
}

/// A doctor run waiting for the peer.
#[derive(Debug)]
pub struct Pending {
    answer: Receiver<Result<Inspection, ConfigSyncError>>,
    since: Instant,
}

impl Daemon {
    /// This box's live state, as the doctors read it.
    pub(crate) fn live_state(&self) -> LiveState {
        LiveState {
            hostname: self.config.system.hostname.clone(),
            unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            carp: self.carp_reply(),
            sync: self
                .sync
                .as_ref()
                .and_then(|s| s.snapshot().reply)
                .unwrap_or_else(crate::api::SyncReply::not_running),
            config_sync: self.config_sync_reply(),
        }
    }

    /// What the peer's doctor reads of this box: refreshed by the control loop.
    pub(crate) fn publish_inspection(&mut self) {
        let Some(cs) = &self.config_sync else { return };
        let now = Instant::now();
        if self
            .inspection_published
            .is_some_and(|t| now.duration_since(t) < Duration::from_millis(500))
        {
            return;
        }
        self.inspection_published = Some(now);
        cs.publish(Inspection {
            // Shared with the generation in force, not copied.
            config: self.config_text.clone(),
            live: self.live_state(),
        });
    }

    /// One step of `doctor`: starts reading the peer, or reports once it has answered.
    pub(crate) fn doctor_step(&mut self) -> DoctorReply {
        let pending = match self.doctor_pending.take() {
            Some(p) => p,
            None => match &self.config_sync {
                Some(cs) => Pending {
                    answer: cs.inspect_peer(),
                    since: Instant::now(),
                },
                None => return self.doctor_report(None),
            },
        };
        match pending.answer.try_recv() {
            Ok(answer) => self.doctor_report(Some(answer.map_err(OnlineError::from))),
            Err(TryRecvError::Empty) if pending.since.elapsed() < PEER_TIMEOUT => {
                self.doctor_pending = Some(pending);
                DoctorReply {
                    pending: true,
                    peer: None,
                    report: None,
                }
            }
            Err(_) => self.doctor_report(Some(Err(OnlineError::NoAnswer))),
        }
    }

    /// The report over this box and the peer's answer (`None`: no config sync to read it by).
    fn doctor_report(&self, peer: Option<Result<Inspection, OnlineError>>) -> DoctorReply {
        let own_live = self.live_state();
        let own = BoxView {
            config: &self.config,
            live: Some(&own_live),
            text: Some(&self.file_text),
        };
        let (peer_config, peer_text, peer_live, peer_error) = match peer {
            None => (None, None, None, None),
            Some(Err(e)) => (None, None, None, Some(e)),
            // On a config sync secondary the text is the merged one, no file: no lines.
            Some(Ok(i)) => match config::parse_generated("peer's config", &i.config) {
                Ok(c) => (Some(c), Some(i.config), Some(i.live), None),
                Err(e) => (None, None, None, Some(OnlineError::PeerConfig(e))),
            },
        };
        // The report quotes the error as text (and recognises an unknown peer by it).
        let peer_error = peer_error.map(|e| e.to_string());
        let view = peer_config.as_ref().map(|c| BoxView {
            config: c,
            live: peer_live.as_ref(),
            text: peer_text.as_deref().map(String::as_str),
        });
        let report = examine(&own, view.as_ref(), peer_error.as_deref());
        DoctorReply {
            pending: false,
            peer: peer_live.map(|l| l.hostname),
            report: Some(report),
        }
    }
}
