//! The HA doctor: the misconfigurations that make a failover fail, found before the failover.
//!
//! The seed article is mostly a list of things an admin must get right on both boxes. The doctor
//! checks them over one box's config ([`single`]), over the pair's ([`pair`]) and, on running
//! boxes, over what both boxes see ([`live`]). Each [`Finding`] names a stable `id`, a
//! [`Severity`] (`error`: a failover will break something; `warning`: it may; `info`), the config
//! field it concerns, what is wrong and what will happen at failover, and the fix.
//!
//! - `tandemctl doctor --config FILE [--peer-config FILE]`: offline, the config checks on files.
//! - `tandemctl doctor`: the running box's config and live state, and its peer's, fetched over
//!   the config sync channel (`config_sync` protocol's `inspect`).

pub mod live;
pub mod online;
pub mod pair;
pub mod push;
pub mod single;

use serde::{Deserialize, Serialize};

use crate::compile::{compile, Compiled};
use crate::config::Config;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// A failover will break something.
    Error,
    /// A failover may break something.
    Warning,
    /// Worth knowing.
    Info,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// One thing the doctor found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// Stable, for scripts and for silencing: `nat-not-vip`, `vip-missing-on-peer`, ...
    pub id: String,
    pub severity: Severity,
    /// The config field it concerns, as validation names fields (`virtual_ips[1].password`),
    /// prefixed with `peer:` when it is the peer's.
    pub field: String,
    /// What is wrong and what happens at failover.
    pub message: String,
    /// What to do.
    pub fix: String,
}

impl Finding {
    /// `field: message. Fix: fix. [id]`, as the report and `tandemd --check-config` print it.
    pub fn line(&self) -> String {
        format!(
            "{}: {}. Fix: {}. [{}]",
            self.field, self.message, self.fix, self.id
        )
    }
}

/// `{"findings":[...]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether any finding is an error (the exit code is then 1).
    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }

    /// Sorted by severity, then field, for people.
    pub fn sorted(mut self) -> Report {
        self.findings
            .sort_by(|a, b| (a.severity, &a.field, &a.id).cmp(&(b.severity, &b.field, &b.id)));
        self.findings.dedup();
        self
    }

    /// The human form: grouped by severity, one line each, field path first.
    pub fn human(&self) -> String {
        if self.findings.is_empty() {
            return "No findings: nothing the doctor checks stands in the way of a failover.\n"
                .into();
        }
        let mut out = String::new();
        for sev in [Severity::Error, Severity::Warning, Severity::Info] {
            let of: Vec<&Finding> = self.findings.iter().filter(|f| f.severity == sev).collect();
            if of.is_empty() {
                continue;
            }
            out.push_str(&format!(
                "{} ({}):\n",
                sev.as_str().to_uppercase(),
                of.len()
            ));
            for f in of {
                out.push_str(&format!("  {}\n", f.line()));
            }
        }
        out
    }
}

/// Collects findings.
#[derive(Debug, Default)]
pub struct Findings(pub Vec<Finding>);

impl Findings {
    pub fn add(
        &mut self,
        id: &str,
        severity: Severity,
        field: impl Into<String>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.0.push(Finding {
            id: id.into(),
            severity,
            field: field.into(),
            message: message.into(),
            fix: fix.into(),
        });
    }
}

/// One box as the doctor sees it.
#[derive(Debug)]
pub struct BoxView<'a> {
    pub config: &'a Config,
    /// Its live state, on a running box.
    pub live: Option<&'a live::LiveState>,
    /// Its config file's text, when known: the push check ([`push`]) merges the primary's
    /// payload into the secondary's file, as config sync does.
    pub text: Option<&'a str>,
}

/// Every config check over `own` and, when known, its peer; then, when both are live, the live
/// checks. `peer_error` is why the peer could not be read, when it could not.
pub fn examine(own: &BoxView<'_>, peer: Option<&BoxView<'_>>, peer_error: Option<&str>) -> Report {
    let mut f = Findings::default();
    single::check(own.config, peer.map(|p| p.config), "", &mut f);
    if let Some(p) = peer {
        single::check(p.config, Some(own.config), "peer:", &mut f);
        pair::check(own.config, p.config, &mut f);
        push::check(own, p, &mut f);
    }
    if let Some(l) = own.live {
        live::check(own.config, l, peer.and_then(|p| p.live), peer_error, &mut f);
    }
    Report { findings: f.0 }.sorted()
}

/// The config compiled as the daemon would, with made-up MACs (the doctor runs anywhere).
pub(crate) fn compiled(config: &Config) -> Option<Compiled> {
    let mac = tandem_dataplane::wire::MacAddr([2, 0, 0, 0, 0, 1]);
    compile(config, 1, &move |_| Some(mac)).ok()
}

#[cfg(test)]
pub(crate) mod tests;
