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
//!   primary's plus 100 too (at most 254), so a push never makes the secondary outrank the
//!   primary.

use std::collections::HashMap;

use super::{get, home, is_no_sync, set};
use crate::config::SyncSection;

/// The skew the secondary takes above the primary's when it has none of its own (pfSense).
pub const SECONDARY_SKEW_STEP: i64 = 100;

/// The highest advskew (255 is not valid in a CARP advert's meaning).
const MAX_SKEW: i64 = 254;

/// The merged config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    /// The config in force after the push, as TOML.
    pub text: String,
    /// What the merge changed beyond replacing sections (skews raised), for the log.
    pub notes: Vec<String>,
}

/// Merges `payload` (carrying `carried`) into the secondary's own file `own`.
pub fn merge(own: &str, payload: &str, carried: &[SyncSection]) -> Result<Merged, String> {
    let mut table: toml::Table = own
        .parse()
        .map_err(|e| format!("the local config does not parse: {e}"))?;
    let pushed: toml::Table = payload
        .parse()
        .map_err(|e| format!("the pushed config does not parse: {e}"))?;
    check_only_carried(&pushed, carried)?;
    let own_skews = carp_skews(get(&table, &["virtual_ips"]));
    let mut notes = Vec::new();
    let mut seen = Vec::new();
    for &section in carried {
        let Some(path) = home(section) else { continue };
        if seen.contains(&section) {
            return Err(format!("the push names the section {section} twice"));
        }
        seen.push(section);
        let incoming = get(&pushed, path).cloned();
        // Absent is empty; present with the wrong type is a broken push, not an empty section
        // (an empty rule list would deny everything, the sync link included).
        let expected_table = section == SyncSection::Nat;
        if let Some(v) = &incoming {
            if v.is_table() != expected_table || (!expected_table && !v.is_array()) {
                return Err(format!(
                    "the push's {} is a {}, not {}",
                    path.join("."),
                    v.type_str(),
                    if expected_table {
                        "a table"
                    } else {
                        "an array"
                    }
                ));
            }
        }
        let value = match section {
            SyncSection::Nat => {
                let mut nat = incoming
                    .and_then(|v| v.as_table().cloned())
                    .unwrap_or_default();
                let rules = ["outbound", "rules"];
                let mine = kept(get(&table, &["nat", "outbound", "rules"]));
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
                let mine = kept(get(&table, path));
                let mut theirs = incoming
                    .and_then(|v| v.as_array().cloned())
                    .unwrap_or_default();
                if section == SyncSection::VirtualIps {
                    notes.extend(keep_own_skews(&mut theirs, &own_skews)?);
                }
                toml::Value::Array([mine, theirs].concat())
            }
        };
        set(&mut table, path, value);
    }
    let text = toml::to_string(&table).map_err(|e| format!("config sync: {e}"))?;
    Ok(Merged { text, notes })
}

/// Refuses a payload with anything outside the sections it says it carries.
fn check_only_carried(pushed: &toml::Table, carried: &[SyncSection]) -> Result<(), String> {
    let paths: Vec<&[&str]> = carried.iter().filter_map(|s| home(*s)).collect();
    for (key, value) in pushed {
        let inside: Vec<&[&str]> = paths
            .iter()
            .filter(|p| p.first() == Some(&key.as_str()))
            .copied()
            .collect();
        if inside.is_empty() {
            return Err(format!(
                "the push holds {key:?}, which is not a section it carries"
            ));
        }
        // A top-level section whose home is deeper (`routes.static`): nothing else beside it.
        if inside.iter().all(|p| p.len() > 1) {
            let sub = value
                .as_table()
                .ok_or_else(|| format!("{key} is not a table"))?;
            for k in sub.keys() {
                if !inside.iter().any(|p| p.get(1) == Some(&k.as_str())) {
                    return Err(format!(
                        "the push holds {key}.{k}, which is not a section it carries"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The items of a list that its box marks `no_sync`.
fn kept(list: Option<&toml::Value>) -> Vec<toml::Value> {
    list.and_then(toml::Value::as_array)
        .map(|a| a.iter().filter(|i| is_no_sync(i)).cloned().collect())
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
) -> Result<Vec<String>, String> {
    let mut notes = Vec::new();
    for v in vips.iter_mut() {
        let Some(key) = carp_key(v) else { continue };
        let primary = v
            .get("advskew")
            .and_then(toml::Value::as_integer)
            .unwrap_or(0);
        if primary >= MAX_SKEW {
            return Err(format!(
                "virtual IP vhid {} on {}: the primary's advskew {primary} leaves the secondary no higher skew (at most {MAX_SKEW}): it would tie, and mastership could flap",
                key.1, key.0
            ));
        }
        let raised = (primary + SECONDARY_SKEW_STEP).min(MAX_SKEW);
        let skew = match own.get(&key) {
            Some(&mine) if mine > primary => mine,
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
