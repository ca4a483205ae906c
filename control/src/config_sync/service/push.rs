//! The primary's side of config sync: a [`Pusher`] session (the secondary's status, then a
//! push when the hashes differ) and the doctor's [`inspect`] of the peer.

use super::*;

/// A push version: microseconds since the epoch, and always above what the secondary holds (so
/// a primary whose clock went back still moves forward).
fn next_version(peer_version: u64) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    now.max(peer_version.saturating_add(1))
}

pub(super) struct Pusher {
    pub(super) target: SocketAddrV4,
    pub(super) key: ChannelKey,
    pub(super) hostname: String,
    pub(super) status: Arc<Mutex<Status>>,
    pub(super) counters: Arc<Counters>,
    /// The last failure logged, so that a dead peer is logged once, not every retry.
    pub(super) last_logged: Option<String>,
}

impl Pusher {
    pub(super) fn run(mut self, orders: &Receiver<Order>, stop: &AtomicBool) {
        let mut current: Option<Payload> = None;
        let mut force = false;
        let mut due = Instant::now() + CHECK_INTERVAL;
        while !stop.load(Ordering::Relaxed) {
            let wait = due
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(200));
            match orders.recv_timeout(wait) {
                Ok(o) => {
                    current = Some(o.payload);
                    force |= o.force;
                    due = Instant::now();
                    continue; // take every queued order before a session
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            if Instant::now() < due {
                continue;
            }
            let Some(payload) = &current else {
                due = Instant::now() + CHECK_INTERVAL;
                continue;
            };
            let ok = self.session(payload, force);
            force = false;
            due = Instant::now() + if ok { CHECK_INTERVAL } else { RETRY_INTERVAL };
        }
    }

    /// One session: status, then a push if needed. True when it ended well (in sync, or the
    /// push was accepted).
    fn session(&mut self, payload: &Payload, force: bool) -> bool {
        Counters::bump(&self.counters.checks);
        let result = self.talk(payload, force);
        let ok = matches!(result, Ok(true));
        let result = result.map_err(|e| e.to_string());
        if let Ok(mut s) = self.status.lock() {
            s.sessions += 1;
            s.forced_sessions += u64::from(force);
            match &result {
                Ok(_) => s.last_error = None,
                Err(e) => s.last_error = Some(e.clone()),
            }
        }
        match result {
            Ok(_) => self.last_logged = None,
            Err(e) => {
                Counters::bump(&self.counters.session_failures);
                if self.last_logged.as_ref() != Some(&e) {
                    tracing::warn!("config sync: {e}");
                    self.last_logged = Some(e);
                }
            }
        }
        ok
    }

    /// `Ok(true)`: in sync now; `Ok(false)`: the push was refused (recorded); `Err`: the session
    /// failed.
    fn talk(&mut self, payload: &Payload, force: bool) -> Result<bool, ConfigSyncError> {
        let target = self.target;
        let mut ch = Channel::connect(SocketAddr::V4(target), &self.key, CONNECT_TIMEOUT, SESSION)
            .map_err(|source| ConfigSyncError::Open {
                peer: target,
                source,
            })?;
        let ask = ToSecondary::Status {
            hash: payload.hash.clone(),
            hostname: self.hostname.clone(),
        };
        let answer = exchange(&mut ch, &ask).map_err(|source| ConfigSyncError::Exchange {
            peer: target,
            source,
        })?;
        let ToPrimary::Status {
            version,
            hash,
            hostname,
            generation: _,
        } = answer
        else {
            return Err(ConfigSyncError::unexpected(target, "a status", answer));
        };
        if let Ok(mut s) = self.status.lock() {
            s.peer_hash = hash.clone();
            s.version = version;
            s.peer_seen_unix = Some(now_unix());
            s.peer_hostname = Some(super::printable(&hostname));
        }
        if !force && hash.as_deref() == Some(payload.hash.as_str()) {
            return Ok(true);
        }
        let version = next_version(version);
        Counters::bump(&self.counters.pushes);
        let push = ToSecondary::Push {
            version,
            hash: payload.hash.clone(),
            sections: names(&payload.carried),
            payload: payload.text.clone(),
            hostname: self.hostname.clone(),
        };
        let record = |result, error: Option<String>, generation| PushRecord {
            at_unix: now_unix(),
            version,
            result,
            error,
            generation,
            hash: payload.hash.clone(),
        };
        let answer = match exchange(&mut ch, &push) {
            Ok(a) => a,
            Err(source) => {
                let e = ConfigSyncError::Push {
                    peer: target,
                    version,
                    source,
                };
                self.set_last_push(record("failed", Some(e.to_string()), None));
                return Err(e);
            }
        };
        match answer {
            ToPrimary::Accepted {
                version: v,
                generation,
            } => {
                Counters::bump(&self.counters.pushes_accepted);
                tracing::info!(
                    "config sync: pushed version {v} ({}) to {target}: accepted, generation {generation} there",
                    short_hash(&payload.hash)
                );
                self.set_last_push(record("accepted", None, Some(generation)));
                if let Ok(mut s) = self.status.lock() {
                    s.peer_hash = Some(payload.hash.clone());
                    s.version = v;
                }
                Ok(true)
            }
            ToPrimary::Refused { errors } => {
                Counters::bump(&self.counters.pushes_refused);
                let text = errors.join("\n");
                tracing::error!(
                    "config sync: {target} refused version {version}; it runs what it ran:\n{text}"
                );
                self.set_last_push(record("refused", Some(text), None));
                Ok(false)
            }
            other => Err(ConfigSyncError::unexpected(target, "a push", other)),
        }
    }

    fn set_last_push(&self, r: PushRecord) {
        if let Ok(mut s) = self.status.lock() {
            s.last_push = Some(r);
        }
    }
}

/// One inspection of the peer at `peer`.
pub(super) fn inspect(
    peer: SocketAddrV4,
    key: &ChannelKey,
    hostname: String,
) -> Result<Inspection, ConfigSyncError> {
    let mut ch = Channel::connect(SocketAddr::V4(peer), key, CONNECT_TIMEOUT, SESSION)
        .map_err(|source| ConfigSyncError::Open { peer, source })?;
    match exchange(&mut ch, &ToSecondary::Inspect { hostname })
        .map_err(|source| ConfigSyncError::Exchange { peer, source })?
    {
        ToPrimary::Inspection { config, live } => Ok(Inspection {
            config: Arc::new(config),
            live: *live,
        }),
        other => Err(ConfigSyncError::unexpected(peer, "an inspection", other)),
    }
}

/// Sends `msg` and reads the answer.
fn exchange(ch: &mut Channel, msg: &ToSecondary) -> Result<ToPrimary, ExchangeError> {
    let bytes = serde_json::to_vec(msg).map_err(ExchangeError::Encode)?;
    ch.send(&bytes)?;
    let answer = ch.recv(MAX_ANSWER)?;
    serde_json::from_slice(&answer).map_err(ExchangeError::Unreadable)
}
