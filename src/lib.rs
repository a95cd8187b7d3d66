//! tether's runtime: the command line, the controller process and its admin server.
//!
//! The runtime never names an AWS type; providers plug in through `tether-api`.

pub mod admin;
pub mod claims;
pub mod cli;
pub mod connection_secret;
pub mod crds;
pub mod events;
pub mod finalizers;
pub mod health;
pub mod kube_client;
pub mod leader;
pub mod memory;
pub mod metrics;
pub mod namespace_watch;
pub mod provider_config_usage;
pub mod providers;
pub mod reconciler;
pub mod run;
pub mod secret_watch;
pub mod shared_watch;
pub mod telemetry;

/// The field manager of every write tether makes, and the controller name in Events.
pub const FIELD_MANAGER: &str = "tether";

/// Parameters of a JSON merge or JSON patch written under [`FIELD_MANAGER`].
pub fn patch_params() -> kube::api::PatchParams {
    kube::api::PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..kube::api::PatchParams::default()
    }
}

/// Merges `metadata` into the metadata of the object `name` (a JSON merge patch under
/// [`FIELD_MANAGER`]); a `resourceVersion` in it makes the write conditional on the
/// object still being that version.
pub async fn merge_metadata<K>(
    api: &kube::Api<K>,
    name: &str,
    metadata: serde_json::Value,
) -> Result<K, kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = serde_json::json!({ "metadata": metadata });
    api.patch(name, &patch_params(), &kube::api::Patch::Merge(&patch))
        .await
}
