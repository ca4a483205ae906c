//! The one metrics registry: every counter and gauge of the box, declared once (name, help,
//! kind, labels), read by `tandemctl stats` (flattened, [`Snapshot::flat`]) and by the
//! Prometheus endpoint ([`Snapshot::encode`], through `prometheus-client`) alike.
//!
//! A [`Snapshot`] is values, not live handles: the control thread builds one from the sources
//! ([`collect`]) and hands it over, so that no reader ever touches a worker's counters or waits
//! on a lock a worker holds. The sources' own tables are the declarations: a counter added to
//! `tandem_dataplane::counters`, to state sync's or to config sync's `counters!` list, with its
//! doc comment, shows in both outputs with that comment as its help, and nothing else to edit.
//!
//! Names: the flat name (`drop_carp_ttl`, `sync_rx_accepted`) is the stats name; Prometheus sees
//! `tandem_<name>` (`_total` added to counters). A family may name one label whose value
//! completes the flat name (`carp_rejected{reason="bad_ttl"}` is `carp_rejected_bad_ttl` in
//! `tandemctl stats`); other labels are summed over in the flat view.

pub mod collect;
pub mod server;

use std::fmt::Write as _;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// Prometheus's name prefix.
pub const PREFIX: &str = "tandem";

/// What a value means over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only grows (until a restart).
    Counter,
    /// Goes up and down.
    Gauge,
}

/// One metric: its declaration and its samples.
#[derive(Debug, Clone)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    /// The label (index in `labels`) whose value completes the flat name, if any.
    pub split: Option<usize>,
    /// Label values (one per label, in order) and the value.
    pub samples: Vec<(Vec<String>, u64)>,
    /// The Prometheus name (without the prefix) and the factor from the stored value to the
    /// exposed one: `sync_lag_ms` in stats is `tandem_sync_lag_seconds` (x 0.001).
    pub exposed: String,
    pub scale: f64,
}

/// Every metric of the box at one moment, in declaration order.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    families: Vec<Family>,
}

impl Snapshot {
    /// The family `name`, declared here if new. Help text is made one line (doc comments span
    /// several).
    pub fn family(
        &mut self,
        name: &str,
        help: &str,
        kind: Kind,
        labels: &'static [&'static str],
    ) -> &mut Family {
        let at = match self.families.iter().position(|f| f.name == name) {
            Some(i) => i,
            None => {
                self.families.push(Family {
                    name: name.to_string(),
                    help: help.split_whitespace().collect::<Vec<_>>().join(" "),
                    kind,
                    labels,
                    split: None,
                    samples: Vec::new(),
                    exposed: exposed_name(name),
                    scale: 1.0,
                });
                self.families.len() - 1
            }
        };
        &mut self.families[at]
    }

    /// An unlabelled value.
    pub fn add(&mut self, name: &str, help: &str, kind: Kind, value: u64) {
        self.family(name, help, kind, &[]).add(&[], value);
    }

    /// Named values from a source's table (`(name, value)` in order) with their help from the
    /// table's declaration (`(name, help)`); `prefix` makes the flat name, `labels` are added to
    /// every sample. A name the help table lacks still shows, with an empty help.
    pub fn table(
        &mut self,
        prefix: &str,
        help: &[(&str, &str)],
        kind: Kind,
        labels: &'static [&'static str],
        values: &[&str],
        pairs: &[(&str, u64)],
    ) {
        for (n, v) in pairs {
            let h = help.iter().find(|(hn, _)| hn == n).map_or("", |(_, h)| *h);
            self.family(&format!("{prefix}{n}"), h, kind, labels)
                .add(values, *v);
        }
    }

    /// Adds `other`'s families (made apart, e.g. the state census) after this one's.
    pub fn extend(&mut self, other: &Snapshot) {
        self.families.extend(other.families.iter().cloned());
    }

    pub fn families(&self) -> &[Family] {
        &self.families
    }

    /// The flat view of `tandemctl stats`: one value per family (labels summed), or one per
    /// value of its split label.
    pub fn flat(&self) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = Vec::new();
        for f in &self.families {
            match f.split {
                None => {
                    let sum = f.samples.iter().fold(0u64, |a, (_, v)| a.wrapping_add(*v));
                    out.push((f.name.clone(), sum));
                }
                Some(i) => {
                    for (labels, v) in &f.samples {
                        let part = labels.get(i).map_or("", String::as_str);
                        out.push((format!("{}_{part}", f.name), *v));
                    }
                }
            }
        }
        out
    }

    /// The OpenMetrics text exposition (`application/openmetrics-text`), `tandem_` names.
    pub fn openmetrics(self: &Arc<Self>) -> String {
        let mut registry = Registry::with_prefix(PREFIX);
        registry.register_collector(Box::new(self.clone()));
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &registry) {
            // Only a formatting error of the writer, which a String does not have.
            let _ = writeln!(out, "# encoding failed: {e}");
        }
        out
    }

    /// The classic Prometheus text format (`text/plain; version=0.0.4`), for scrapers and
    /// linters (promtool) that do not speak OpenMetrics: the same encoding, with a counter's
    /// HELP and TYPE named like its samples (`_total`) and no `# EOF`.
    pub fn text(self: &Arc<Self>) -> String {
        let counters: Vec<String> = self
            .families
            .iter()
            .filter(|f| f.kind == Kind::Counter)
            .map(|f| format!("{PREFIX}_{}", f.exposed))
            .collect();
        let mut out = String::new();
        for line in self.openmetrics().lines() {
            if line == "# EOF" {
                continue;
            }
            let meta = line
                .strip_prefix("# HELP ")
                .map(|r| ("# HELP ", r))
                .or_else(|| line.strip_prefix("# TYPE ").map(|r| ("# TYPE ", r)));
            match meta {
                Some((tag, rest)) => {
                    let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                    let suffix = if counters.iter().any(|c| c == name) {
                        "_total"
                    } else {
                        ""
                    };
                    let _ = writeln!(out, "{tag}{name}{suffix} {tail}");
                }
                None => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }
}

impl Family {
    /// Adds a sample (sums into an existing one with the same label values). Missing label
    /// values are empty, extra ones ignored.
    pub fn add(&mut self, values: &[&str], value: u64) -> &mut Family {
        let values: Vec<String> = (0..self.labels.len())
            .map(|i| values.get(i).map_or_else(String::new, |s| (*s).to_string()))
            .collect();
        match self.samples.iter_mut().find(|(l, _)| *l == values) {
            Some((_, v)) => *v = v.wrapping_add(value),
            None => self.samples.push((values, value)),
        }
        self
    }

    /// Exposes this family to Prometheus as `name`, its values multiplied by `scale` (a base
    /// unit: seconds, bytes).
    pub fn exposed_as(&mut self, name: &str, scale: f64) -> &mut Family {
        self.exposed = name.to_string();
        self.scale = scale;
        self
    }

    /// Names the label whose value completes the flat name.
    pub fn split_by(&mut self, label: &str) -> &mut Family {
        self.split = self.labels.iter().position(|l| *l == label);
        self
    }
}

/// The Prometheus name of a stats name: the same, but for a word Prometheus's linter reads as
/// a unit (`us`, microseconds: `drop_l2_not_for_us` is `drop_l2_not_for_ours`).
fn exposed_name(name: &str) -> String {
    name.split('_')
        .map(|w| if w == "us" { "ours" } else { w })
        .collect::<Vec<_>>()
        .join("_")
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.families {
            let kind = match f.kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
            };
            let mut m = encoder.encode_descriptor(&f.exposed, &f.help, None, kind)?;
            for (values, v) in &f.samples {
                let labels: Vec<(&str, &str)> = f
                    .labels
                    .iter()
                    .copied()
                    .zip(values.iter().map(String::as_str))
                    .collect();
                let sample = m.encode_family(&labels)?;
                #[allow(clippy::cast_precision_loss)] // exact below 2^53
                match f.kind {
                    Kind::Counter => ConstCounter::new(*v).encode(sample)?,
                    Kind::Gauge if f.scale != 1.0 => {
                        ConstGauge::new(*v as f64 * f.scale).encode(sample)?;
                    }
                    Kind::Gauge => ConstGauge::new(*v).encode(sample)?,
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_sums_labels_and_splits_by_one() {
        let mut s = Snapshot::default();
        s.add("states", "States.", Kind::Gauge, 3);
        s.family("forwarded", "Forwarded.", Kind::Counter, &["worker"])
            .add(&["0"], 2)
            .add(&["1"], 5);
        s.family("carp_rejected", "Rejected.", Kind::Counter, &["reason"])
            .split_by("reason")
            .add(&["bad_ttl"], 1)
            .add(&["replay"], 4);
        let flat = s.flat();
        assert_eq!(
            flat,
            vec![
                ("states".to_string(), 3),
                ("forwarded".to_string(), 7),
                ("carp_rejected_bad_ttl".to_string(), 1),
                ("carp_rejected_replay".to_string(), 4),
            ]
        );
    }

    #[test]
    fn encodes_prometheus_text() {
        let mut s = Snapshot::default();
        s.add(
            "states",
            "States in the table.\n Second line.",
            Kind::Gauge,
            3,
        );
        s.family("forwarded", "Forwarded.", Kind::Counter, &["worker"])
            .add(&["0"], 2);
        let s = Arc::new(s);
        let text = s.openmetrics();
        assert!(text.contains("# HELP tandem_states States in the table. Second line."));
        assert!(text.contains("# TYPE tandem_states gauge"));
        assert!(text.contains("tandem_states 3"), "{text}");
        assert!(text.contains("# TYPE tandem_forwarded counter"));
        assert!(
            text.contains("tandem_forwarded_total{worker=\"0\"} 2"),
            "{text}"
        );
    }
}
