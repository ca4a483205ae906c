//! tandem's benchmark harness.
