//! A fake managed kind, a recording provider client and a recording API server for
//! the runtime's own tests: the runtime is tested with a kind of no cloud, as a second
//! provider would plug in, in milliseconds.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use hyper::body::Bytes;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, ResourceExt, runtime::events::Reporter};
use serde::{Deserialize, Serialize};
use tether_api::{
    SecretKeyRef,
    claim::{Claim, ClaimStatus, Class},
    delta::Delta,
    external::{
        ConnectionDetails, Connector, Context, Created, ExternalClient, Observation, ObservationOf,
        ObservedOf, ProviderError,
    },
    managed::{DeletionPolicy, Managed, ManagedFields, ManagedStatus},
    rotation::Login,
    snapshot::{Freshness, Known, Listing, Snapshot, WriteGuard},
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

    fn secret_key_refs(&self) -> Vec<SecretKeyRef> {
        self.spec
            .password_secret
            .iter()
            .map(|name| SecretKeyRef {
                field: PASSWORD_SECRET_FIELD.to_owned(),
                name: name.clone(),
                key: "password".to_owned(),
            })
            .collect()
    }
}

/// The field of a [`FakeKind`] naming its Secret, whose key `password` it reads.
pub const PASSWORD_SECRET_FIELD: &str = "passwordSecret";

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

/// A provider's client that records the calls that reach it (and the Secret values
/// `observe` was given), and answers `observe` with the resource it was given (missing
/// by default). It keeps a shared snapshot of sizes by object name, as a kind of the
/// cloud would, and records in it a read made during each write, as a listing that
/// started while the cloud applied the write would be.
#[derive(Clone, Default)]
pub struct FakeClient {
    calls: Arc<Mutex<Vec<&'static str>>>,
    passwords: Arc<Mutex<Vec<Option<String>>>>,
    existing: Option<ObservedOf<FakeKind>>,
    snapshot: Snapshot<u32>,
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

    /// The value of [`PASSWORD_SECRET_FIELD`] in the context of each `observe`.
    pub fn passwords(&self) -> Vec<Option<String>> {
        self.passwords.lock().unwrap().clone()
    }

    /// Its shared snapshot.
    pub fn snapshot(&self) -> &Snapshot<u32> {
        &self.snapshot
    }

    /// What the snapshot says of `name`'s resource to a lookup that takes a read up
    /// to a minute old.
    pub async fn known(&self, name: &str) -> Known<u32> {
        let reads = Freshness::Reads(std::time::Duration::from_secs(60));
        self.snapshot
            // Never called: a lookup of reads never lists.
            .lookup(name, reads, || async { Err::<Listing<u32>, ()>(()) })
            .await
            .unwrap()
    }

    fn record(&self, call: &'static str) {
        self.calls.lock().unwrap().push(call);
    }

    /// Records `call`, a write to `object`'s resource, and a read of the resource made
    /// while the write is under way.
    fn write(&self, call: &'static str, object: &FakeKind) {
        self.record(call);
        self.snapshot
            .record(&object.name_any(), Instant::now(), Some(object.spec.size));
    }
}

impl ExternalClient<FakeKind> for FakeClient {
    fn write_guard(&self, object: &FakeKind, _: Context<'_>) -> Option<WriteGuard> {
        Some(self.snapshot.write_guard(&object.name_any()))
    }

    async fn observe(
        &self,
        _: &FakeKind,
        context: Context<'_>,
    ) -> Result<ObservationOf<FakeKind>, ProviderError> {
        self.record("observe");
        let password = context.secret(PASSWORD_SECRET_FIELD);
        self.passwords
            .lock()
            .unwrap()
            .push(password.map(|value| value.expose().to_owned()));
        Ok(self
            .existing
            .clone()
            .map_or(Observation::Missing, Observation::Exists))
    }

    async fn create(&self, object: &FakeKind, _: Context<'_>) -> Result<Created, ProviderError> {
        self.write("create", object);
        Ok(Created::default())
    }

    async fn update(
        &self,
        object: &FakeKind,
        _: Context<'_>,
        _: &ObservedOf<FakeKind>,
    ) -> Result<(), ProviderError> {
        self.write("update", object);
        Ok(())
    }

    async fn delete(
        &self,
        object: &FakeKind,
        _: Context<'_>,
        _: DeletionPolicy,
    ) -> Result<Option<String>, ProviderError> {
        self.write("delete", object);
        Ok(None)
    }

    async fn activate_login(
        &self,
        _: &FakeKind,
        _: &ConnectionDetails,
        _: &ObservedOf<FakeKind>,
        _: Login,
    ) -> Result<ConnectionDetails, ProviderError> {
        self.record("activate_login");
        Ok(ConnectionDetails::default())
    }

    async fn retire_login(
        &self,
        _: &FakeKind,
        _: &ConnectionDetails,
        _: &ObservedOf<FakeKind>,
        _: Login,
    ) -> Result<(), ProviderError> {
        self.record("retire_login");
        Ok(())
    }
}

/// A class of [`FakeKind`]s a platform team writes: the size it gives.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "fake.tether.dev",
    version = "v1",
    kind = "FakeClass",
    schema = "disabled"
)]
pub struct FakeClassSpec {
    /// The size a claim gets when it asks for none.
    pub size: u32,
}

impl Class for FakeClass {
    fn namespace_selector(&self) -> Option<&LabelSelector> {
        None
    }

    fn claims_per_namespace(&self) -> Option<u32> {
        None
    }
}

/// A claim of a [`FakeKind`] an application team writes: its class, and a size.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "fake.tether.dev",
    version = "v1",
    kind = "FakeClaim",
    namespaced,
    status = "ClaimStatus<u32>",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct FakeClaimSpec {
    /// The class the claim uses.
    pub class_name: String,
    /// The size it asks for, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u32>,
}

impl Claim for FakeClaim {
    type Class = FakeClass;
    type Managed = FakeKind;
    type Settings = u32;

    fn class_name(&self) -> &str {
        &self.spec.class_name
    }

    fn claim_status(&self) -> Option<&ClaimStatus<u32>> {
        self.status.as_ref()
    }

    fn settings(&self, class: &FakeClass) -> Result<u32, Vec<String>> {
        Ok(self.spec.size.unwrap_or(class.spec.size))
    }

    fn keep_unsafe_changes(&self, wanted: &u32, _: &u32) -> (u32, Vec<&'static str>) {
        (*wanted, Vec::new())
    }

    fn accept_changes(&self, wanted: &u32, _: &u32) -> u32 {
        *wanted
    }

    fn compose(&self, _: &FakeClass, size: &u32) -> FakeKind {
        FakeKind::new(
            &self.name_any(),
            FakeKindSpec {
                size: *size,
                ..FakeKindSpec::default()
            },
        )
    }

    fn endpoint(_: &FakeKind) -> Option<String> {
        None
    }

    fn connection_secret_name(&self) -> String {
        self.name_any()
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

/// An API server that records every request, and answers for the objects it holds
/// (reads and writes alike: a write changes nothing), "not found" to a read of
/// anything else, and a write of anything else with the request's own body (what a
/// create returns). It holds the CRDs of `FakeKind` and `FakeClaim` from the start.
#[derive(Clone)]
pub struct FakeApi {
    received: Arc<Mutex<Vec<Received>>>,
    /// The objects it holds, by path (`fakekinds/orders`, `fakeclasses/gold`).
    objects: Arc<Mutex<BTreeMap<String, serde_json::Value>>>,
}

impl Default for FakeApi {
    fn default() -> Self {
        let api = Self {
            received: Arc::default(),
            objects: Arc::default(),
        };
        api.hold_crd("fakekinds", false);
        api.hold_crd("fakeclaims", false);
        api
    }
}

impl FakeApi {
    /// Holds `object` at `path` (`fakekinds/orders`) from now on.
    pub fn hold(&self, path: &str, object: &impl Serialize) {
        let object = serde_json::to_value(object).unwrap();
        self.objects.lock().unwrap().insert(path.to_owned(), object);
    }

    /// Holds the CRD of the fake kind of plural `plural`, being deleted when `deleting`.
    pub fn hold_crd(&self, plural: &str, deleting: bool) {
        let name = format!("{plural}.fake.tether.dev");
        let mut crd = serde_json::json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": name},
            "spec": {
                "group": "fake.tether.dev", "scope": "Namespaced", "versions": [],
                "names": {"plural": plural, "kind": plural},
            },
        });
        if deleting {
            crd["metadata"]["deletionTimestamp"] = serde_json::json!("2026-01-01T00:00:00Z");
        }
        self.hold(&format!("customresourcedefinitions/{name}"), &crd);
    }

    /// A client whose requests this fake answers.
    pub fn client(&self) -> kube::Client {
        let received = self.received.clone();
        let objects = self.objects.clone();
        let service = tower::service_fn(move |request: http::Request<kube::client::Body>| {
            let received = received.clone();
            let objects = objects.clone();
            async move {
                let (parts, body) = request.into_parts();
                let body = http_body_util::BodyExt::collect(body).await?.to_bytes();
                let path = resource_path(parts.uri.path());
                let held = objects
                    .lock()
                    .unwrap()
                    .get(path.trim_end_matches("/status"))
                    .cloned();
                let response = match held {
                    Some(object) => http::Response::new(serde_json::to_vec(&object)?.into()),
                    None if parts.method == http::Method::GET => {
                        let status = serde_json::json!({
                            "kind": "Status", "apiVersion": "v1", "metadata": {},
                            "status": "Failure", "reason": "NotFound", "code": 404,
                            "message": format!("{path} not found"),
                        });
                        let mut response = http::Response::new(serde_json::to_vec(&status)?.into());
                        *response.status_mut() = http::StatusCode::NOT_FOUND;
                        response
                    }
                    None => http::Response::new(body.clone()),
                };
                received.lock().unwrap().push(Received {
                    method: parts.method.to_string(),
                    path,
                    query: parts.uri.query().unwrap_or_default().to_owned(),
                    body: serde_json::from_slice(&body).unwrap_or_default(),
                });
                Ok::<_, tower::BoxError>(response.map(http_body_util::Full::<Bytes>::new))
            }
        });
        kube::Client::new(service, "shop")
    }

    /// A client of this fake (see [`FakeApi::client`]) and an Event publisher on it.
    pub fn client_and_events(&self) -> (kube::Client, crate::events::Publisher) {
        let kube = self.client();
        let events = crate::events::Publisher::new(
            kube.clone(),
            Reporter {
                controller: crate::FIELD_MANAGER.to_owned(),
                instance: None,
            },
        );
        (kube, events)
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

/// A request's path after its API group and version, and after `namespaces/shop/`:
/// `fakekinds/orders/status`, `events`, `fakeclasses/gold`.
fn resource_path(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest = match segments.as_slice() {
        ["api", _, rest @ ..] | ["apis", _, _, rest @ ..] => rest,
        other => other,
    };
    let rest = match rest {
        ["namespaces", "shop", inner @ ..] if !inner.is_empty() => inner,
        _ => rest,
    };
    rest.join("/")
}
