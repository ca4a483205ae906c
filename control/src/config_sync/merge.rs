//! The secondary's side of a push: its own file, with each pushed section in place of its own.
//!
//! - A pushed section replaces the secondary's wholesale, except the items the secondary's own
//!   file marks `no_sync`: those stay, ahead of the pushed items (in a rule list, first match
//!   wins: a box's own exceptions come first).
//! - Per-box sections (system, interfaces, the default gateway, ha) are never in a payload; a
//!   payload holding anything but the sections it names is refused whole.
//! - CARP skews: each pushed CARP VIP takes the secondary's own advskew for its (interface,
//!   vhid), or the primary's plus 100 when the secondary has none (what pfSense does). A skew
//!   that would not lose to the primary's (lower or equal with the same advbase) becomes the
//!   primary's plus 100 too (at most 239, below what a primary in maintenance or demoted sends),
//!   so a push never makes the secondary outrank the primary; a primary at 239 or above is
//!   refused.

use std::collections::HashMap;

use super::{get, home, set, stays_home};
use crate::config::SyncSection;

/// The skew the secondary takes above the primary's when it has none of its own (pfSense).
pub const SECONDARY_SKEW_STEP: i64 = 100;

/// The highest skew on the wire: a skew above it is sent as it (FreeBSD's `CARP_MAXSKEW`), and
/// it is what a primary in maintenance mode or demoted sends. The secondary's skew stays below
/// it, so that such a primary always loses to it.
const WIRE_MAX_SKEW: i64 = crate::carp::machine::MAX_SKEW as i64;
/// The highest skew the merge gives the secondary.
const SECONDARY_MAX_SKEW: i64 = WIRE_MAX_SKEW - 1;

/// The merged config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// The config in force after the push, as TOML.
    pub text: String,
    /// What the merge changed beyond replacing sections (skews raised), for the log.
    pub notes: Vec<String>,
}

/// Why a push was not merged: its refusal, as the secondary logs it and the primary shows it.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// The secondary's own file is not TOML (it was valid when it was applied: a bug).
    #[error("the local config does not parse: {0}")]
    LocalParse(#[source] toml::de::Error),
    /// The payload is not TOML.
    #[error("the pushed config does not parse: {0}")]
    PushedParse(#[source] toml::de::Error),
    /// The push names a section twice.
    #[error("the push names the section {0} twice")]
    Twice(SyncSection),
    /// A carried section of the wrong TOML type (not emptied: that would deny everything).
    #[error("the push's {path} is a {found}, not {expected}")]
    WrongType {
        path: String,
        found: &'static str,
        expected: &'static str,
    },
    /// The payload holds a top-level key that none of its sections lives under.
    #[error("the push holds {0:?}, which is not a section it carries")]
    NotCarried(String),
    /// A top-level key whose carried section is deeper is not a table.
    #[error("{0} is not a table")]
    NotATable(String),
    /// Beside a deeper carried section (`routes.static`), the payload holds another key.
    #[error("the push holds {key}.{sub}, which is not a section it carries")]
    NotCarriedBeside { key: String, sub: String },
    /// The primary's skew leaves the secondary none that loses to it.
    #[error("virtual IP vhid {vhid} on {interface}: the primary's advskew {skew} leaves the secondary no higher skew below {} (what CARP sends at most, and what a primary in maintenance sends): it would tie, and mastership could flap", WIRE_MAX_SKEW)]
    TopSkew {
        vhid: i64,
        interface: String,
        skew: i64,
    },
    /// The merged table does not serialise (a bug).
    #[error("config sync: {0}")]
    Encode(#[source] toml::ser::Error),
}

/// Merges `payload` (carrying `carried`) into the secondary's own file `own`.
pub fn merge(own: &str, payload: &str, carried: &[SyncSection]) -> Result<Merged, MergeError> {
    let mut table: toml::Table = own.parse().map_err(MergeError::LocalParse)?;
    let pushed: toml::Table = payload.parse().map_err(MergeError::PushedParse)?;
    check_only_carried(&pushed, carried)?;
    let own_skews = carp_skews(get(&table, &["virtual_ips"]));
    let mut notes = Vec::new();
    let mut seen = Vec::new();
    for &section in carried {
        let Some(path) = home(section) else { continue };
        if seen.contains(&section) {
            return Err(MergeError::Twice(section));
        }
        seen.push(section);
        let incoming = get(&pushed, path).cloned();
        // Absent is empty; present with the wrong type is a broken push, not an empty section
        // (an empty rule list would deny everything, the sync link included).
        let expected_table = section == SyncSection::Nat;
        if let Some(v) = &incoming {
            if v.is_table() != expected_table || (!expected_table && !v.is_array()) {
                return Err(MergeError::WrongType {
                    path: path.join("."),
                    found: v.type_str(),
                    expected: if expected_table {
                        "a table"
                    } else {
                        "an array"
                    },
                });
            }
        }
        let value = match section {
            SyncSection::Nat => {
                let mut nat = incoming
                    .and_then(|v| v.as_table().cloned())
                    .unwrap_or_default();
                let rules = ["outbound", "rules"];
                let mine = kept(section, get(&table, &["nat", "outbound", "rules"]));
                let theirs = get(&nat, &rules)
                    .and_then(toml::Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if !mine.is_empty() || get(&nat, &rules).is_some() {
                    set(
                        &mut nat,
                        &rules,
                        toml::Value::Array([mine, theirs].concat()),
                    );
                }
                toml::Value::Table(nat)
            }
            _ => {
                let mine = kept(section, get(&table, path));
                let mut theirs = incoming
                    .and_then(|v| v.as_array().cloned())
                    .unwrap_or_default();
                // What stays home on the primary does here too, whatever an older primary sent.
                theirs.retain(|v| !stays_home(section, v));
                if section == SyncSection::VirtualIps {
                    notes.extend(keep_own_skews(&mut theirs, &own_skews)?);
                }
                toml::Value::Array([mine, theirs].concat())
            }
        };
        set(&mut table, path, value);
    }
    let text = toml::to_string(&table).map_err(MergeError::Encode)?;
    Ok(Merged { text, notes })
}

/// Refuses a payload with anything outside the sections it says it carries.
fn check_only_carried(pushed: &toml::Table, carried: &[SyncSection]) -> Result<(), MergeError> {
    let paths: Vec<&[&str]> = carried.iter().filter_map(|s| home(*s)).collect();
    for (key, value) in pushed {
        let inside: Vec<&[&str]> = paths
            .iter()
            .filter(|p| p.first() == Some(&key.as_str()))
            .copied()
            .collect();
        if inside.is_empty() {
            return Err(MergeError::NotCarried(key.clone()));
        }
        // A top-level section whose home is deeper (`routes.static`): nothing else beside it.
        if inside.iter().all(|p| p.len() > 1) {
            let sub = value
                .as_table()
                .ok_or_else(|| MergeError::NotATable(key.clone()))?;
            for k in sub.keys() {
                if !inside.iter().any(|p| p.get(1) == Some(&k.as_str())) {
                    return Err(MergeError::NotCarriedBeside {
                        key: key.clone(),
                        sub: k.clone(),
                    });
                }
            }
        }
    }
    Ok(())
}

/// The items of `section`'s list that stay on their box (see [`stays_home`]).
fn kept(section: SyncSection, list: Option<&toml::Value>) -> Vec<toml::Value> {
    list.and_then(toml::Value::as_array)
        .map(|a| {
            a.iter()
                .filter(|i| stays_home(section, i))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// (interface, vhid) -> advskew of the CARP VIPs of a `virtual_ips` list.
fn carp_skews(list: Option<&toml::Value>) -> HashMap<(String, i64), i64> {
    let mut out = HashMap::new();
    for v in list.and_then(toml::Value::as_array).into_iter().flatten() {
        if let Some(key) = carp_key(v) {
            let skew = v.get("advskew").and_then(toml::Value::as_integer);
            out.insert(key, skew.unwrap_or(0));
        }
    }
    out
}

fn carp_key(v: &toml::Value) -> Option<(String, i64)> {
    if v.get("type")?.as_str()? != "carp" {
        return None;
    }
    let iface = v.get("interface")?.as_str()?.to_string();
    Some((iface, v.get("vhid")?.as_integer()?))
}

/// Gives each pushed CARP VIP the secondary's skew (see the module doc); returns a note for
/// each skew that had to be raised. A primary at the top skew leaves the secondary no skew that
/// loses to it: refused.
fn keep_own_skews(
    vips: &mut [toml::Value],
    own: &HashMap<(String, i64), i64>,
) -> Result<Vec<String>, MergeError> {
    let mut notes = Vec::new();
    for v in vips.iter_mut() {
        let Some(key) = carp_key(v) else { continue };
        let primary = v
            .get("advskew")
            .and_then(toml::Value::as_integer)
            .unwrap_or(0);
        if primary >= SECONDARY_MAX_SKEW {
            return Err(MergeError::TopSkew {
                vhid: key.1,
                interface: key.0,
                skew: primary,
            });
        }
        let raised = (primary + SECONDARY_SKEW_STEP).min(SECONDARY_MAX_SKEW);
        let skew = match own.get(&key) {
            // Compared as sent: 245 loses to nothing above 240.
            Some(&mine) if mine.min(WIRE_MAX_SKEW) > primary => mine,
            Some(&mine) => {
                notes.push(format!(
                    "virtual IP vhid {} on {}: own advskew {mine} would not lose to the primary's {primary}; using {raised}",
                    key.1, key.0
                ));
                raised
            }
            None => raised,
        };
        if let Some(t) = v.as_table_mut() {
            t.insert("advskew".into(), toml::Value::Integer(skew));
        }
    }
    Ok(notes)
}

#[cfg(test)]
mod tests;
