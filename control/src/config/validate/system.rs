//! `[system]`: the box's name and id, the dataplane's sizes, limits, adaptive timeouts and the
//! metrics endpoint.

use super::*;

pub(super) fn system(r: &mut Report<'_>, raw: Option<&RawSystem>) -> Option<System> {
    let Some(raw) = raw else {
        r.err("system", "missing");
        return None;
    };
    let hostname = r.text("system.hostname", &raw.hostname).and_then(|h| {
        let ok = h.len() <= 253
            && h.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !ok {
            r.err(
                "system.hostname",
                format!("{h:?} is not a valid host name (labels of letters, digits and '-', at most 63 characters each)"),
            );
        }
        ok.then(|| h.to_owned())
    });
    let host_id = r
        .req("system.host_id", &raw.host_id)
        .and_then(|&v| r.range("system.host_id", v, 1, i64::from(u32::MAX)))
        .and_then(|v| NonZeroU32::new(u32::try_from(v).ok()?));
    let workers = match raw.workers {
        Some(v) => r
            .range("system.workers", v, 1, MAX_WORKERS)
            .and_then(|v| u16::try_from(v).ok()),
        None => Some(DEFAULT_WORKERS),
    };
    let ring_size = match raw.ring_size {
        Some(v) => r
            .range("system.ring_size", v, MIN_RING_SIZE, MAX_RING_SIZE)
            .and_then(|v| {
                let size = u32::try_from(v).ok().filter(|s| s.is_power_of_two());
                if size.is_none() {
                    r.err(
                        "system.ring_size",
                        format!(
                            "{v} is not a power of two (AF_XDP rings are: 64, 128, ..., 4096, ..., 16384)"
                        ),
                    );
                }
                size
            }),
        None => Some(DEFAULT_RING_SIZE),
    };
    let state_limit = match raw.state_limit {
        Some(v) => r
            .range("system.state_limit", v, 1, MAX_STATE_LIMIT)
            .and_then(|v| u32::try_from(v).ok()),
        None => Some(DEFAULT_STATE_LIMIT),
    };
    let src_node_limit = match raw.src_node_limit {
        Some(v) => r
            .range("system.src_node_limit", v, 1, MAX_STATE_LIMIT)
            .and_then(|v| u32::try_from(v).ok()),
        None => Some(DEFAULT_SRC_NODE_LIMIT),
    };
    let adaptive = adaptive(r, raw);
    let metrics_listen = match raw.metrics.as_ref().map(|m| &m.listen) {
        Some(Some(l)) => match l.parse::<std::net::SocketAddr>() {
            Ok(a) if a.port() == 0 => {
                r.err(
                    "system.metrics.listen",
                    format!("{l:?}: port 0 would be a random port Prometheus cannot know"),
                );
                None
            }
            Ok(a) => Some(Some(a)),
            Err(_) => {
                r.err(
                    "system.metrics.listen",
                    format!("{l:?} is not an address and port (ADDR:PORT, e.g. 10.255.0.1:9120)"),
                );
                None
            }
        },
        Some(None) => {
            r.err("system.metrics.listen", "missing");
            None
        }
        None => Some(None),
    };
    Some(System {
        metrics_listen: metrics_listen?,
        hostname: hostname?,
        host_id: host_id?,
        workers: workers?,
        ring_size: ring_size?,
        state_limit: state_limit?,
        src_node_limit: src_node_limit?,
        adaptive: adaptive?,
        kill_states_on_reload: raw.kill_states_on_reload.unwrap_or(false),
        allow_ip_options: raw.allow_ip_options.unwrap_or(false),
    })
}

/// `system.adaptive_start` and `adaptive_end`: both or neither, start below end or both 0.
fn adaptive(r: &mut Report<'_>, raw: &RawSystem) -> Option<Option<AdaptiveBounds>> {
    let max = i64::from(u32::MAX);
    let start = raw
        .adaptive_start
        .map(|v| r.range("system.adaptive_start", v, 0, max));
    let end = raw
        .adaptive_end
        .map(|v| r.range("system.adaptive_end", v, 0, max));
    match (start, end) {
        (None, None) => Some(None),
        (Some(_), None) => {
            r.err("system.adaptive_end", "missing (adaptive_start is set)");
            None
        }
        (None, Some(_)) => {
            r.err("system.adaptive_start", "missing (adaptive_end is set)");
            None
        }
        (Some(start), Some(end)) => {
            let (start, end) = (u32::try_from(start?).ok()?, u32::try_from(end?).ok()?);
            if start >= end && !(start == 0 && end == 0) {
                r.err(
                    "system.adaptive_end",
                    format!("{end} must be greater than adaptive_start ({start}), or both 0"),
                );
                return None;
            }
            Some(Some(AdaptiveBounds { start, end }))
        }
    }
}
