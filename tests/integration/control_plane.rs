//! The local control plane behaves like a cluster where tether relies on it: owner
//! references are garbage-collected and namespaces finish deleting.

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, PostParams},
    core::ObjectMeta,
    runtime::wait::{await_condition, conditions},
};
use tether_testkit::TestNamespace;

fn config_map(name: &str, owner: Option<&ConfigMap>) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            owner_references: owner.map(|owner| vec![owner.controller_owner_ref(&()).unwrap()]),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    }
}

#[tokio::test]
async fn the_garbage_collector_deletes_dependents_of_a_deleted_owner() {
    let ns = TestNamespace::new().await;
    let maps: Api<ConfigMap> = ns.api();
    let owner = maps
        .create(&PostParams::default(), &config_map("owner", None))
        .await
        .unwrap();
    let dependent = maps
        .create(
            &PostParams::default(),
            &config_map("dependent", Some(&owner)),
        )
        .await
        .unwrap();
    maps.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(60),
        await_condition(
            maps.clone(),
            "dependent",
            conditions::is_deleted(&dependent.uid().unwrap()),
        ),
    )
    .await
    .expect("the dependent is collected within 60 s")
    .unwrap();
    ns.delete().await;
}

#[tokio::test]
async fn a_deleted_namespace_goes_away_with_its_contents() {
    let ns = TestNamespace::new().await;
    ns.api::<ConfigMap>()
        .create(&PostParams::default(), &config_map("content", None))
        .await
        .unwrap();
    let namespaces: Api<Namespace> = Api::all(ns.client.clone());
    let uid = namespaces.get(&ns.name).await.unwrap().uid().unwrap();
    let (client, name) = (ns.client.clone(), ns.name.clone());
    ns.delete().await;
    tokio::time::timeout(
        Duration::from_secs(60),
        await_condition(
            Api::<Namespace>::all(client),
            &name,
            conditions::is_deleted(&uid),
        ),
    )
    .await
    .expect("the namespace controller finishes within 60 s")
    .unwrap();
}
