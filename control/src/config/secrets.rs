//! Secrets out of what is shown: `config show` prints the config in force with every password
//! and key masked, comments and layout kept (toml_edit).

/// The keys whose values are secrets: CARP and config sync passwords, the state sync key.
const SECRET_KEYS: [&str; 2] = ["password", "key"];

/// What a masked secret reads as.
pub const MASK: &str = "********";

/// `text` with the value of every `password` and `key` replaced by [`MASK`], wherever it
/// stands (tables, arrays of tables, inline tables). Text that does not parse is masked line by
/// line instead, so a secret never shows because the TOML was odd.
pub fn mask_secrets(text: &str) -> String {
    match text.parse::<toml_edit::DocumentMut>() {
        Ok(mut doc) => {
            mask_table(doc.as_table_mut());
            doc.to_string()
        }
        Err(_) => text
            .lines()
            .map(|l| {
                let key = l.split('=').next().unwrap_or("").trim();
                if SECRET_KEYS.contains(&key) {
                    format!("{key} = \"{MASK}\"")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

fn mask_table(t: &mut dyn toml_edit::TableLike) {
    for (k, item) in t.iter_mut() {
        if SECRET_KEYS.contains(&k.get()) && (item.is_value()) {
            let decor = item.as_value().map(|v| v.decor().clone());
            let mut v = toml_edit::Value::from(MASK);
            if let Some(d) = decor {
                *v.decor_mut() = d;
            }
            *item = toml_edit::Item::Value(v);
            continue;
        }
        mask_item(item);
    }
}

fn mask_item(item: &mut toml_edit::Item) {
    match item {
        toml_edit::Item::Table(t) => mask_table(t),
        toml_edit::Item::ArrayOfTables(a) => a.iter_mut().for_each(|t| mask_table(t)),
        toml_edit::Item::Value(toml_edit::Value::InlineTable(t)) => mask_table(t),
        toml_edit::Item::Value(toml_edit::Value::Array(a)) => {
            for v in a.iter_mut() {
                if let toml_edit::Value::InlineTable(t) = v {
                    mask_table(t);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_secret_of_the_seed_config_is_masked_and_nothing_else() {
        let path = format!(
            "{}/../scripts/lab-configs/fw-a.toml",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(path).unwrap();
        let masked = mask_secrets(&text);
        for secret in [
            "tandem-lab-vhid1",
            "tandem-lab-vhid2",
            "tandem-lab-state-sync-key",
            "tandem-lab-config-sync",
        ] {
            assert!(text.contains(secret));
            assert!(!masked.contains(secret), "{secret} shows");
        }
        assert_eq!(masked.matches(MASK).count(), 4);
        // Comments and the rest stay as written.
        assert!(masked.contains("# --- Virtual IPs"));
        assert!(masked.contains("username = \"admin\""));
        assert_eq!(text.lines().count(), masked.lines().count());
        // Inline tables and unparsable text too.
        assert!(!mask_secrets("x = { password = \"p1\" }").contains("p1"));
        assert!(!mask_secrets("key = \"k1\"\n[[[broken").contains("k1"));
    }
}
