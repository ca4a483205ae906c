//! tandem's control plane: the config model and its compilation into dataplane structures, CARP,
//! atomic config apply, and the control socket shared by `tandemd` and `tandemctl`.

pub mod api;
pub mod carp;
pub mod compile;
pub mod config;
pub mod config_sync;
pub mod daemon;
pub mod dhcp;
pub mod doctor;
pub mod handler;
pub mod human;
pub mod metrics;
pub mod pcap;
pub mod peer;
pub mod socket;
pub mod state_kill;
pub mod sync_service;
mod unproven;
