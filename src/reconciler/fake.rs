//! A fake managed kind, a recording provider client and a recording API server for
//! the runtime's own tests: the runtime is tested with a kind of no cloud, as a second
//! provider would plug in, in milliseconds.

use std::sync::{Arc, Mutex};

use hyper::body::Bytes;
use kube::CustomResource;
use serde::{Deserialize, Serialize};
use tether_api::{
    delta::Delta,
    external::{
        Connector, Context, Created, ExternalClient, Observation, ObservationOf, ObservedOf,
        ProviderError,
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
/// with the resource it was given (missing by default).
#[derive(Clone, Default)]
pub struct FakeClient {
    calls: Arc<Mutex<Vec<&'static str>>>,
    existing: Option<ObservedOf<FakeKind>>,
}

impl FakeClient {
    /// A client that observes `existing`.
    pub fn observing(existing: ObservedOf<FakeKind>) -> Self {
        Self {
            existing: Some(existing),
            ..Self::default()
        }
    }

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
        Ok(self
            .existing
            .clone()
            .map_or(Observation::Missing, Observation::Exists))
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

/// Connects every object to the same [`FakeClient`].
#[derive(Clone, Default)]
pub struct FakeConnector(pub FakeClient);

impl Connector<FakeKind> for FakeConnector {
    type Client = FakeClient;

    async fn connect(&self, _: &FakeKind) -> Result<FakeClient, ProviderError> {
        Ok(self.0.clone())
    }
}

/// A request the [`FakeApi`] received: its method, its path after the namespace
/// (`fakekinds/orders/status`, `events`), its query and its body.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: serde_json::Value,
}

impl Received {
    /// `PATCH fakekinds/orders`, say.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// An API server that records every request and answers a request about a
/// [`FakeKind`] with the object it was given, one about its CRD with a CRD (being
/// deleted when `crd_deleting`), any other with the request's own body (what a create
/// returns).
#[derive(Clone, Default)]
pub struct FakeApi {
    received: Arc<Mutex<Vec<Received>>>,
    /// Whether `FakeKind`'s CustomResourceDefinition is being deleted.
    pub crd_deleting: bool,
}

impl FakeApi {
    /// A client whose requests this fake answers, with `object` for a `FakeKind`.
    pub fn client(&self, object: &FakeKind) -> kube::Client {
        let received = self.received.clone();
        let object = Bytes::from(serde_json::to_vec(object).unwrap());
        let mut crd = serde_json::json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "fakekinds.fake.tether.dev"},
            "spec": {
                "group": "fake.tether.dev", "scope": "Namespaced", "versions": [],
                "names": {"plural": "fakekinds", "kind": "FakeKind"},
            },
        });
        if self.crd_deleting {
            crd["metadata"]["deletionTimestamp"] = serde_json::json!("2026-01-01T00:00:00Z");
        }
        let crd = Bytes::from(serde_json::to_vec(&crd).unwrap());
        let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
            let received = received.clone();
            let object = object.clone();
            let crd = crd.clone();
            async move {
                let (parts, body) = request.into_parts();
                let body = http_body_util::BodyExt::collect(body).await?.to_bytes();
                let path = parts.uri.path();
                let path = path
                    .split_once("/namespaces/shop/")
                    .map_or(path, |(_, rest)| rest)
                    .to_owned();
                let answer = if path.starts_with("fakekinds") {
                    object
                } else if path.ends_with("/customresourcedefinitions/fakekinds.fake.tether.dev") {
                    crd
                } else {
                    body.clone()
                };
                received.lock().unwrap().push(Received {
                    method: parts.method.to_string(),
                    path,
                    query: parts.uri.query().unwrap_or_default().to_owned(),
                    body: serde_json::from_slice(&body).unwrap_or_default(),
                });
                Ok::<_, tower::BoxError>(http::Response::new(http_body_util::Full::new(answer)))
            }
        });
        kube::Client::new(service, "shop")
    }

    /// The requests received so far, in order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// The writes received so far as lines (see [`Received::line`]), but Events.
    pub fn writes(&self) -> Vec<String> {
        self.received()
            .iter()
            .filter(|request| request.method != "GET" && request.path != "events")
            .map(Received::line)
            .collect()
    }

    /// The reasons of the Events published so far.
    pub fn events(&self) -> Vec<String> {
        self.received()
            .iter()
            .filter(|request| request.path == "events")
            .filter_map(|request| request.body["reason"].as_str().map(str::to_owned))
            .collect()
    }
}
