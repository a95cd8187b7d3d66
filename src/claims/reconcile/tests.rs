//! The reconcile of a fake claim against a recording API server: the claim's
//! finalizer, a refusal, the managed object it becomes, and its deletion, in
//! milliseconds.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::reflector;

use super::*;
use crate::{
    claims::class_finalizer,
    reconciler::{
        Settings,
        fake::{FakeApi, FakeClaim, FakeClaimSpec, FakeClass, FakeClassSpec, FakeKind, fake},
    },
};

/// Claim `orders` in namespace `shop` of class `gold`, with its finalizer when
/// `finalizer`, being deleted when `deleting`.
fn orders(finalizer: bool, deleting: bool) -> FakeClaim {
    let mut claim = FakeClaim::new(
        "orders",
        FakeClaimSpec {
            class_name: "gold".to_owned(),
            size: None,
        },
    );
    claim.metadata.namespace = Some("shop".to_owned());
    claim.metadata.uid = Some("u-claim".to_owned());
    if finalizer {
        claim.metadata.finalizers = Some(vec![CLAIM_FINALIZER.to_owned()]);
    }
    if deleting {
        claim.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    }
    claim
}

/// `api` holding `claim` and namespace `shop`.
fn api_with(claim: &FakeClaim) -> FakeApi {
    let api = FakeApi::default();
    api.hold("fakeclaims/orders", claim);
    api.hold(
        "namespaces/shop",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
    );
    api
}

/// An API holding `claim`, after one reconcile of it (that succeeded).
async fn reconciled(claim: FakeClaim) -> FakeApi {
    let api = api_with(&claim);
    reconcile_once(&api, claim).await.unwrap();
    api
}

/// Class `gold`, giving size 3.
fn gold() -> FakeClass {
    let mut class = FakeClass::new("gold", FakeClassSpec { size: 3 });
    class.metadata.generation = Some(1);
    class
}

/// Reconciles `claim` once against `api`.
async fn reconcile_once(api: &FakeApi, claim: FakeClaim) -> Result<Action, Error> {
    let (kube, events) = api.client_and_events();
    let shared = Arc::new(Shared::<FakeClaim> {
        kube,
        events,
        settings: Settings::default(),
        claims: reflector::store().0,
        claims_listed: Arc::default(),
        class_finalizer: class_finalizer(None),
        grants: std::sync::Mutex::default(),
    });
    reconcile(Arc::new(claim), shared).await
}

#[tokio::test]
async fn a_new_claim_gets_its_finalizer_before_anything_is_made() {
    let claim = orders(false, false);
    let api = reconciled(claim).await;
    assert_eq!(api.writes(), ["PATCH fakeclaims/orders"]);
    let patch = &api.received()[0];
    assert_eq!(
        patch.body["metadata"]["finalizers"],
        json!([CLAIM_FINALIZER])
    );
}

#[tokio::test]
async fn a_claim_of_a_class_that_does_not_exist_is_refused_and_nothing_is_made() {
    let claim = orders(true, false);
    let api = reconciled(claim).await;
    assert_eq!(api.writes(), ["PATCH fakeclaims/orders/status"]);
    assert_eq!(api.events(), ["ClassNotFound"]);
}

#[tokio::test]
async fn an_admitted_claim_holds_its_class_and_becomes_its_managed_object() {
    let claim = orders(true, false);
    let api = api_with(&claim);
    api.hold("fakeclasses/gold", &gold());
    reconcile_once(&api, claim).await.unwrap();
    assert_eq!(
        api.writes(),
        [
            "PATCH fakeclasses/gold",
            "PATCH fakeclaims/orders/status",
            "PATCH fakekinds/orders",
            "PATCH fakeclaims/orders/status",
        ]
    );
    let received = api.received();
    let writes: Vec<_> = received
        .iter()
        .filter(|request| request.method == "PATCH")
        .collect();
    let class_finalizer = class_finalizer(None);
    assert_eq!(
        writes[0].body["metadata"]["finalizers"],
        json!([class_finalizer])
    );
    assert_eq!(
        writes[1].body["status"]["settings"],
        json!(3),
        "granted first"
    );
    let object = &writes[2].body;
    assert_eq!(object["spec"]["size"], json!(3), "the class's size");
    assert_eq!(
        object["metadata"]["ownerReferences"][0]["uid"],
        json!("u-claim")
    );
}

#[tokio::test]
async fn a_deleted_claim_deletes_its_object_and_keeps_its_finalizer_until_it_is_gone() {
    let claim = orders(true, true);
    let api = api_with(&claim);
    let mut object: FakeKind = fake("orders", None);
    object.metadata.owner_references = claim.controller_owner_ref(&()).map(|owner| vec![owner]);
    api.hold("fakekinds/orders", &object);
    let waiting = reconcile_once(&api, claim.clone()).await;
    assert!(
        matches!(waiting, Err(Error::WaitingForDeletion)),
        "{waiting:?}"
    );
    assert_eq!(
        api.writes(),
        ["DELETE fakekinds/orders", "PATCH fakeclaims/orders/status"],
        "the finalizer stays"
    );

    let api = reconciled(claim).await;
    assert_eq!(
        api.writes(),
        ["PATCH fakeclaims/orders"],
        "the object is gone"
    );
    assert_eq!(
        api.received().last().unwrap().body,
        json!([
            {"op": "test", "path": "/metadata/finalizers/0", "value": CLAIM_FINALIZER},
            {"op": "remove", "path": "/metadata/finalizers/0"},
        ])
    );
}
