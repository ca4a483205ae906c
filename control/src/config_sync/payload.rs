//! What the primary pushes: the selected sections of its config, without the items it marks
//! `no_sync`, as one TOML document.
//!
//! A selected section the file leaves out travels empty (an empty list, or for `nat` an empty
//! table: automatic mode), so that removing the last rule on the primary removes it on the
//! secondary too: a pushed section replaces the secondary's wholesale.

use std::collections::BTreeSet;

use super::{content_hash, get, home, is_no_sync, set, stays_home};
use crate::config::SyncSection;

/// One push's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    /// The sections that travel, each of which replaces the secondary's.
    pub carried: Vec<SyncSection>,
    /// Selected sections of features tandem does not have: "nothing to sync".
    pub nothing_to_sync: Vec<SyncSection>,
    /// The pushed sections as TOML.
    pub text: String,
    /// [`content_hash`] of `text`.
    pub hash: String,
    /// Items left home because they are marked `no_sync`.
    pub kept_home: usize,
}

/// Why a payload could not be built: either is a bug (the config in force was validated), logged
/// by the primary, which then pushes nothing.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The config text does not parse as TOML.
    #[error("config sync: the config does not parse: {0}")]
    Parse(#[source] toml::de::Error),
    /// The pushed sections do not serialise as TOML.
    #[error("config sync: {0}")]
    Encode(#[source] toml::ser::Error),
}

/// The payload of `config_text` (a valid config file) for `sections`.
pub fn build(config_text: &str, sections: &BTreeSet<SyncSection>) -> Result<Payload, PayloadError> {
    let file: toml::Table = config_text.parse().map_err(PayloadError::Parse)?;
    let mut out = toml::Table::new();
    let (mut carried, mut nothing_to_sync, mut kept_home) = (Vec::new(), Vec::new(), 0);
    for &section in sections {
        let Some(path) = home(section) else {
            nothing_to_sync.push(section);
            continue;
        };
        carried.push(section);
        let value = match section {
            // The NAT section is a table: its mode travels, and its rules without the no_sync
            // ones.
            SyncSection::Nat => {
                let mut nat = get(&file, path)
                    .and_then(toml::Value::as_table)
                    .cloned()
                    .unwrap_or_default();
                let rules_path = ["outbound", "rules"];
                if let Some(toml::Value::Array(rules)) = get(&nat, &rules_path) {
                    let (keep, home): (Vec<_>, Vec<_>) =
                        rules.iter().cloned().partition(|r| !is_no_sync(r));
                    kept_home += home.len();
                    set(&mut nat, &rules_path, toml::Value::Array(keep));
                }
                toml::Value::Table(nat)
            }
            _ => {
                let items = get(&file, path)
                    .and_then(toml::Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let (keep, home): (Vec<_>, Vec<_>) =
                    items.into_iter().partition(|r| !stays_home(section, r));
                kept_home += home.len();
                toml::Value::Array(keep)
            }
        };
        set(&mut out, path, value);
    }
    let text = toml::to_string(&out).map_err(PayloadError::Encode)?;
    Ok(Payload {
        hash: content_hash(&text),
        carried,
        nothing_to_sync,
        text,
        kept_home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[system]
hostname = "fwa"
host_id = 1

[[aliases]]
name = "web"
type = "host"
entries = ["10.0.0.1"]

[[aliases]]
name = "mine"
type = "host"
entries = ["10.0.0.2"]
no_sync = true

[[filter.rules]]
interface = "lan"
action = "pass"

[[filter.rules]]
interface = "lan"
action = "block"
nosync = true

[nat.outbound]
mode = "hybrid"
[[nat.outbound.rules]]
interface = "wan"
[[nat.outbound.rules]]
interface = "wan"
no_sync = true

[ha.config_sync]
password = "secret"
"#;

    fn all() -> BTreeSet<SyncSection> {
        SyncSection::ALL.iter().copied().collect()
    }

    #[test]
    fn selected_sections_travel_without_their_no_sync_items() {
        let p = build(FILE, &all()).unwrap();
        let t: toml::Table = p.text.parse().unwrap();
        assert_eq!(
            t.keys().cloned().collect::<Vec<_>>(),
            ["aliases", "dhcp", "filter", "nat", "routes", "virtual_ips"]
        );
        assert_eq!(t["aliases"].as_array().unwrap().len(), 1);
        assert_eq!(t["aliases"][0]["name"].as_str(), Some("web"));
        assert_eq!(t["filter"]["rules"].as_array().unwrap().len(), 1);
        assert_eq!(t["nat"]["outbound"]["mode"].as_str(), Some("hybrid"));
        assert_eq!(t["nat"]["outbound"]["rules"].as_array().unwrap().len(), 1);
        // Absent sections travel empty: the secondary's are replaced by nothing.
        assert_eq!(t["virtual_ips"].as_array().map(Vec::len), Some(0));
        assert_eq!(t["routes"]["static"].as_array().map(Vec::len), Some(0));
        assert_eq!(t["dhcp"].as_array().map(Vec::len), Some(0));
        assert_eq!(p.kept_home, 3);
        // Per-box sections and secrets of the HA section never travel.
        assert!(!p.text.contains("hostname") && !p.text.contains("secret"));
        assert_eq!(p.carried.len(), 6);
        assert_eq!(p.nothing_to_sync.len(), SyncSection::ALL.len() - 6);
        assert!(p.nothing_to_sync.contains(&SyncSection::Ipsec));
    }

    #[test]
    fn only_the_selected_sections_travel_and_the_hash_follows_the_content() {
        let only_rules = BTreeSet::from([SyncSection::Rules, SyncSection::Openvpn]);
        let p = build(FILE, &only_rules).unwrap();
        let t: toml::Table = p.text.parse().unwrap();
        assert_eq!(t.keys().collect::<Vec<_>>(), ["filter"]);
        assert_eq!(p.nothing_to_sync, [SyncSection::Openvpn]);
        // Same content, same hash; one changed rule, another.
        assert_eq!(build(FILE, &only_rules).unwrap().hash, p.hash);
        let changed = FILE.replacen("action = \"pass\"", "action = \"reject\"", 1);
        assert_ne!(build(&changed, &only_rules).unwrap().hash, p.hash);
        // A change to a no_sync item or a section that does not travel changes nothing.
        let home_only = FILE.replace("10.0.0.2", "10.0.0.3");
        assert_eq!(build(&home_only, &only_rules).unwrap().hash, p.hash);
    }
}
