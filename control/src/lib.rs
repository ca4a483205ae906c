//! tandem's control plane: the config model and its compilation into dataplane structures, CARP,
//! atomic config apply, and the control socket shared by `tandemd` and `tandemctl`.

pub mod compile;
pub mod config;
pub mod socket;
