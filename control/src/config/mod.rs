//! tandem's configuration: one TOML file per box, read into a validated, typed [`Config`].
//! [`load`] and [`parse`] report every problem at once; [`warnings`] names what is valid but
//! weak. The format, for the users who write the file, is `docs/config.md` (shipped with the
//! package), included below.
#![doc = include_str!("../../../docs/config.md")]

mod dhcp;
mod error;
mod locate;
mod model;
mod raw;
mod secrets;
mod types;
mod validate;

use std::path::Path;

pub use dhcp::{Dhcp, DhcpStatic, DEFAULT_LEASE_TIME, MAX_HOSTNAME};
pub use error::{ConfigError, ConfigErrors, ConfigWarning, ReadError};
pub use model::{
    AdaptiveBounds, Alias, Carp, CarpGroup, Config, ConfigSync, Filter, FilterRule, Ha, Interface,
    Nat, OutboundNat, OutboundNatRule, Routes, SrcConnRate, StateSync, StaticRoute, System,
    Translation, TranslationAddr, VipKind, VirtualIp, DEFAULT_CONFIG_SYNC_PORT, DEFAULT_RING_SIZE,
    DEFAULT_SRC_NODE_LIMIT, DEFAULT_STATE_LIMIT, DEFAULT_WORKERS, STATE_SYNC_MULTICAST,
};
pub use secrets::{mask_secrets, MASK};
pub use types::{
    Action, AddrSpec, AliasType, Endpoint, IfAddr, IpVersion, MacAddr, NatMode, PortRange, Prefix,
    Protocol, Role, SyncSection, VipType,
};

/// The largest config file tandem reads or takes over the control socket (a 10,000-rule file
/// is about 2 MB).
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Reads and validates the config file at `path`. Errors name the file as `path` was given.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_with_text(path).map(|(config, _)| config)
}

/// [`load`], also returning the file's text (for [`warnings_in`]).
pub fn load_with_text(path: &Path) -> Result<(Config, String), ConfigErrors> {
    let text = read_file(path).map_err(|e| ConfigError::Read {
        file: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let config = parse(&path.display().to_string(), &text)?;
    Ok((config, text))
}

/// The text of a config file: a regular file of at most [`MAX_FILE_BYTES`], as UTF-8. Opened
/// non-blocking, so that a FIFO named as a config file cannot hang the caller in `open`, and
/// checked on the descriptor itself (a device such as /dev/zero never is read).
pub fn read_file(path: &Path) -> Result<String, ReadError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(ReadError::NotRegularFile);
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge(meta.len()));
    }
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(ReadError::GrewTooLarge);
    }
    Ok(text)
}

/// What a valid config does that tandem advises against (a short CARP password), one per field,
/// in file order; `file_name` is how they name the file. Warnings never stop a config: an
/// existing cluster keeps running.
pub fn warnings(file_name: &str, config: &Config) -> Vec<ConfigWarning> {
    validate::warnings(file_name, config)
}

/// [`warnings`] of the config parsed from `text`, each naming the line of its field in `text`
/// (as [`parse`]'s errors do).
pub fn warnings_in(file_name: &str, config: &Config, text: &str) -> Vec<ConfigWarning> {
    let mut warnings = validate::warnings(file_name, config);
    let locator = locate::Locator::new(text);
    for w in &mut warnings {
        w.line = locator.line(&w.path);
    }
    warnings
}

/// Parses and validates `text`; `file_name` is how errors name it. Each validation error names
/// the line of its field in `text`.
pub fn parse(file_name: &str, text: &str) -> Result<Config, ConfigErrors> {
    parse_generated(file_name, text).map_err(|mut errors| {
        let locator = locate::Locator::new(text);
        for e in &mut errors.0 {
            if let ConfigError::Invalid { path, line, .. } = e {
                *line = locator.line(path);
            }
        }
        errors
    })
}

/// [`parse`] for a text no one wrote or reads (a config sync secondary's own file merged with
/// the primary's push): validation errors name their field only, as a line of the generated
/// text would send the admin to the wrong line of either file.
pub fn parse_generated(file_name: &str, text: &str) -> Result<Config, ConfigErrors> {
    let raw: raw::RawConfig = serde_path_to_error::deserialize(toml::Deserializer::new(text))
        .map_err(|e| toml_error(file_name, text, &e))?;
    let config = validate::validate(file_name, &raw)?;
    compiles(file_name, &config)?;
    Ok(config)
}

/// The daemon's compile of `config` (with a made-up MAC for every device: the check runs
/// anywhere) must succeed: whatever it refuses and validation let through is refused here too,
/// so that `tandemd --check-config`, `tandemctl config check` and the doctor never pass a config
/// that tandemd then refuses at its start or reload.
fn compiles(file_name: &str, config: &Config) -> Result<(), ConfigErrors> {
    let mac = tandem_dataplane::wire::MacAddr([0x02, 0, 0, 0, 0, 0x01]);
    let Err(e) = crate::compile::compile(config, 0, &move |_| Some(mac)) else {
        return Ok(());
    };
    let path = e.path().unwrap_or("(config)").to_owned();
    let text = e.to_string();
    let message = text
        .strip_prefix(&format!("{path}: "))
        .unwrap_or(&text)
        .to_owned();
    Err(ConfigErrors(vec![ConfigError::Invalid {
        file: file_name.to_owned(),
        path,
        message,
        line: None,
    }]))
}

/// Turns toml's error (and the field path serde walked to it) into one located error.
fn toml_error(
    file: &str,
    text: &str,
    e: &serde_path_to_error::Error<toml::de::Error>,
) -> ConfigError {
    let inner = e.inner();
    // In TOML's words: integers are read as i64 (so that validation can tell their range),
    // serde says map and sequence for table and array, and [x] for [[x]] is a usual slip.
    let lines: Vec<&str> = inner.message().trim().lines().collect();
    let message = lines
        .join("; ")
        .replace("expected i64", "expected an integer")
        .replace(
            "invalid type: map, expected a sequence",
            "expected an array of tables ([[...]]), found a table ([...])",
        )
        .replace("expected a sequence", "expected an array")
        .replace("invalid type: map", "invalid type: table")
        .replace("invalid type: sequence", "invalid type: array");
    let path = e.path().to_string();
    let Some(span) = inner.span() else {
        return ConfigError::Invalid {
            file: file.to_owned(),
            path,
            message,
            line: None,
        };
    };
    let (line, column) = line_column(text, span.start);
    if path == "." {
        ConfigError::Syntax {
            file: file.to_owned(),
            line,
            column,
            message,
        }
    } else {
        ConfigError::Shape {
            file: file.to_owned(),
            path,
            line,
            column,
            message,
        }
    }
}

/// 1-based line and column (in characters) of byte offset `at`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let before = text.get(..at.min(text.len())).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}
