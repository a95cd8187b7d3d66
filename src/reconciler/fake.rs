//! A fake managed kind and a recording provider client for the runtime's own tests:
//! the runtime is tested with a kind of no cloud, as a second provider would plug in.

use std::sync::{Arc, Mutex};

use kube::CustomResource;
use serde::{Deserialize, Serialize};
use tether_api::{
    delta::Delta,
    external::{
        Context, Created, ExternalClient, Observation, ObservationOf, ObservedOf, ProviderError,
    },
    managed::{DeletionPolicy, Managed, ManagedFields, ManagedStatus},
};

/// A resource of no cloud: a size, and a Secret it may read.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "fake.tether.dev",
    version = "v1",
    kind = "FakeKind",
    namespaced,
    status = "FakeStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct FakeKindSpec {
    #[serde(flatten)]
    pub managed: ManagedFields,
    /// The size the resource should have.
    #[serde(default)]
    pub size: u32,
    /// A Secret in the object's namespace the object reads, when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret: Option<String>,
}

/// `status` of a [`FakeKind`].
pub type FakeStatus = ManagedStatus<FakeAtProvider>;

/// What the fake cloud reports of the resource.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct FakeAtProvider {
    /// The size the resource has.
    pub size: Option<u32>,
}

/// How the fake resource differs from its spec.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FakeDelta {
    /// The size it should have, when it has another.
    pub size: Option<u32>,
}

impl Delta for FakeDelta {
    fn is_empty(&self) -> bool {
        self.size.is_none()
    }

    fn describe(&self) -> Vec<String> {
        self.size.iter().map(|_| "size".to_owned()).collect()
    }
}

impl Managed for FakeKind {
    type AtProvider = FakeAtProvider;
    type Delta = FakeDelta;

    const DEFAULT_DELETION_POLICY: DeletionPolicy = DeletionPolicy::Delete;
    const READS_SECRETS: bool = true;

    fn managed_fields(&self) -> &ManagedFields {
        &self.spec.managed
    }

    fn status(&self) -> Option<&FakeStatus> {
        self.status.as_ref()
    }

    fn default_external_name(&self) -> Option<String> {
        self.metadata.name.clone()
    }

    fn secret_references(&self) -> Vec<String> {
        self.spec.password_secret.iter().cloned().collect()
    }
}

/// A [`FakeKind`] named `name` in namespace `shop`, reading Secret `password_secret`.
pub fn fake(name: &str, password_secret: Option<&str>) -> FakeKind {
    let mut object = FakeKind::new(
        name,
        FakeKindSpec {
            password_secret: password_secret.map(str::to_owned),
            ..FakeKindSpec::default()
        },
    );
    object.metadata.namespace = Some("shop".to_owned());
    object
}

/// A provider's client that records the calls that reach it, and answers `observe`
/// with the resource as it is (missing until created).
#[derive(Clone, Default)]
pub struct FakeClient {
    calls: Arc<Mutex<Vec<&'static str>>>,
}

impl FakeClient {
    /// The calls that reached the client, in order.
    pub fn calls(&self) -> Vec<&'static str> {
        self.calls.lock().unwrap().clone()
    }

    fn record(&self, call: &'static str) {
        self.calls.lock().unwrap().push(call);
    }
}

impl ExternalClient<FakeKind> for FakeClient {
    async fn observe(
        &self,
        _: &FakeKind,
        _: Context<'_>,
    ) -> Result<ObservationOf<FakeKind>, ProviderError> {
        self.record("observe");
        Ok(Observation::Missing)
    }

    async fn create(&self, _: &FakeKind, _: Context<'_>) -> Result<Created, ProviderError> {
        self.record("create");
        Ok(Created::default())
    }

    async fn update(
        &self,
        _: &FakeKind,
        _: Context<'_>,
        _: &ObservedOf<FakeKind>,
    ) -> Result<(), ProviderError> {
        self.record("update");
        Ok(())
    }

    async fn delete(
        &self,
        _: &FakeKind,
        _: Context<'_>,
        _: DeletionPolicy,
    ) -> Result<Option<String>, ProviderError> {
        self.record("delete");
        Ok(None)
    }
}
