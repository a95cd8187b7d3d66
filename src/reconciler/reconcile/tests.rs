//! The reconcile of a fake kind against a recording API server: the order, the
//! finalizer, create-pending and deletion, in milliseconds and without a cloud.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;
use tether_api::{
    external::{ConnectionDetails, Observed, Readiness},
    managed::{CREATE_PENDING_ANNOTATION, EXTERNAL_NAME_ANNOTATION, ManagementPolicy},
};

use super::*;
use crate::{
    reconciler::{
        Settings,
        fake::{FakeApi, FakeClient, FakeConnector, FakeDelta, FakeKind, Received, fake},
        pacing::Pacing,
        references,
    },
    secret_watch::SecretNames,
};

/// `orders` in namespace `shop`, with tether's finalizer when `finalizer`, being
/// deleted when `deleting`, and with `annotations`.
fn orders(finalizer: bool, deleting: bool, annotations: &[(&str, &str)]) -> FakeKind {
    let mut object = fake("orders", None);
    object.metadata.uid = Some("u-orders".to_owned());
    object.metadata.resource_version = Some("7".to_owned());
    object.metadata.generation = Some(1);
    if finalizer {
        object.metadata.finalizers = Some(vec![FINALIZER.to_owned()]);
    }
    if deleting {
        object.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
    }
    object.metadata.annotations = Some(
        annotations
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect(),
    );
    object
}

/// What one controller shares between reconciles, around the fake API and client.
fn shared(api: &FakeApi, object: &FakeKind, client: &FakeClient) -> Arc<Shared<FakeConnector>> {
    api.hold("fakekinds/orders", object);
    let (kube, events) = api.client_and_events();
    Arc::new(Shared {
        kube,
        connector: FakeConnector(client.clone()),
        events,
        settings: Settings::default(),
        pacing: Pacing::default(),
        references: references::Registry::default(),
        secrets: SecretNames::default(),
    })
}

/// A new fake API (holding `object`) and client, and what a controller shares around
/// them: for a test that reconciles more than once.
fn fresh(object: &FakeKind) -> (FakeApi, FakeClient, Arc<Shared<FakeConnector>>) {
    let (api, client) = (FakeApi::default(), FakeClient::default());
    let shared = shared(&api, object, &client);
    (api, client, shared)
}

/// Reconciles `object` once; the calls that reached the cloud and the API's writes.
async fn reconcile_once(object: FakeKind) -> (Vec<&'static str>, FakeApi) {
    reconcile_once_with(FakeApi::default(), object).await
}

/// Reconciles `object` once against `api`.
async fn reconcile_once_with(api: FakeApi, object: FakeKind) -> (Vec<&'static str>, FakeApi) {
    reconcile_against(api, FakeClient::default(), object).await
}

/// Reconciles `object` once against `api` and `client`.
async fn reconcile_against(
    api: FakeApi,
    client: FakeClient,
    object: FakeKind,
) -> (Vec<&'static str>, FakeApi) {
    let shared = shared(&api, &object, &client);
    reconcile(Arc::new(object), shared).await.unwrap();
    (client.calls(), api)
}

#[tokio::test]
async fn a_new_object_gets_its_finalizer_with_its_create_marks_and_no_cloud_write_in_its_first_reconcile()
 {
    let (calls, api) = reconcile_once(orders(false, false, &[])).await;
    assert_eq!(calls, ["observe"]);
    assert_eq!(api.writes(), ["PATCH fakekinds/orders"]);
    let received = &api.received()[0];
    assert!(
        received.query.contains("fieldManager=tether&")
            || received.query.ends_with("fieldManager=tether"),
        "under tether's own manager, so the name it records is not taken for a user's: {}",
        received.query
    );
    let patch = &received.body["metadata"];
    assert_eq!(patch["finalizers"], json!([FINALIZER]));
    assert_eq!(
        patch["resourceVersion"],
        json!("7"),
        "on condition that no finalizer was added since"
    );
    assert_eq!(
        patch["annotations"][EXTERNAL_NAME_ANNOTATION],
        json!("orders")
    );
    assert!(patch["annotations"][CREATE_PENDING_ANNOTATION].is_string());
}

#[tokio::test]
async fn the_create_marked_with_the_finalizer_is_sent_next_without_another_write_first() {
    let object = orders(false, false, &[]);
    let (api, client, shared) = fresh(&object);
    reconcile(Arc::new(object), shared.clone()).await.unwrap();
    let marked = api.received()[0].body["metadata"]["annotations"][CREATE_PENDING_ANNOTATION]
        .as_str()
        .unwrap()
        .to_owned();
    // Back with the finalizer's watch event: the cache shows the patch.
    let object = orders(
        true,
        false,
        &[
            (CREATE_PENDING_ANNOTATION, &marked),
            (EXTERNAL_NAME_ANNOTATION, "orders"),
        ],
    );
    reconcile(Arc::new(object), shared).await.unwrap();
    assert_eq!(client.calls(), ["observe", "observe", "create"]);
    assert_eq!(
        api.writes(),
        ["PATCH fakekinds/orders"],
        "the marks are written once"
    );
    assert_eq!(api.events(), ["Created"]);
}

#[tokio::test]
async fn an_object_with_its_finalizer_is_created_after_its_create_is_recorded() {
    let (calls, api) = reconcile_once(orders(true, false, &[])).await;
    assert_eq!(calls, ["observe", "create"]);
    assert_eq!(
        api.writes(),
        ["PATCH fakekinds/orders"],
        "no status write: the first look after the create writes what the cloud shows"
    );
    let record = &api.received()[0];
    let annotations = &record.body["metadata"]["annotations"];
    assert_eq!(annotations[EXTERNAL_NAME_ANNOTATION], json!("orders"));
    assert!(
        annotations[CREATE_PENDING_ANNOTATION].is_string(),
        "{record:?}"
    );
    assert_eq!(api.events(), ["Created"]);
}

#[tokio::test]
async fn a_create_the_cache_does_not_show_yet_is_waited_for_not_sent_again() {
    // The cache shows the object as it was before the create was recorded, twice.
    let object = orders(true, false, &[]);
    let (api, client, shared) = fresh(&object);
    reconcile(Arc::new(object.clone()), shared.clone())
        .await
        .unwrap();
    reconcile(Arc::new(object), shared).await.unwrap();
    assert_eq!(client.calls(), ["observe", "create", "observe"]);
    let last = api.received().pop().unwrap();
    assert_eq!(last.line(), "PATCH fakekinds/orders/status");
    let ready = &last.body["status"]["conditions"][0];
    assert_eq!(
        (&ready["type"], &ready["reason"]),
        (&json!("Ready"), &json!("Creating"))
    );
}

#[tokio::test]
async fn a_paused_object_says_so_and_makes_no_cloud_call() {
    for deleting in [false, true] {
        let (calls, api) =
            reconcile_once(orders(true, deleting, &[(PAUSED_ANNOTATION, "true")])).await;
        assert!(calls.is_empty(), "{calls:?}");
        assert_eq!(api.writes(), ["PATCH fakekinds/orders/status"]);
        let status = api.received().pop().unwrap().body;
        let synced = &status["status"]["conditions"][0];
        let reason = if deleting {
            "DeletionPaused"
        } else {
            "ReconcilePaused"
        };
        assert_eq!(
            (&synced["type"], &synced["reason"]),
            (&json!("Synced"), &json!(reason))
        );
    }
}

#[tokio::test]
async fn unreadable_annotations_are_reported_and_nothing_is_called() {
    let (calls, api) = reconcile_once(orders(true, false, &[(PAUSED_ANNOTATION, "yes")])).await;
    assert!(calls.is_empty(), "{calls:?}");
    assert_eq!(api.writes(), ["PATCH fakekinds/orders/status"]);
    assert_eq!(api.events(), ["InvalidAnnotation"]);
}

#[tokio::test]
async fn a_deleted_object_whose_resource_is_gone_loses_its_finalizer() {
    let (calls, api) = reconcile_once(orders(true, true, &[])).await;
    assert_eq!(calls, ["observe"], "nothing to delete");
    assert_eq!(api.writes(), ["PATCH fakekinds/orders"]);
    assert_eq!(
        api.received().last().unwrap().body,
        json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ])
    );
    assert_eq!(api.events(), ["Deleted"]);
}

#[tokio::test]
async fn a_deleted_object_without_the_finalizer_is_left_alone() {
    let (calls, api) = reconcile_once(orders(false, true, &[])).await;
    assert!(calls.is_empty(), "{calls:?}");
    assert!(api.received().is_empty(), "{:?}", api.received());
}

#[tokio::test]
async fn a_retained_object_lets_go_without_a_cloud_call() {
    let mut object = orders(true, true, &[]);
    object.spec.managed.deletion_policy = Some(tether_api::managed::DeletionPolicy::Retain);
    let (calls, api) = reconcile_once(object).await;
    assert!(calls.is_empty(), "{calls:?}");
    assert_eq!(api.writes(), ["PATCH fakekinds/orders"]);
    assert_eq!(api.events(), ["Retained"]);
}

#[tokio::test]
async fn an_object_going_with_its_crd_is_let_go_even_when_paused() {
    let api = FakeApi::default();
    api.hold_crd("fakekinds", true);
    let object = orders(true, true, &[(PAUSED_ANNOTATION, "true")]);
    let (calls, api) = reconcile_once_with(api, object).await;
    assert!(calls.is_empty(), "{calls:?}");
    assert_eq!(api.writes(), ["PATCH fakekinds/orders"]);
    assert_eq!(api.events(), ["LeftInCloud"]);
}

/// A resource of size 1 (the spec asks for 0) that records `owner_uid`.
fn existing(owner_uid: Option<&str>) -> FakeClient {
    FakeClient::observing(Observed {
        external_name: None,
        owner_uid: owner_uid.map(str::to_owned),
        delta: FakeDelta { size: Some(0) },
        readiness: Readiness::Ready,
        at_provider: Default::default(),
        connection: ConnectionDetails::default(),
    })
}

#[tokio::test]
async fn a_resource_this_object_created_is_updated_where_it_differs() {
    let client = existing(Some("u-orders"));
    let (calls, api) =
        reconcile_against(FakeApi::default(), client, orders(true, false, &[])).await;
    assert_eq!(calls, ["observe", "update"]);
    assert_eq!(api.events(), ["Updated"]);
}

#[tokio::test]
async fn a_resource_nobody_adopted_is_neither_changed_nor_deleted() {
    for deleting in [false, true] {
        let object = orders(true, deleting, &[]);
        let (calls, api) = reconcile_against(FakeApi::default(), existing(None), object).await;
        assert_eq!(calls, ["observe"], "deleting: {deleting}");
        let reason = if deleting {
            "Retained"
        } else {
            reasons::NOT_OWNED
        };
        assert_eq!(api.events(), [reason]);
    }
}

#[tokio::test]
async fn an_observe_only_object_reports_what_differs_and_changes_nothing() {
    // ObserveOnly adopts a resource nobody owns, and never writes to it.
    let mut object = orders(true, false, &[]);
    object.spec.managed.management_policy = ManagementPolicy::ObserveOnly;
    let (calls, api) = reconcile_against(FakeApi::default(), existing(None), object).await;
    assert_eq!(calls, ["observe"]);
    assert!(api.events().is_empty(), "{:?}", api.events());
    let status = api
        .received()
        .into_iter()
        .rev()
        .find(|request| request.path.ends_with("/status"))
        .unwrap()
        .body;
    assert!(
        status["status"]["conditions"][1]["message"]
            .as_str()
            .is_some_and(|message| message.starts_with("ObserveOnly: the cloud resource differs")),
        "{status}"
    );
}

#[tokio::test]
async fn deleting_a_resource_this_object_created_keeps_the_finalizer_until_it_is_gone() {
    let client = existing(Some("u-orders"));
    let (calls, api) = reconcile_against(FakeApi::default(), client, orders(true, true, &[])).await;
    assert_eq!(calls, ["observe", "delete"]);
    assert_eq!(
        api.writes(),
        ["PATCH fakekinds/orders/status"],
        "the finalizer stays"
    );
    assert_eq!(api.events(), ["DeletionStarted"]);
}

/// Secret `admin` in namespace `shop` holding `data`.
fn admin_secret(data: &[(&str, &[u8])]) -> k8s_openapi::api::core::v1::Secret {
    k8s_openapi::api::core::v1::Secret {
        metadata: kube::core::ObjectMeta {
            name: Some("admin".to_owned()),
            namespace: Some("shop".to_owned()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(key, value)| ((*key).to_owned(), k8s_openapi::ByteString(value.to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

/// `orders` with its finalizer, reading key `password` of Secret `admin`.
fn reading_admin() -> FakeKind {
    let mut object = orders(true, false, &[]);
    object.spec.password_secret = Some("admin".to_owned());
    object
}

/// Reconciles `object` once against `api`; the provider's client, the API, and the
/// metrics the reconcile left.
async fn reconcile_measured(api: FakeApi, object: FakeKind) -> (FakeClient, FakeApi, String) {
    let client = FakeClient::default();
    let shared = shared(&api, &object, &client);
    reconcile(Arc::new(object), shared.clone()).await.unwrap();
    (client, api, shared.settings.metrics.render())
}

/// The `Synced` condition of the last status the reconcile wrote.
fn last_synced(api: &FakeApi) -> serde_json::Value {
    let status = api
        .received()
        .into_iter()
        .rev()
        .find(|request| request.path.ends_with("/status"))
        .expect("a status was written")
        .body;
    status["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|condition| condition["type"] == "Synced")
        .cloned()
        .unwrap()
}

#[tokio::test]
async fn the_runtime_reads_the_secret_key_a_kind_names_and_hands_the_provider_its_value() {
    let api = FakeApi::default();
    api.hold(
        "secrets/admin",
        &admin_secret(&[("password", b"canary-7f3c")]),
    );
    let (client, api, _) = reconcile_measured(api, reading_admin()).await;
    assert_eq!(client.calls(), ["observe", "create"]);
    assert_eq!(client.passwords(), [Some("canary-7f3c".to_owned())]);
    let reads: Vec<_> = api
        .received()
        .iter()
        .filter(|request| request.method == "GET" && request.path.starts_with("secrets/"))
        .map(Received::line)
        .collect();
    assert_eq!(
        reads,
        ["GET secrets/admin"],
        "read in the object's namespace"
    );
    let written = serde_json::to_string(
        &api.received()
            .iter()
            .filter(|request| request.method != "GET")
            .map(|request| &request.body)
            .collect::<Vec<_>>(),
    )
    .unwrap();
    assert!(!written.contains("canary"), "{written}");
}

#[tokio::test]
async fn an_object_that_names_no_secret_reads_none_and_its_provider_gets_none() {
    let (client, api, _) = reconcile_measured(FakeApi::default(), orders(true, false, &[])).await;
    assert_eq!(client.passwords(), [None]);
    assert!(
        api.received()
            .iter()
            .all(|request| !request.path.starts_with("secrets/")),
        "{:?}",
        api.received()
    );
}

#[tokio::test]
async fn a_secret_key_without_a_usable_value_stops_the_reconcile_before_the_cloud() {
    let cases: [(Option<k8s_openapi::api::core::v1::Secret>, &str); 4] = [
        (
            None,
            "Secret shop/admin, named by passwordSecret, does not exist",
        ),
        (
            Some(admin_secret(&[("username", b"app")])),
            "Secret shop/admin has no key password (passwordSecret)",
        ),
        (
            Some(admin_secret(&[("password", &[0xff, 0xfe, 0x41])])),
            "key password of Secret shop/admin (passwordSecret) is not UTF-8 text",
        ),
        (
            Some(admin_secret(&[("password", b"")])),
            "key password of Secret shop/admin (passwordSecret) is empty",
        ),
    ];
    for (secret, message) in cases {
        let api = FakeApi::default();
        if let Some(secret) = &secret {
            api.hold("secrets/admin", secret);
        }
        let (client, api, metrics) = reconcile_measured(api, reading_admin()).await;
        assert!(client.calls().is_empty(), "{message}: {:?}", client.calls());
        let synced = last_synced(&api);
        assert_eq!(
            (&synced["status"], &synced["reason"], &synced["message"]),
            (
                &json!("False"),
                &json!("ObserveFailed"),
                &json!(format!("observing failed: {message}"))
            )
        );
        assert_eq!(api.events(), ["ObserveFailed"]);
        assert!(
            metrics.contains(r#"result="error",reason="Terminal""#),
            "{message}: waits for a change: {metrics}"
        );
    }
}

#[tokio::test]
async fn a_secret_the_api_server_cannot_give_is_a_passing_failure() {
    let api = FakeApi::default();
    api.hold("secrets/admin", &json!({"kind": "Secret", "data": 5}));
    let (client, api, metrics) = reconcile_measured(api, reading_admin()).await;
    assert!(client.calls().is_empty(), "{:?}", client.calls());
    let synced = last_synced(&api);
    let message = synced["message"].as_str().unwrap();
    assert!(
        message.starts_with("observing failed: reading Secret shop/admin (passwordSecret): "),
        "{message}"
    );
    assert!(
        metrics.contains(r#"result="error",reason="Transient""#),
        "tried again: {metrics}"
    );
}
