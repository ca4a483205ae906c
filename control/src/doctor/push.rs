//! The pair's config sync, played through: what the secondary would run after the primary's
//! next push (the primary's payload merged into the secondary's own file, as the secondary
//! merges it), checked as the secondary checks a push before it takes it.
//!
//! The two files can each pass every check and still never converge: a rule on the primary's
//! sync link that passes "the peer" (the secondary's address) is right on the primary, but the
//! pushed rules replace the secondary's, where that same rule then shuts the primary out. The
//! secondary refuses such a push, every time; only playing the push through shows it before.

use super::{compiled, single, BoxView, Findings, Severity};
use crate::config::{self, Config};
use crate::config_sync::{merge::merge, payload};

/// The push check of a pair where one box pushes and the other does not (both pushing is a
/// pair finding of its own), when both files' texts are known.
pub fn check(own: &BoxView<'_>, peer: &BoxView<'_>, f: &mut Findings) {
    let pushes = |c: &Config| c.ha.config_sync.as_ref().is_some_and(|cs| cs.pushes());
    let (primary, secondary, who) = match (pushes(own.config), pushes(peer.config)) {
        (true, false) => (own, peer, ""),
        (false, true) => (peer, own, "peer:"),
        _ => return,
    };
    let (Some(primary_text), Some(secondary_text), Some(cs), Some(link)) = (
        primary.text,
        secondary.text,
        primary.config.ha.config_sync.as_ref(),
        primary.config.sync_link(),
    ) else {
        return;
    };
    let field = format!("{who}ha.config_sync.sections");
    let mut refused = |why: String| {
        f.add(
            "config-sync-push-refused",
            Severity::Error,
            field.clone(),
            format!("the secondary would refuse the primary's push: {why}"),
            "fix what the message names: the secondary runs its own file until a push is taken",
        );
    };
    let payload = match payload::build(primary_text, &cs.sections) {
        Ok(p) => p,
        Err(e) => return refused(e.to_string()),
    };
    let merged = match merge(secondary_text, &payload.text, &payload.carried) {
        Ok(m) => m,
        Err(e) => return refused(e.to_string()),
    };
    let config = match config::parse_generated("the secondary's file with the push", &merged.text) {
        Ok(c) => c,
        Err(e) => return refused(e.messages().join("; ")),
    };
    let Some(compiled) = compiled(&config) else {
        return refused("the merged config does not compile".into());
    };
    let lockout = single::sync_lockout(&config, &compiled.sync, link.ip());
    if !lockout.is_empty() {
        f.add(
            "config-sync-push-locks-out",
            Severity::Error,
            field,
            format!(
                "once the primary's rules are pushed in place of the secondary's, {}. The secondary refuses every such push: config sync never converges",
                lockout.join("; ")
            ),
            format!(
                "the pushed rules replace the secondary's: on the primary, let the {} rules pass both boxes' sync addresses (an alias of both, or the sync network {}), not the peer alone",
                link.name,
                link.network()
            ),
        );
    }
}
