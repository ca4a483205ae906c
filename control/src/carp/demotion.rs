//! The box-wide demotion, summed from named sources as FreeBSD sums them into
//! `net.inet.carp.demotion`: [`DEMOTION_FACTOR`] per CARP interface whose link is down
//! (`ifdown_demotion_factor`), the same while the state sync's bulk update runs (pfsync's
//! `carp_demotion_factor`), the same after repeated advert send errors (`senderr_demotion_factor`),
//! plus what the operator set. The sum goes to [`super::CarpGroupSet::set_demotion`].
//!
//! A link counts once per interface, not once per VHID on it (FreeBSD counts per VHID): the
//! effective skew clamps at 240 anyway, and the demote byte stays readable.

use std::collections::BTreeSet;

use super::DEMOTION_FACTOR;

/// The sources of the box-wide demotion.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Demotion {
    links_down: BTreeSet<String>,
    sync_pending: bool,
    send_errors: bool,
    operator: u32,
}

impl Demotion {
    /// The link of CARP interface `interface` went down or came back; true if that changed
    /// anything.
    pub fn set_link(&mut self, interface: &str, up: bool) -> bool {
        if up {
            self.links_down.remove(interface)
        } else {
            self.links_down.insert(interface.to_owned())
        }
    }

    /// The state sync's bulk update is running (a rebooted box must not preempt before it has
    /// the state table) or done.
    pub fn set_sync_pending(&mut self, pending: bool) -> bool {
        std::mem::replace(&mut self.sync_pending, pending) != pending
    }

    /// Adverts keep failing to go out (FreeBSD: after 3 errors in a row, until 3 successes).
    pub fn set_send_errors(&mut self, failing: bool) -> bool {
        std::mem::replace(&mut self.send_errors, failing) != failing
    }

    /// The operator's own addition.
    pub fn set_operator(&mut self, value: u32) -> bool {
        std::mem::replace(&mut self.operator, value) != value
    }

    /// The interfaces counted as down.
    pub fn links_down(&self) -> impl Iterator<Item = &str> {
        self.links_down.iter().map(String::as_str)
    }

    /// The sum.
    pub fn total(&self) -> u32 {
        let factors = self.links_down.len() as u32
            + u32::from(self.sync_pending)
            + u32::from(self.send_errors);
        factors
            .saturating_mul(DEMOTION_FACTOR)
            .saturating_add(self.operator)
    }
}
