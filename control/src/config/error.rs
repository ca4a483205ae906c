//! Config errors: each one names the file, then the field path (or the line), then the problem.

use std::fmt;

/// One problem in a config file. The Display form is one line: `FILE: WHERE: PROBLEM`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `FILE: cannot read: REASON`: the file could not be read.
    #[error("{file}: cannot read: {reason}")]
    Read {
        /// The file as named to [`load`](super::load).
        file: String,
        /// The OS error.
        reason: String,
    },
    /// `FILE: line L, column C: MESSAGE`: the text is not valid TOML.
    #[error("{file}: line {line}, column {column}: {message}")]
    Syntax {
        /// The file name.
        file: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column (in characters) of the error.
        column: usize,
        /// toml's message, on one line.
        message: String,
    },
    /// `FILE: PATH: MESSAGE (line L, column C)`: valid TOML of the wrong shape: an unknown key,
    /// or a value of the wrong TOML type (a string where an integer is expected...).
    #[error("{file}: {path}: {message} (line {line}, column {column})")]
    Shape {
        /// The file name.
        file: String,
        /// The field path, e.g. `virtual_ips[1].vhid`.
        path: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column (in characters) of the error.
        column: usize,
        /// toml's message, on one line.
        message: String,
    },
    /// `FILE: PATH: MESSAGE (line L)`: a value TOML accepts and tandem does not, e.g.
    /// `fw-a.toml: virtual_ips[1].vhid: 0 is out of range 1..=255 (line 41)`. The line is the
    /// field's, or for a missing field its table's; without one (a field of no table in the
    /// file, or text not read from a file) the suffix is left out.
    #[error("{file}: {path}: {message}{}", at_line(*.line))]
    Invalid {
        /// The file name.
        file: String,
        /// The field path, e.g. `virtual_ips[1].vhid`.
        path: String,
        /// What is wrong.
        message: String,
        /// 1-based line of the field (or of its table), where the file shows it.
        line: Option<usize>,
    },
}

/// ` (line L)`, or nothing.
fn at_line(line: Option<usize>) -> String {
    line.map(|l| format!(" (line {l})")).unwrap_or_default()
}

impl ConfigError {
    /// The field path the error is about, if it is about one.
    pub fn path(&self) -> Option<&str> {
        match self {
            Self::Shape { path, .. } | Self::Invalid { path, .. } => Some(path),
            Self::Read { .. } | Self::Syntax { .. } => None,
        }
    }
}

/// A value tandem accepts but advises against, e.g.
/// `fw-a.toml: virtual_ips[0].password: is 6 bytes long; ... (line 40)`. `tandemd
/// --check-config` prints warnings and still exits 0; the daemon logs them when it starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {path}: {message}{}", at_line(*.line))]
pub struct ConfigWarning {
    /// The file name.
    pub file: String,
    /// The field path, e.g. `virtual_ips[0].password`.
    pub path: String,
    /// What is advised against, and why.
    pub message: String,
    /// 1-based line of the field (or of its table) where the file shows it: set by
    /// [`warnings_in`](super::warnings_in), which has the text.
    pub line: Option<usize>,
}

/// Every problem found in one config file. Displays one error per line, in the order sections are
/// checked: system, interfaces, aliases, virtual_ips, routes, nat, filter, ha; in file order
/// within a section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The errors.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    /// How many errors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is none (a `ConfigErrors` returned by this module never is).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Each error's one-line message.
    pub fn messages(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(e: ConfigError) -> Self {
        Self(vec![e])
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Why a config file's text could not be read ([`read_file`](super::read_file)). Kept apart
/// from [`ConfigError`], which is `Clone` and `Eq` for the validation tests: `ConfigError::Read`
/// carries this one's message.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Opening or reading failed (the OS error, as it says it).
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A directory, device or FIFO: never read (a device such as /dev/zero would never end).
    #[error("not a regular file")]
    NotRegularFile,
    /// The file's size says it is too large.
    #[error("{0} bytes, more than the {max} a config file may have", max = super::MAX_FILE_BYTES)]
    TooLarge(u64),
    /// The file grew past the limit while it was read.
    #[error("more than the {} bytes a config file may have", super::MAX_FILE_BYTES)]
    GrewTooLarge,
}
