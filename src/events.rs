//! Publishing a Kubernetes Event about an object, for every controller: a failure to
//! publish is logged and never fails a reconcile.

use kube::{
    Resource,
    runtime::events::{Event, EventType, Recorder},
};

/// Publishes an Event of `type_` with `reason` and `note` about `object`, for
/// `action` (e.g. `Reconcile`, `Delete`).
pub async fn publish<K>(
    recorder: &Recorder,
    object: &K,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) where
    K: Resource<DynamicType = ()>,
{
    let event = Event {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: action.to_owned(),
        secondary: None,
    };
    if let Err(error) = recorder.publish(&event, &object.object_ref(&())).await {
        tracing::debug!(%error, "could not publish an Event");
    }
}
