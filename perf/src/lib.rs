//! tandem's benchmark harness.

pub mod fixture;
pub mod lab_traffic;
