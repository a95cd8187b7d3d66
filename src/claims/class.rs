//! One reconcile of a class: a class keeps this controller's finalizer while claims in
//! its scope use it (the claim reconcile adds it before it builds anything) and loses
//! it with the last of them, so a class in use cannot disappear under its claims.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use kube::{
    Api, Resource, ResourceExt,
    runtime::{controller::Action, events::EventType},
};
use tether_api::{claim::Claim, conditions::reasons};

use super::{Error, Shared};
use crate::{crds, finalizers};

/// How long a class waits for the claim cache's first list.
const CACHE_WAIT: Duration = Duration::from_secs(1);

/// How many claims an Event names before it only counts.
const NAMED_CLAIMS: usize = 5;

/// Releases the class once no claim in scope uses it; while it is being deleted and
/// still used, says which claims hold it.
pub(super) async fn reconcile<C: Claim>(
    class: Arc<C::Class>,
    shared: Arc<Shared<C>>,
) -> Result<Action, Error> {
    // Before the claim cache is filled, every class would look unused. (Not
    // `Store::wait_until_ready`: it wakes one waiter only, and the claim controller is
    // one.)
    if !shared.claims_listed.load(Ordering::Acquire) {
        return Ok(Action::requeue(CACHE_WAIT));
    }
    let api: Api<C::Class> = Api::all(shared.kube.clone());
    let name = class.name_any();
    let deleting = class.meta().deletion_timestamp.is_some();
    let mut users: Vec<String> = shared
        .claims
        .state()
        .iter()
        .filter(|claim| claim.class_name() == name)
        .map(|claim| {
            format!(
                "{}/{}",
                claim.namespace().unwrap_or_default(),
                claim.name_any()
            )
        })
        .collect();
    users.sort();
    if users.is_empty() || (deleting && crds::being_deleted::<C::Class>(&shared.kube).await?) {
        if finalizers::remove(&api, &*class, &shared.class_finalizer).await? {
            tracing::info!(kind = %C::Class::kind(&()), %name, "no claim uses the class any more; released it");
        }
        return Ok(Action::await_change());
    }
    if deleting {
        let named: Vec<&str> = users
            .iter()
            .take(NAMED_CLAIMS)
            .map(String::as_str)
            .collect();
        let more = users.len().saturating_sub(NAMED_CLAIMS);
        let note = format!(
            "{} {name} is in use by {} {} ({}{}); it is deleted once they are gone",
            C::Class::kind(&()),
            users.len(),
            C::kind(&()),
            named.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            },
        );
        shared
            .events
            .publish(&*class, EventType::Warning, reasons::IN_USE, "Delete", note)
            .await;
    }
    // A claim's deletion can reach this controller's watch before the cache it counts
    // from: look again soon rather than wait for a change that came.
    Ok(Action::requeue(shared.settings.wait_interval))
}
