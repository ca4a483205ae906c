//! The compiled ruleset: what control compiles the TOML config into, and what the pipeline asks
//! about every packet that no state covers.

mod addr;

pub use addr::{AddrMatch, AddrSet, Addrs, Prefix, PrefixParseError};
