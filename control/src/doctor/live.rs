//! Checks over what the running boxes see: CARP's states, state sync, config sync, clocks.

use serde::{Deserialize, Serialize};

use super::{Findings, Severity};
use crate::api::{CarpReply, CarpStatus, ConfigSyncReply, SyncReply};
use crate::config::Config;

/// The longest a running state sync may go without hearing its peer before the doctor calls it
/// silent: three keepalives (one a second) missed.
pub(crate) const PEER_SILENT_MS: u64 = 3000;

/// How far apart the pair's clocks may be before the doctor says so (logs stop lining up, and
/// config sync versions follow the primary's clock).
pub const CLOCK_SKEW_MS: u64 = 2_000;

/// A running box's state, as its doctor and its peer's doctor read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveState {
    pub hostname: String,
    /// Its clock when the state was read, ms since the epoch.
    pub unix_ms: u64,
    pub carp: CarpReply,
    pub sync: SyncReply,
    pub config_sync: ConfigSyncReply,
}

/// The live checks of this box (`own`, running `config`) against its peer's, when read;
/// `peer_error` says why the peer could not be read.
pub fn check(
    config: &Config,
    own: &LiveState,
    peer: Option<&LiveState>,
    peer_error: Option<&str>,
    f: &mut Findings,
) {
    let ha = config.ha.config_sync.is_some() || config.ha.state_sync.is_some();
    if config.ha.config_sync.is_none() && ha {
        f.add(
            "peer-not-read",
            Severity::Info,
            "ha.config_sync",
            "without config sync the doctor cannot read the peer: only this box's side was checked",
            "set up [ha.config_sync] on both boxes, or run tandemctl doctor on the peer too",
        );
    }
    if peer_error == Some(crate::config_sync::service::UNKNOWN_PEER) {
        f.add(
            "peer-unknown",
            Severity::Info,
            "ha.state_sync.peer",
            "the peer's address is not known until it pushes (state sync is multicast): it was not checked",
            "set ha.state_sync.peer, or run tandemctl doctor on the primary",
        );
    } else if let Some(e) = peer_error.filter(|_| ha) {
        f.add(
            "peer-unreachable",
            Severity::Error,
            "ha.config_sync",
            format!("the peer cannot be read ({e}): if it is down, this box has no backup"),
            "start tandemd on the peer, check the sync link and the sync interface's rules",
        );
    }
    let has_vips = !own.carp.vips.is_empty();
    if has_vips && !own.carp.enabled {
        f.add(
            "carp-disabled",
            Severity::Error,
            "carp",
            "CARP is disabled on this box: it holds no VIP and takes none if its peer fails",
            "tandemctl carp enable",
        );
    } else if own.carp.maintenance {
        f.add(
            "maintenance",
            Severity::Warning,
            "carp",
            "this box is in CARP maintenance mode: it advertises the highest skew, so its peer \
             holds the VIPs; it takes them only if the peer fails",
            "tandemctl maintenance off",
        );
    } else if own.carp.demotion > 0 {
        f.add(
            "box-demoted",
            Severity::Warning,
            "carp",
            format!(
                "this box is demoted by {} (a CARP interface without link, state sync's bulk update, or send errors): while demoted it loses every election, and takes the VIPs only if its peer fails",
                own.carp.demotion
            ),
            "see tandemctl carp and the log for the cause",
        );
    }
    if config.ha.state_sync.as_ref().is_some_and(|s| s.enabled) {
        if !own.sync.running {
            f.add(
                "state-sync-not-running",
                Severity::Error,
                "ha.state_sync",
                format!(
                    "state sync is not running ({}): no state reaches the peer",
                    own.sync.bulk_status
                ),
                "see the log; restart tandemd",
            );
        } else if own.sync.bulk_status.contains("pending")
            || own.sync.bulk_status.contains("waiting")
        {
            f.add(
                "state-sync-bulk-pending",
                Severity::Warning,
                "ha.state_sync",
                format!("the bulk update from the peer is not done ({}): this box holds back from the VIPs", own.sync.bulk_status),
                "wait for it; if it stays, check the peer and the sync link",
            );
        }
        // Each box sends at least a keepalive a second: three missed, the peer, its tandemd
        // or the sync link (at least from the peer to us) is down. Counted from the sync
        // thread's start while never heard, so that a doctor run just after a start says
        // nothing.
        if own.sync.running && own.sync.peer_silent_ms > PEER_SILENT_MS {
            let since = match own.sync.peer_heard_ms {
                Some(ms) => format!("not heard from the state sync peer for {} s", ms / 1000),
                None => format!(
                    "the state sync peer was never heard ({} s since state sync started)",
                    own.sync.peer_silent_ms / 1000
                ),
            };
            f.add(
                "state-sync-peer-silent",
                Severity::Error,
                "ha.state_sync",
                format!("{since}: the peer, its tandemd or the sync link is down (at least from the peer to this box); the peer's states do not reach this box, and likely not this box's the peer"),
                "check that the peer runs tandemd, the sync link (tandemctl sync on both boxes), the pfsync pass rules on both, and that each box's ha.state_sync.peer is the other's sync address",
            );
        }
        if own.sync.auth_failed > 0 {
            f.add(
                "state-sync-auth-failures",
                Severity::Error,
                "ha.state_sync.key",
                format!(
                    "{} sync datagrams failed authentication: the keys differ, or someone forges datagrams",
                    own.sync.auth_failed
                ),
                "use the same ha.state_sync.key on both boxes",
            );
        }
    }
    if config.ha.config_sync.is_some() && own.config_sync.role != "off" && !own.config_sync.in_sync
    {
        let why = own
            .config_sync
            .last_error
            .clone()
            .or_else(|| {
                own.config_sync
                    .last_push
                    .as_ref()
                    .and_then(|p| p.error.clone())
            })
            .unwrap_or_else(|| "the peer has not reported the same content".into());
        f.add(
            "config-not-in-sync",
            Severity::Error,
            "ha.config_sync",
            format!(
                "the boxes do not run the same synced config: {}",
                why.lines().next().unwrap_or("")
            ),
            "tandemctl config sync (on the primary: config sync now)",
        );
    }
    let Some(peer) = peer else { return };
    let who = &peer.hostname;
    if has_vips && !peer.carp.enabled {
        f.add(
            "peer-carp-disabled",
            Severity::Error,
            "carp",
            format!(
                "CARP is disabled on the peer ({who}): if this box fails, nobody takes the VIPs"
            ),
            "tandemctl carp enable, on the peer",
        );
    } else if has_vips && peer.carp.maintenance {
        f.add(
            "peer-maintenance",
            Severity::Warning,
            "carp",
            format!(
                "the peer ({who}) is in CARP maintenance mode: this box holds the VIPs, the \
                 peer takes them only if this box fails"
            ),
            "tandemctl maintenance off, on the peer, when its work is done",
        );
    } else if has_vips && peer.carp.demotion > 0 {
        f.add(
            "peer-demoted",
            Severity::Warning,
            "carp",
            format!(
                "the peer ({who}) is demoted by {}: while demoted it loses every election, and takes the VIPs only if this box fails",
                peer.carp.demotion
            ),
            "see tandemctl carp and the log on the peer",
        );
    }
    for mine in &own.carp.vips {
        let Some(theirs) = peer
            .carp
            .vips
            .iter()
            .find(|v| v.vhid == mine.vhid && v.interface == mine.interface)
        else {
            continue;
        };
        let both = |s: CarpStatus| mine.status == s && theirs.status == s;
        if both(CarpStatus::Master) {
            f.add(
                "carp-both-master",
                Severity::Error,
                format!("carp.{}@{}", mine.interface, mine.vhid),
                format!(
                    "both boxes are MASTER of vhid {} ({}): the switch flaps between them",
                    mine.vhid, mine.vip
                ),
                "check that each box hears the other's adverts (rules, password, the link)",
            );
        } else if both(CarpStatus::Backup) {
            f.add(
                "carp-both-backup",
                Severity::Error,
                format!("carp.{}@{}", mine.interface, mine.vhid),
                format!(
                    "both boxes are BACKUP of vhid {} ({}): nobody answers for it",
                    mine.vhid, mine.vip
                ),
                "check demotion and maintenance on both boxes (tandemctl carp)",
            );
        }
    }
    let skew = own.unix_ms.abs_diff(peer.unix_ms);
    if skew > CLOCK_SKEW_MS {
        f.add(
            "clock-skew",
            Severity::Warning,
            "system",
            format!(
                "the boxes' clocks are {} ms apart: their logs do not line up",
                skew
            ),
            "run NTP on both boxes",
        );
    }
}
