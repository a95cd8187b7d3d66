//! The ProviderConfig CRD on the real API server: valid objects are accepted, invalid
//! ones are refused at apply time with a message naming the field. With the real
//! `tether run`: a ProviderConfig serves only the namespaces its `namespaceSelector`
//! selects (no AWS call for any other, claims included), a ProviderConfig in use stays
//! until its objects are gone, and a deleted credentials Secret is named on the objects.

use std::time::Duration;

use k8s_openapi::{
    api::core::v1::{Namespace, Secret},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    apimachinery::pkg::apis::meta::v1::Condition,
};
use kube::{
    Api, Resource, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams},
};
use serde_json::json;
use tether_api::{
    conditions::{self, READY, SYNCED},
    managed::Managed,
    provider_config::{CREDENTIALS_MISSING, NOT_PERMITTED, ProviderConfig as _},
};
use tether_aws::ProviderConfig;
use tether_aws::ec2::SecurityGroup;
use tether_aws::provider_config::CredentialsSource;
use tether_aws::rds::DBInstance;
use tether_aws::self_service::DatabaseClaim;
use tether_testkit::{TestNamespace, cluster, tether::WRITES};

use crate::{
    security_group::{describe, security_group},
    world::{DEFAULT_CREDENTIALS, World, provider_config_yaml},
};

#[tokio::test]
async fn crds_install_and_become_established() {
    let ns = TestNamespace::new().await;
    cluster::install_crds(&ns.client).await;
    let crds: Api<CustomResourceDefinition> = Api::all(ns.client.clone());
    for crd in tether::crds::all() {
        let installed = crds
            .get(&crd.name_any())
            .await
            .expect("the CRD is installed");
        let established = installed
            .status
            .and_then(|status| status.conditions)
            .unwrap_or_default()
            .into_iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        assert!(established, "{} is not Established", crd.name_any());
    }
    ns.delete().await;
}

#[tokio::test]
async fn valid_provider_configs_are_accepted() {
    let ns = TestNamespace::new().await;
    cluster::install_crds(&ns.client).await;
    let name = |suffix: &str| format!("{}-{suffix}", ns.name);
    let applied = ns
        .apply(&format!(
            r#"
apiVersion: tether.dev/v1alpha1
kind: ProviderConfig
metadata: {{name: {minimal}}}
spec:
  region: eu-west-1
---
apiVersion: tether.dev/v1alpha1
kind: ProviderConfig
metadata: {{name: {secret}}}
spec:
  region: us-gov-west-1
  endpoint: http://127.0.0.1:4566
  credentials:
    source: Secret
    secretRef: {{namespace: {ns}, name: aws-keys}}
---
apiVersion: tether.dev/v1alpha1
kind: ProviderConfig
metadata: {{name: {assume}}}
spec:
  region: ap-southeast-2
  endpoint: https://rds.ap-southeast-2.amazonaws.com
  credentials:
    source: AssumeRole
    assumeRole:
      roleArn: arn:aws:iam::123456789012:role/tether
      externalId: platform-team
"#,
            minimal = name("minimal"),
            secret = name("secret"),
            assume = name("assume"),
            ns = ns.name,
        ))
        .await
        .expect("valid ProviderConfigs are accepted");
    assert_eq!(applied.len(), 3);

    let configs: Api<ProviderConfig> = Api::all(ns.client.clone());
    let minimal = configs.get(&name("minimal")).await.unwrap();
    assert_eq!(
        minimal.spec.credentials.source,
        CredentialsSource::Default,
        "the credential source defaults to the SDK chain"
    );
    let assume = configs.get(&name("assume")).await.unwrap();
    let role = assume
        .spec
        .credentials
        .assume_role
        .expect("assumeRole kept");
    assert_eq!(role.role_arn, "arn:aws:iam::123456789012:role/tether");
    assert_eq!(role.external_id.as_deref(), Some("platform-team"));
    for suffix in ["minimal", "secret", "assume"] {
        configs
            .delete(&name(suffix), &Default::default())
            .await
            .unwrap();
    }
    ns.delete().await;
}

#[tokio::test]
async fn invalid_provider_configs_are_refused_naming_the_field() {
    let ns = TestNamespace::new().await;
    cluster::install_crds(&ns.client).await;
    let cases = [
        (
            "an endpoint that is not a URL",
            "region: eu-west-1\n  endpoint: not a url",
            &["spec.endpoint", "must be an http or https URL"][..],
        ),
        (
            "an endpoint with another scheme",
            "region: eu-west-1\n  endpoint: ftp://127.0.0.1:21",
            &["spec.endpoint", "must be an http or https URL"],
        ),
        (
            "a region that is not region-shaped",
            "region: Mars",
            &["spec.region", "should match"],
        ),
        (
            "an unknown credential source",
            "region: eu-west-1\n  credentials: {source: Vault}",
            &["spec.credentials.source", "Unsupported value", "\"Vault\""],
        ),
        (
            "AssumeRole without assumeRole",
            "region: eu-west-1\n  credentials: {source: AssumeRole}",
            &[
                "spec.credentials.assumeRole",
                "roleArn is required when source is AssumeRole",
            ],
        ),
        (
            "AssumeRole without roleArn",
            "region: eu-west-1\n  credentials: {source: AssumeRole, assumeRole: {externalId: abc}}",
            &["spec.credentials.assumeRole.roleArn", "Required value"],
        ),
        (
            "a malformed roleArn",
            "region: eu-west-1\n  credentials: {source: AssumeRole, assumeRole: {roleArn: tether}}",
            &["spec.credentials.assumeRole.roleArn", "should match"],
        ),
        (
            "Secret without secretRef",
            "region: eu-west-1\n  credentials: {source: Secret}",
            &[
                "spec.credentials.secretRef",
                "secretRef is required when source is Secret",
            ],
        ),
        (
            "assumeRole with another source",
            "region: eu-west-1\n  credentials: {source: Default, assumeRole: {roleArn: 'arn:aws:iam::123456789012:role/x'}}",
            &[
                "spec.credentials.assumeRole",
                "only used when source is AssumeRole",
            ],
        ),
    ];
    for (index, (what, spec, expected)) in cases.iter().enumerate() {
        let yaml = format!(
            "apiVersion: tether.dev/v1alpha1\nkind: ProviderConfig\nmetadata: {{name: {}-bad-{index}}}\nspec:\n  {spec}\n",
            ns.name
        );
        let refusal = match ns.apply(&yaml).await {
            Ok(_) => panic!("a ProviderConfig with {what} was accepted"),
            Err(kube::Error::Api(status)) => status,
            Err(other) => panic!("a ProviderConfig with {what} failed unexpectedly: {other}"),
        };
        assert_eq!(refusal.code, 422, "{what}: {}", refusal.message);
        for fragment in *expected {
            assert!(
                refusal.message.contains(fragment),
                "{what}: the refusal does not mention {fragment:?}: {}",
                refusal.message
            );
        }
    }
    ns.delete().await;
}

#[tokio::test]
async fn examples_apply_as_they_are() {
    let ns = TestNamespace::new().await;
    cluster::install_crds(&ns.client).await;
    let dir = tether_testkit::repo_root().join("examples");
    let mut applied = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/ exists") {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with("provider-config"))
        {
            let yaml = std::fs::read_to_string(&path).unwrap();
            let objects = ns
                .apply(&yaml)
                .await
                .unwrap_or_else(|error| panic!("{} is refused: {error}", path.display()));
            applied += objects.len();
        }
    }
    assert!(
        applied >= 3,
        "the ProviderConfig examples hold at least three objects"
    );
    ns.delete().await;
}

/// The label a test's own ProviderConfig selects namespaces by.
const TEAM_LABEL: &str = "tether.dev/test-team";

/// A ProviderConfig `<ns>-team` at the test's proxy with `credentials` (YAML) that
/// only namespaces labelled [`TEAM_LABEL`]`: <ns>` may use; returns its name.
async fn team_provider_config(world: &World, credentials: &str) -> String {
    let name = format!("{}-team", world.ns.name);
    let yaml = format!(
        "{}  namespaceSelector:\n    matchLabels: {{{TEAM_LABEL}: {}}}\n",
        provider_config_yaml(&name, &world.proxy, credentials),
        world.ns.name
    );
    cluster::apply(&world.ns.client, None, &yaml)
        .await
        .expect("applying the team's ProviderConfig");
    name
}

/// Sets (or, with `null`, removes) the team label on the test's namespace.
async fn label_namespace(world: &World, value: serde_json::Value) {
    Api::<Namespace>::all(world.ns.client.clone())
        .patch(
            &world.ns.name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {TEAM_LABEL: value}}})),
        )
        .await
        .expect("labelling the test's namespace");
}

/// The test's SecurityGroup `name`, using ProviderConfig `provider_config`.
fn group_using(world: &World, name: &str, provider_config: &str) -> String {
    security_group(world, name, "").replace(
        &format!("providerConfigRef: {{name: {}}}", world.provider_config),
        &format!("providerConfigRef: {{name: {provider_config}}}"),
    )
}

/// The `Synced` condition of `object`.
fn synced<M: Managed>(object: &M) -> Condition {
    conditions::find(object.conditions(), SYNCED)
        .expect("a Synced condition")
        .clone()
}

/// Whether the security group `group_id` exists in the emulator.
async fn group_exists(world: &World, group_id: &str) -> bool {
    describe(world, group_id).await.is_some()
}

/// The id of a Ready security group.
fn group_id(ready: &SecurityGroup) -> String {
    ready
        .status
        .as_ref()
        .and_then(|status| status.at_provider.as_ref())
        .map(|at_provider| at_provider.group_id.clone())
        .expect("a Ready group has its id")
}

/// Asserts that a refusal's `message` names ProviderConfig `provider_config` and the
/// test's namespace.
fn assert_names_both(world: &World, provider_config: &str, message: &str) {
    assert!(
        message.contains(&format!("ProviderConfig {provider_config}"))
            && message.contains(&format!("namespace {}", world.ns.name)),
        "the refusal names the ProviderConfig and the namespace: {message}"
    );
}

/// Deletes `name` and waits until it is gone.
async fn delete_and_wait<K>(world: &World, api: &Api<K>, name: &str)
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.delete(name, &DeleteParams::default())
        .await
        .expect("deleting");
    world.wait_gone(api, name).await;
}

/// Deletes the test's own ProviderConfig `name` (released once unused), then stops
/// the world.
async fn finish_without(world: World, name: &str) {
    let configs: Api<ProviderConfig> = Api::all(world.ns.client.clone());
    delete_and_wait(&world, &configs, name).await;
    world.finish().await;
}

#[tokio::test]
async fn a_provider_config_serves_only_the_namespaces_its_selector_selects_not_even_for_deletion() {
    let world = World::start().await;
    let team = team_provider_config(&world, DEFAULT_CREDENTIALS).await;
    let api: Api<SecurityGroup> = world.ns.api();
    world.apply(&group_using(&world, "web", &team)).await;

    // The namespace is not selected: a clear condition, and nothing reaches AWS.
    let refused = world
        .wait_condition(&api, "web", SYNCED, "False", Some(NOT_PERMITTED))
        .await;
    assert_names_both(&world, &team, &synced(&refused).message);
    assert!(
        world.proxy.counts().is_empty(),
        "no AWS call for an object its ProviderConfig refuses: {:?}",
        world.proxy.counts()
    );

    // Labelling the namespace lets the object go on.
    label_namespace(&world, json!(world.ns.name)).await;
    let group_id = group_id(&world.wait_condition(&api, "web", READY, "True", None).await);
    assert!(group_exists(&world, &group_id).await);

    // The label removed: the object is refused again, and its deletion waits rather
    // than delete with keys its namespace may no longer use.
    label_namespace(&world, serde_json::Value::Null).await;
    let refused = world
        .wait_condition(&api, "web", SYNCED, "False", Some(NOT_PERMITTED))
        .await;
    api.delete("web", &DeleteParams::default()).await.unwrap();
    let deleting = api
        .get("web")
        .await
        .expect("the group waits, with its finalizer");
    // Marking it deleted moves its generation, so the condition shows when tether
    // has looked at the deletion.
    let generation = deleting.meta().generation;
    assert!(generation > refused.meta().generation);
    for _ in 0..240 {
        let object = api.get("web").await.expect("the group waits");
        let condition = synced(&object);
        if condition.reason == NOT_PERMITTED && condition.observed_generation == generation {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let waiting = api.get("web").await.expect("the group waits");
    assert_eq!(
        (
            synced(&waiting).reason,
            synced(&waiting).observed_generation
        ),
        (NOT_PERMITTED.to_owned(), generation),
        "the deletion was looked at and refused:\n{}",
        world.log_tail()
    );
    assert!(
        group_exists(&world, &group_id).await,
        "the group is still in AWS"
    );
    assert_eq!(world.proxy.counts().get("DeleteSecurityGroup"), None);

    // Labelled again, the deletion completes.
    label_namespace(&world, json!(world.ns.name)).await;
    world.wait_gone(&api, "web").await;
    assert!(
        !group_exists(&world, &group_id).await,
        "the group is deleted"
    );
    finish_without(world, &team).await;
}

#[tokio::test]
async fn a_claim_whose_class_names_a_provider_config_its_namespace_may_not_use_says_so() {
    let world = World::start().await;
    let team = team_provider_config(&world, DEFAULT_CREDENTIALS).await;
    let class = format!("{}-small", world.ns.name);
    world
        .apply(&format!(
            "apiVersion: tether.dev/v1alpha1\nkind: DatabaseClass\nmetadata: {{name: {class}}}\nspec:\n  providerConfigRef: {{name: {team}}}\n  engine: postgres\n  engineVersion: {{default: '16'}}\n  instanceClass: {{default: db.t3.micro}}\n  storageGiB: {{default: 20, min: 20, max: 100}}\n  deletionPolicy: {{default: Delete}}\n"
        ))
        .await;
    world
        .apply(&format!(
            "apiVersion: tether.dev/v1alpha1\nkind: DatabaseClaim\nmetadata: {{name: orders}}\nspec:\n  className: {class}\n  databaseName: orders\n"
        ))
        .await;
    let claims: Api<DatabaseClaim> = world.ns.api();
    let claim = world
        .wait_condition_of(
            &claims,
            "orders",
            SYNCED,
            "False",
            Some(NOT_PERMITTED),
            |claim| {
                claim
                    .status
                    .as_ref()
                    .map_or(&[], |status| status.conditions.as_slice())
            },
        )
        .await;
    let status = claim.status.expect("the claim has a status");
    let synced = conditions::find(&status.conditions, SYNCED).expect("Synced");
    assert_names_both(&world, &team, &synced.message);
    assert!(
        world.proxy.counts().is_empty(),
        "no AWS call for the claim's database: {:?}",
        world.proxy.counts()
    );

    delete_and_wait(&world, &claims, "orders").await;
    finish_without(world, &team).await;
}

/// Waits until the test's ProviderConfig says, with `reason`, that the SecurityGroup
/// `web` uses it (condition `InUse.<ns>`, for a controller of the test's namespace).
async fn wait_in_use(world: &World, configs: &Api<ProviderConfig>, reason: &str) -> ProviderConfig {
    let in_use = format!("InUse.{}", world.ns.name);
    let config = world
        .wait_condition_of(
            configs,
            &world.provider_config,
            &in_use,
            "True",
            Some(reason),
            ProviderConfig::conditions,
        )
        .await;
    let message = &conditions::find(config.conditions(), &in_use)
        .expect("checked above")
        .message;
    let user = format!("SecurityGroup {}/web", world.ns.name);
    assert!(
        message.contains(&user),
        "the condition names its user: {message}"
    );
    config
}

#[tokio::test]
async fn a_provider_config_in_use_stays_until_its_objects_have_deleted_their_aws_resources() {
    let world = World::start().await;
    let api: Api<SecurityGroup> = world.ns.api();
    world.apply(&security_group(&world, "web", "")).await;
    let group_id = group_id(&world.wait_condition(&api, "web", READY, "True", None).await);

    let configs: Api<ProviderConfig> = Api::all(world.ns.client.clone());
    let held = wait_in_use(&world, &configs, "InUse").await;
    assert!(
        held.finalizers()
            .contains(&format!("in-use.tether.dev/{}", world.ns.name)),
        "the ProviderConfig in use is held: {:?}",
        held.finalizers()
    );

    // Deleted while in use: it stays, and says what it waits for.
    configs
        .delete(&world.provider_config, &DeleteParams::default())
        .await
        .unwrap();
    let waiting = wait_in_use(&world, &configs, "DeletionWaiting").await;
    assert!(waiting.meta().deletion_timestamp.is_some());

    // The object's deletion still reaches AWS through it; then it goes.
    delete_and_wait(&world, &api, "web").await;
    assert!(
        !group_exists(&world, &group_id).await,
        "the group is deleted in AWS"
    );
    world.wait_gone(&configs, &world.provider_config).await;
    world.finish().await;
}

#[tokio::test]
async fn a_provider_config_first_used_by_many_objects_at_once_is_held_with_one_write() {
    let world = World::start().await;
    let before = world.tether.kube_requests();
    // 16 at once: as many reconciles as run at once, each seeing from the cache a
    // ProviderConfig without tether's finalizer.
    world
        .apply(&crate::bench::databases(&world, "db", 16))
        .await;
    let api: Api<DBInstance> = world.ns.api();
    world
        .wait_until(Duration::from_secs(60), "16 databases Ready", async || {
            let listed = api.list(&ListParams::default()).await.expect("listing");
            listed.items.len() == 16
                && listed
                    .items
                    .iter()
                    .all(|object| conditions::is_true(object.conditions(), READY))
        })
        .await;
    let configs: Api<ProviderConfig> = Api::all(world.ns.client.clone());
    let held = configs.get(&world.provider_config).await.unwrap();
    assert!(
        held.finalizers()
            .contains(&format!("in-use.tether.dev/{}", world.ns.name)),
        "held: {:?}",
        held.finalizers()
    );
    let writes = world.tether.kube_requests().since(&before, &WRITES);
    assert_eq!(
        writes.get("patch providerconfigs").copied(),
        Some(1.0),
        "one write of the in-use finalizer, whatever the number of reconciles that saw it \
         missing: {writes:?}"
    );
    world.finish().await;
}

#[tokio::test]
async fn a_deleted_credentials_secret_is_named_on_the_objects_and_putting_it_back_heals_them() {
    let world = World::start().await;
    let keys = "apiVersion: v1\nkind: Secret\nmetadata: {name: aws-keys}\nstringData: {aws_access_key_id: testing, aws_secret_access_key: testing}\n";
    world.apply(keys).await;
    let credentials = format!(
        "{{source: Secret, secretRef: {{namespace: {}, name: aws-keys}}}}",
        world.ns.name
    );
    let team = team_provider_config(&world, &credentials).await;
    label_namespace(&world, json!(world.ns.name)).await;
    let api: Api<SecurityGroup> = world.ns.api();
    world.apply(&group_using(&world, "web", &team)).await;
    world.wait_condition(&api, "web", READY, "True", None).await;

    // The keys read before stay in use for up to a minute; then the objects say which
    // Secret is missing.
    let secrets: Api<Secret> = world.ns.api();
    secrets
        .delete("aws-keys", &DeleteParams::default())
        .await
        .unwrap();
    let mut last = None;
    for _ in 0..300 {
        let object = api.get("web").await.expect("the group");
        let condition = synced(&object);
        if condition.reason == CREDENTIALS_MISSING {
            last = Some(condition);
            break;
        }
        last = Some(condition);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let missing = last.expect("a Synced condition");
    assert_eq!(
        missing.reason,
        CREDENTIALS_MISSING,
        "within 150 s of deleting the Secret: {missing:?}\n{}",
        world.log_tail()
    );
    assert!(
        missing
            .message
            .contains(&format!("credentials Secret {}/aws-keys", world.ns.name)),
        "the message names the Secret: {}",
        missing.message
    );

    // Put back, it is read again and the object is Synced.
    world.apply(keys).await;
    world
        .wait_condition(&api, "web", SYNCED, "True", None)
        .await;
    delete_and_wait(&world, &api, "web").await;
    finish_without(world, &team).await;
}
