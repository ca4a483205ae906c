//! Config sync inside `tandemd`: starting the service for the box's role, the config in force on
//! a secondary (its own file merged with the push it accepted), and applying a push.

use std::net::SocketAddrV4;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use tandem_sync::config_sync::ChannelKey;

use super::merge::merge;
use super::payload;
use super::service::{now_unix, ApplyRequest, ConfigSync, PushRecord, Setup, Status, SyncRules};
use super::store::{self, StoredPush};
use super::{short_hash, ConfigSyncError};
use crate::api;
use crate::config::{self, Config, SyncSection};
use crate::daemon::Daemon;

/// The config in force on a secondary that accepted `push`: its own file `file_text` with the
/// pushed sections merged in, validated. Errors name the push and every field.
pub fn effective(file_text: &str, push: &StoredPush) -> Result<(Config, String), Vec<String>> {
    let sections = push
        .sections
        .iter()
        .map(|n| SyncSection::parse(n))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| vec![e])?;
    let merged = merge(file_text, &push.payload, &sections).map_err(|e| vec![e.to_string()])?;
    for note in &merged.notes {
        tracing::warn!("config sync: {note}");
    }
    let label = format!("config pushed by {} (version {})", push.from, push.version);
    let config = config::parse_generated(&label, &merged.text).map_err(|e| e.messages())?;
    Ok((config, merged.text))
}

/// Whether `config` makes this box a config sync secondary.
pub fn is_secondary(config: &Config) -> bool {
    config.ha.config_sync.as_ref().is_some_and(|c| !c.pushes())
}

/// The push a secondary accepted before, from its state dir. A file that cannot be read is
/// logged and ignored: the box runs its own file, and says so.
pub fn stored(config: &Config, state_dir: Option<&Path>) -> Option<StoredPush> {
    if !is_secondary(config) {
        return None;
    }
    match store::load(state_dir?) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(
                "config sync: the stored push is unreadable, running the file alone: {e}"
            );
            None
        }
    }
}

/// The sync interface's rules, for the secondary's listener.
pub fn sync_rules(ruleset: Arc<tandem_dataplane::filter::Ruleset>, in_if: u8) -> SyncRules {
    SyncRules { ruleset, in_if }
}

/// Starts config sync for the box's role, if `[ha.config_sync]` is set.
pub fn start(
    config: &Config,
    pushed: Option<&StoredPush>,
    rules: Arc<ArcSwap<SyncRules>>,
) -> Result<Option<ConfigSync>, ConfigSyncError> {
    let Some(cs) = &config.ha.config_sync else {
        return Ok(None);
    };
    let key = ChannelKey::derive(&cs.username, &cs.password);
    let link = config.sync_link().ok_or(ConfigSyncError::NoSyncLink)?;
    ConfigSync::start(
        Setup {
            listen: SocketAddrV4::new(link.ip(), cs.port),
            peer: cs
                .sync_to
                .or_else(|| config.ha.state_sync.as_ref().and_then(|s| s.peer)),
            pushes: cs.pushes(),
            key,
            hostname: config.system.hostname.clone(),
            rules,
        },
        pushed.map_or(0, |p| p.version),
        pushed.map(|p| p.hash.clone()),
    )
    .map(Some)
}

/// Seconds without the peer after which `status` qualifies "in sync": three of config sync's
/// 10 s checks missed.
const PEER_STALE_S: u64 = 30;

impl Daemon {
    /// The primary: hands the pusher what its config pushes now (checked against the secondary
    /// at once; pushed when it differs, or always with `force`).
    pub(crate) fn offer_config(&self, force: bool) {
        let (Some(service), Some(cs)) = (&self.config_sync, &self.config.ha.config_sync) else {
            return;
        };
        if !service.is_primary() {
            return;
        }
        match payload::build(&self.file_text, &cs.sections) {
            Ok(p) => service.offer(p, force),
            Err(e) => tracing::error!("{e}"),
        }
    }

    /// The secondary: applies the pushes its sessions hand over.
    pub(crate) fn run_config_sync(&mut self) {
        self.publish_inspection();
        let Some(rx) = self.config_sync.as_ref().and_then(|s| s.applies.clone()) else {
            return;
        };
        for req in rx.try_iter() {
            let result = self.apply_push(&req);
            let _ = req.reply.send(result);
        }
    }

    /// Merges, validates, persists and swaps in one push, or changes nothing.
    fn apply_push(&mut self, req: &ApplyRequest) -> Result<u64, Vec<String>> {
        let push = &req.push;
        if Instant::now() > req.deadline {
            return Err(vec![
                "the push waited too long for the daemon and was not applied".into(),
            ]);
        }
        // Sessions may race: the version in force decides, here, one push at a time.
        let held = self.pushed.as_ref().map_or(0, |p| p.version);
        if push.version <= held {
            return Err(vec![format!(
                "version {} is not newer than version {held}, in force here",
                push.version
            )]);
        }
        let (config, text) = effective(&self.file_text, push)?;
        let prepared = self.prepare(config).map_err(|e| vec![e.to_string()])?;
        // A push whose sync rules would shut out the primary (or state sync) could never be
        // undone by the next push: refused.
        let lockout = crate::doctor::single::sync_lockout(
            &prepared.config,
            &prepared.compiled.sync,
            req.from,
        );
        if !lockout.is_empty() {
            return Err(lockout);
        }
        if let Some(dir) = &self.state_dir {
            store::save(dir, push).map_err(|e| vec![format!("cannot persist the push: {e}")])?;
        }
        let generation = self.commit(prepared, text);
        self.pushed = Some(push.clone());
        // The status follows what is in force, whatever becomes of the session that asked.
        if let Some(s) = &self.config_sync {
            s.update(|s: &mut Status| {
                s.generation = generation;
                s.version = push.version;
                s.local_hash = Some(push.hash.clone());
                s.peer_hash = Some(push.hash.clone());
                s.last_push = Some(PushRecord {
                    at_unix: now_unix(),
                    version: push.version,
                    result: "accepted",
                    error: None,
                    generation: Some(generation),
                    hash: push.hash.clone(),
                });
            });
            s.counters
                .applied
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(generation)
    }
}

impl Daemon {
    /// `config.show`: the config in force, secrets masked, and the push it holds.
    pub(crate) fn config_show(&self) -> api::ConfigShowReply {
        let from_peer = self.pushed.as_ref().map(|p| api::PushInfo {
            sections: p.sections.clone(),
            version: p.version,
            hash: p.hash.clone(),
            from: p.from.clone(),
            received_unix: p.received_unix,
        });
        let mut text = config::mask_secrets(&self.config_text);
        if let Some(p) = &from_peer {
            text = format!(
                "# sections {} pushed by {} (version {}, {}), merged into {}\n{text}",
                p.sections.join(", "),
                p.from,
                p.version,
                short_hash(&p.hash),
                self.config_path.display()
            );
        }
        api::ConfigShowReply {
            path: self.config_path.display().to_string(),
            text,
            from_peer,
        }
    }

    /// `config.sync`.
    pub(crate) fn config_sync_reply(&self) -> api::ConfigSyncReply {
        let Some(service) = &self.config_sync else {
            return api::ConfigSyncReply {
                role: "off".into(),
                peer: None,
                port: 0,
                sections: vec![],
                nothing_to_sync: vec![],
                local_hash: None,
                peer_hash: None,
                in_sync: false,
                version: 0,
                peer_hostname: None,
                peer_seen_s: None,
                last_push: None,
                last_error: None,
                sessions: 0,
                forced_sessions: 0,
            };
        };
        let mut s = service.snapshot();
        if s.role == "secondary" {
            // What the secondary runs of each section: the push's, or its own file's.
            if let Some(p) = &self.pushed {
                s.sections.clone_from(&p.sections);
            }
        }
        let now = super::service::now_unix();
        api::ConfigSyncReply {
            role: s.role.to_string(),
            peer: s.peer.map(|p| p.to_string()),
            port: s.port,
            in_sync: s.in_sync(),
            sections: s.sections,
            nothing_to_sync: s.nothing_to_sync,
            local_hash: s.local_hash,
            peer_hash: s.peer_hash,
            version: s.version,
            peer_hostname: s.peer_hostname,
            peer_seen_s: s.peer_seen_unix.map(|t| now.saturating_sub(t)),
            last_push: s.last_push.map(|r| api::PushResult {
                at_unix: r.at_unix,
                version: r.version,
                result: r.result.to_string(),
                error: r.error,
                generation: r.generation,
                hash: Some(r.hash),
            }),
            last_error: s.last_error,
            sessions: s.sessions,
            forced_sessions: s.forced_sessions,
        }
    }

    /// `config.sync.now`: the primary pushes at once, whatever the hashes say.
    pub(crate) fn config_sync_now(&self) -> Result<(), ConfigSyncError> {
        match &self.config_sync {
            None => Err(ConfigSyncError::NotConfigured),
            Some(s) if !s.is_primary() => Err(ConfigSyncError::Secondary),
            Some(_) => {
                self.offer_config(true);
                Ok(())
            }
        }
    }

    /// The one-line summary of `status`.
    pub(crate) fn config_sync_line(&self) -> Option<String> {
        status_line(&self.config_sync_reply())
    }
}

/// `status`'s line for config sync `r`, none when it is off. Past [`PEER_STALE_S`] without the
/// peer, an "in sync" says so.
fn status_line(r: &crate::api::ConfigSyncReply) -> Option<String> {
    if r.role == "off" {
        return None;
    }
    let peer = r.peer.as_deref().unwrap_or("any peer");
    let state = if r.in_sync {
        // The peer's hash is compared every 10 s: past a few checks without an answer, "in
        // sync" is only what was true when it was last heard.
        let stale = r
            .peer_seen_s
            .filter(|&s| s > PEER_STALE_S)
            .map_or(String::new(), |s| {
                format!(", but the peer has not answered for {s} s")
            });
        format!(
            "in sync (version {}, {}){stale}",
            r.version,
            short_hash(r.local_hash.as_deref().unwrap_or(""))
        )
    } else if let Some(e) = &r.last_error {
        format!("NOT in sync: {}", e.lines().next().unwrap_or(""))
    } else if let Some(p) = r.last_push.as_ref().filter(|p| p.result != "accepted") {
        format!("NOT in sync: last push {}", p.result)
    } else if r.peer_hash.is_none() {
        "peer not heard yet".to_string()
    } else {
        "NOT in sync".to_string()
    };
    let dir = if r.role == "primary" {
        "pushes to"
    } else {
        "accepts from"
    };
    Some(format!("{} ({dir} {peer}:{}): {state}", r.role, r.port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ConfigSyncReply;

    #[test]
    fn in_sync_says_when_the_peer_has_gone_quiet() {
        let r = |seen: u64| ConfigSyncReply {
            role: "primary".into(),
            peer: Some("10.255.0.2".into()),
            port: 8443,
            sections: vec!["rules".into()],
            nothing_to_sync: vec![],
            local_hash: Some("0123456789abcdef".into()),
            peer_hash: Some("0123456789abcdef".into()),
            in_sync: true,
            version: 3,
            peer_hostname: None,
            peer_seen_s: Some(seen),
            last_push: None,
            last_error: None,
            sessions: 1,
            forced_sessions: 0,
        };
        assert_eq!(
            status_line(&r(5)).unwrap(),
            "primary (pushes to 10.255.0.2:8443): in sync (version 3, 0123456789ab)"
        );
        assert_eq!(
            status_line(&r(45)).unwrap(),
            "primary (pushes to 10.255.0.2:8443): in sync (version 3, 0123456789ab), but the \
             peer has not answered for 45 s"
        );
    }
}
