//! tandem's benchmark harness.

pub mod fixture;
