//! Self-service with the real `tether run`, the API server's admission policies and
//! RBAC, and moto: the examples' classes and claims become Ready within their bounds;
//! claims outside them are refused at apply or by a condition, at no AWS call; a
//! claim's database stays in step with class and claim; claims grown at once stay
//! within their namespace's storage limit; a class in use waits for its claims;
//! deleting a claim follows its policy.

use std::time::Duration;

use k8s_openapi::{
    api::{
        admissionregistration::v1::{ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding},
        core::v1::Secret,
    },
    apimachinery::pkg::apis::meta::v1::Condition,
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
};
use serde_json::json;
use tether_api::{
    claim::{CLASS_CHANGED, CLASS_GENERATION_ANNOTATION, Claim},
    conditions::{READY, SYNCED},
    managed::EXTERNAL_NAME_ANNOTATION,
};
use tether_aws::{
    ec2::Instance,
    rds::DBInstance,
    self_service::{DatabaseClaim, DatabaseClass, InstanceClaim},
};
use tether_testkit::{ControlPlane, cluster};

use crate::db_instance_controller::described;
use crate::{
    data_plane::connect_with,
    db_instance_controller::{SECRET_KEYS, database, rds, wait_secret},
    world::World,
};

/// The claim's conditions, for [`World::wait_condition_of`].
fn claim_conditions<C: Claim>(claim: &C) -> &[Condition] {
    claim
        .claim_status()
        .map_or(&[], |status| status.conditions.as_slice())
}

/// Waits until claim `name` has condition `type_` at `status` (and `reason`, if
/// given), and returns the claim and that condition's message.
async fn wait_claim<C: Claim>(
    world: &World,
    api: &Api<C>,
    name: &str,
    type_: &str,
    status: &str,
    reason: Option<&str>,
) -> (C, String) {
    let claim = world
        .wait_condition_of(api, name, type_, status, reason, claim_conditions)
        .await;
    let message = claim_conditions(&claim)
        .iter()
        .find(|condition| condition.type_ == type_)
        .map(|condition| condition.message.clone())
        .unwrap_or_default();
    (claim, message)
}

/// `examples/self-service/<file>`, made the test's own: its namespace, its
/// ProviderConfig, and class and role names no other test uses.
fn example(world: &World, file: &str) -> String {
    let ns = &world.ns.name;
    std::fs::read_to_string(
        tether_testkit::repo_root()
            .join("examples/self-service")
            .join(file),
    )
    .expect("reading the example")
    .replace("namespace: shop", &format!("namespace: {ns}"))
    .replace("name: shop\n", &format!("name: {ns}\n"))
    .replace("small-postgres", &format!("{ns}-small-postgres"))
    .replace("build-runner", &format!("{ns}-build-runner"))
    .replace(
        "name: tether-self-service",
        &format!("name: {ns}-self-service"),
    )
    .replace(
        "providerConfigRef: {name: default}",
        &format!("providerConfigRef: {{name: {}}}", world.provider_config),
    )
}

/// A database class of the test's own offering `versions` (e.g. `{default: '16'}`),
/// `spec` added to a minimal one.
fn database_class(world: &World, name: &str, versions: &str, spec: &str) -> String {
    format!(
        "apiVersion: tether.dev/v1alpha1\nkind: DatabaseClass\nmetadata: {{name: {}-{name}}}\nspec:\n  providerConfigRef: {{name: {}}}\n  engine: postgres\n  engineVersion: {versions}\n  instanceClass: {{default: db.t3.micro}}\n  storageGiB: {{default: 20, min: 20, max: 100}}\n{spec}",
        world.ns.name, world.provider_config
    )
}

/// The version offer of most test classes.
const SIXTEEN: &str = "{default: '16'}";

/// A database claim of the test's class `class`, `spec` added.
fn database_claim(world: &World, name: &str, class: &str, spec: &str) -> String {
    format!(
        "apiVersion: tether.dev/v1alpha1\nkind: DatabaseClaim\nmetadata: {{name: {name}}}\nspec:\n  className: {}-{class}\n{spec}",
        world.ns.name
    )
}

/// A client that acts as `user` (impersonation), as `kubectl --as` does.
async fn client_as(user: &str) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(ControlPlane::shared().kubeconfig())
        .expect("reading the control plane's kubeconfig");
    let mut config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("a client configuration");
    config.auth_info.impersonate = Some(user.to_owned());
    kube::Client::try_from(config).expect("a client")
}

/// The RDS identifier of the DBInstance `name`, once tether recorded it.
async fn rds_identifier(world: &World, name: &str) -> String {
    let api: Api<DBInstance> = world.ns.api();
    world
        .wait_for(
            Duration::from_secs(60),
            &format!("DBInstance {name} got no RDS identifier"),
            async || {
                api.get(name)
                    .await
                    .expect("reading the DBInstance")
                    .annotations()
                    .get(EXTERNAL_NAME_ANNOTATION)
                    .cloned()
            },
        )
        .await
}

/// Waits up to 60 s until `check` holds for the RDS instance `identifier`.
async fn wait_rds(
    world: &World,
    identifier: &str,
    what: &str,
    check: impl Fn(&aws_sdk_rds::types::DbInstance) -> bool,
) {
    world
        .wait_until(
            Duration::from_secs(60),
            &format!("the RDS instance {identifier} did not {what}"),
            async || check(&described(world, identifier).await),
        )
        .await;
}

#[tokio::test]
async fn the_example_claims_become_ready_and_the_team_may_claim_but_not_create_a_dbinstance() {
    let world = World::start().await;
    world.proxy.serve_databases();
    let ns = world.ns.name.clone();
    world.apply(&example(&world, "platform.yaml")).await;

    // The team applies its claims as its ServiceAccount, which the example RBAC binds.
    let team = client_as(&format!("system:serviceaccount:{ns}:app")).await;
    cluster::apply(&team, Some(&ns), &example(&world, "team.yaml"))
        .await
        .expect("the team's ServiceAccount may create claims");

    let claims: Api<DatabaseClaim> = world.ns.api();
    let claim = world
        .wait_condition_of(&claims, "orders", READY, "True", None, claim_conditions)
        .await;
    let status = claim.status.expect("a status");
    assert_eq!(status.connection_secret.as_deref(), Some("orders"));
    assert_eq!(status.resource_name.as_deref(), Some("orders"));
    assert_eq!(status.class_generation, Some(1));
    let settings = status.settings.expect("the settings it was built with");
    assert_eq!(
        (settings.engine_version.as_str(), settings.storage_gib),
        ("16", 50)
    );

    // The Secret: every key, the Service Binding ones included, owned by the DBInstance
    // that the claim owns.
    let data = wait_secret(&world, "orders", "hold every key", |data| {
        SECRET_KEYS.iter().all(|key| data.contains_key(*key))
    })
    .await;
    assert_eq!(
        (
            data["type"].as_str(),
            data["provider"].as_str(),
            data["database"].as_str()
        ),
        ("postgresql", "aws-rds", "orders")
    );
    assert_eq!(
        status.endpoint,
        Some(format!("{}:{}", data["host"], data["port"])),
        "the claim shows where its Secret connects"
    );
    assert_eq!(connect_with(&world, &data).await, "app orders");
    let secret = world.ns.api::<Secret>().get("orders").await.unwrap();
    let secret_owner = &secret.owner_references()[0];
    assert_eq!(
        (secret_owner.kind.as_str(), secret_owner.name.as_str()),
        ("DBInstance", "orders")
    );
    let owned = world.ns.api::<DBInstance>().get("orders").await.unwrap();
    let database_owner = &owned.owner_references()[0];
    assert_eq!(
        (database_owner.kind.as_str(), database_owner.controller),
        ("DatabaseClaim", Some(true))
    );

    // The database has the class's fixed settings and tags.
    let identifier = rds_identifier(&world, "orders").await;
    let instance = described(&world, &identifier).await;
    assert_eq!(instance.backup_retention_period(), Some(7));
    assert_eq!(instance.allocated_storage(), Some(50));
    assert_eq!(instance.db_instance_class(), Some("db.t3.micro"));
    let tags: Vec<(&str, &str)> = instance
        .tag_list()
        .iter()
        .map(|tag| {
            (
                tag.key().unwrap_or_default(),
                tag.value().unwrap_or_default(),
            )
        })
        .collect();
    for expected in [
        ("cost-center", "platform"),
        ("tether.dev/claim", &*format!("{ns}/orders")),
        ("tether.dev/class", &*format!("{ns}-small-postgres")),
    ] {
        assert!(tags.contains(&expected), "{expected:?} not in {tags:?}");
    }

    // The machine: Ready, with a generated key in its Secret.
    let instance_claims: Api<InstanceClaim> = world.ns.api();
    world
        .wait_condition_of(
            &instance_claims,
            "ci",
            READY,
            "True",
            None,
            claim_conditions,
        )
        .await;
    let ssh = wait_secret(&world, "ci", "hold the SSH key", |data| {
        data.contains_key("ssh-privatekey")
    })
    .await;
    assert!(ssh["ssh-privatekey"].starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
    let machine = world.ns.api::<Instance>().get("ci").await.unwrap();
    assert_eq!(machine.spec.instance_type, "t3.micro");
    assert!(machine.spec.ssh_key.is_some_and(|key| key.generate));

    // What the team may and may not do, as the API server's RBAC decides.
    let team_secrets: Api<Secret> = Api::namespaced(team.clone(), &ns);
    let read = team_secrets
        .get("orders")
        .await
        .expect("the team reads its Secret");
    assert!(read.data.is_some_and(|data| data.contains_key("password")));
    let team_databases: Api<DBInstance> = Api::namespaced(team.clone(), &ns);
    let raw: DBInstance = serde_saphyr::from_str(&database(&world, "raw", "")).unwrap();
    match team_databases.create(&PostParams::default(), &raw).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("the team created a DBInstance: {other:?}"),
    }
    let edit = team_databases
        .patch(
            "orders",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"instanceClass": "db.r5.24xlarge"}})),
        )
        .await;
    assert!(
        matches!(&edit, Err(kube::Error::Api(status)) if status.code == 403),
        "the team edited the claim's DBInstance: {edit:?}"
    );
    world.finish().await;
}

#[tokio::test]
async fn claims_outside_their_class_are_refused_at_apply_or_by_a_condition_at_no_aws_call() {
    let world = World::start().await;
    let ns = world.ns.name.clone();
    Api::<k8s_openapi::api::core::v1::Namespace>::all(world.ns.client.clone())
        .patch(
            &ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "gold"}}})),
        )
        .await
        .expect("labelling the namespace");
    world
        .apply(&database_class(
            &world,
            "gold",
            "{default: '16', allowed: ['15']}",
            "  namespaceSelector: {matchLabels: {tier: gold}}\n  limits: {claimsPerNamespace: 1}\n",
        ))
        .await;
    world
        .apply(&database_class(
            &world,
            "silver",
            SIXTEEN,
            "  namespaceSelector: {matchExpressions: [{key: tier, operator: In, values: [silver]}]}\n",
        ))
        .await;

    // Refused at apply, each with a message naming the bound.
    for (claim, expected) in [
        (
            database_claim(&world, "huge", "gold", "  storageGiB: 500\n"),
            format!("storageGiB 500 is outside class {ns}-gold's bounds of 20 to 100 GiB"),
        ),
        (
            database_claim(&world, "old", "gold", "  engineVersion: '14'\n"),
            format!("engineVersion 14 is not allowed by class {ns}-gold; it allows 16, 15"),
        ),
        (
            database_claim(&world, "kept", "gold", "  deletionPolicy: Retain\n"),
            format!("deletionPolicy Retain is not allowed by class {ns}-gold; it allows Snapshot"),
        ),
        (
            database_claim(&world, "elsewhere", "silver", ""),
            format!("namespace {ns} may not use class {ns}-silver"),
        ),
    ] {
        let message = world.ns.refusal_at_admission(&claim, &claim).await;
        assert!(message.contains(&expected), "{message}");
    }

    // Refused by the controller where apply cannot: an unknown class, the class's
    // checks once a class appears after its claim (no policy saw that claim), and the
    // per-namespace limit.
    let claims: Api<DatabaseClaim> = world.ns.api();
    world
        .apply(&database_claim(
            &world,
            "early",
            "late",
            "  storageGiB: 500\n",
        ))
        .await;
    let (_, message) = wait_claim(
        &world,
        &claims,
        "early",
        SYNCED,
        "False",
        Some("ClassNotFound"),
    )
    .await;
    assert!(
        message.contains(&format!("DatabaseClass {ns}-late does not exist")),
        "{message}"
    );
    world
        .apply(&database_class(&world, "late", SIXTEEN, ""))
        .await;
    let (_, message) = wait_claim(
        &world,
        &claims,
        "early",
        SYNCED,
        "False",
        Some("NotAllowed"),
    )
    .await;
    assert!(
        message.contains("storageGiB 500 is above the class's maximum of 100"),
        "{message}"
    );
    world.wait_for_warning("early", "NotAllowed").await;

    world
        .apply(&database_claim(&world, "first", "gold", ""))
        .await;
    world
        .wait_condition_of(&claims, "first", READY, "True", None, claim_conditions)
        .await;
    world
        .apply(&database_claim(&world, "second", "gold", ""))
        .await;
    let (_, message) = wait_claim(
        &world,
        &claims,
        "second",
        SYNCED,
        "False",
        Some("QuotaExceeded"),
    )
    .await;
    assert!(
        message.contains("the class allows 1 per namespace"),
        "{message}"
    );

    // Only the admitted claim reached AWS; no refused one has a DBInstance.
    assert_eq!(
        world.proxy.count("CreateDBInstance"),
        1,
        "{:?}",
        world.proxy.counts()
    );
    let databases: Vec<String> = world
        .ns
        .api::<DBInstance>()
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(databases, ["first"]);
    world.finish().await;
}

#[tokio::test]
async fn a_claims_database_follows_class_and_claim_and_goes_per_policy() {
    let world = World::start().await;
    let ns = world.ns.name.clone();
    world
        .apply(&database_class(
            &world,
            "std",
            SIXTEEN,
            "  backupRetentionDays: 3\n  tags: {team: data}\n",
        ))
        .await;
    world
        .apply(&database_claim(
            &world,
            "ledger",
            "std",
            "  databaseName: ledger\n",
        ))
        .await;
    let claims: Api<DatabaseClaim> = world.ns.api();
    world
        .wait_condition_of(&claims, "ledger", READY, "True", None, claim_conditions)
        .await;
    let identifier = rds_identifier(&world, "ledger").await;
    let databases: Api<DBInstance> = world.ns.api();

    // A hand edit of the claim's DBInstance is put back.
    databases
        .patch(
            "ledger",
            &PatchParams {
                field_manager: Some("kubectl-edit".into()),
                ..PatchParams::default()
            },
            &Patch::Merge(
                json!({"spec": {"instanceClass": "db.r5.large", "backupRetentionDays": 0}}),
            ),
        )
        .await
        .expect("editing the DBInstance by hand");
    for _ in 0..120 {
        let spec = databases.get("ledger").await.unwrap().spec;
        if spec.instance_class == "db.t3.micro" && spec.backup_retention_days == Some(3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let spec = databases.get("ledger").await.unwrap().spec;
    assert_eq!(
        (spec.instance_class.as_str(), spec.backup_retention_days),
        ("db.t3.micro", Some(3)),
        "the hand edit stayed:\n{}",
        world.log_tail()
    );

    // A class change: backups (safe in place) roll out; a new default engine version
    // waits for the team, which accepts it with the annotation.
    let classes: Api<DatabaseClass> = Api::all(world.ns.client.clone());
    classes
        .patch(
            &format!("{ns}-std"),
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"backupRetentionDays": 14, "engineVersion": {"default": "17"}}}),
            ),
        )
        .await
        .expect("changing the class");
    let (waiting, message) =
        wait_claim(&world, &claims, "ledger", CLASS_CHANGED, "True", None).await;
    assert!(
        message.contains("changed engineVersion (generation 2)"),
        "{message}"
    );
    assert!(
        message.contains(&format!("{CLASS_GENERATION_ANNOTATION}=2")),
        "the message says how to accept: {message}"
    );
    wait_rds(&world, &identifier, "keep backups 14 days", |db| {
        db.backup_retention_period() == Some(14)
    })
    .await;
    assert_eq!(
        databases
            .get("ledger")
            .await
            .unwrap()
            .spec
            .engine_version
            .as_deref(),
        Some("16")
    );
    assert_eq!(waiting.status.unwrap().class_generation, Some(1));

    claims
        .patch(
            "ledger",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {CLASS_GENERATION_ANNOTATION: "2"}}})),
        )
        .await
        .expect("accepting the class change");
    let accepted = world
        .wait_condition_of(
            &claims,
            "ledger",
            CLASS_CHANGED,
            "False",
            Some("UpToDate"),
            claim_conditions,
        )
        .await;
    assert_eq!(accepted.status.unwrap().class_generation, Some(2));
    assert_eq!(
        databases
            .get("ledger")
            .await
            .unwrap()
            .spec
            .engine_version
            .as_deref(),
        Some("17")
    );

    // A class in use waits for its claims.
    classes
        .delete(&format!("{ns}-std"), &DeleteParams::default())
        .await
        .expect("deleting the class");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held = classes
        .get(&format!("{ns}-std"))
        .await
        .expect("the class is still there");
    assert!(held.metadata.deletion_timestamp.is_some());
    assert!(
        held.finalizers()
            .contains(&format!("claims.tether.dev/{ns}")),
        "{:?}",
        held.finalizers()
    );

    // Deleting the claim follows its policy (Snapshot, the default): a final snapshot,
    // the database gone, then the claim, then the class.
    claims
        .delete("ledger", &DeleteParams::default())
        .await
        .expect("deleting the claim");
    world.wait_gone(&claims, "ledger").await;
    assert!(databases.get_opt("ledger").await.unwrap().is_none());
    let snapshots = rds(&world)
        .describe_db_snapshots()
        .db_instance_identifier(&identifier)
        .send()
        .await
        .expect("listing snapshots");
    assert_eq!(snapshots.db_snapshots().len(), 1, "{snapshots:?}");
    assert!(
        rds(&world)
            .describe_db_instances()
            .db_instance_identifier(&identifier)
            .send()
            .await
            .is_err(),
        "the database is deleted"
    );
    world.wait_gone(&classes, &format!("{ns}-std")).await;
    world.finish().await;
}

/// An admission policy (with its binding, both named `name`) that refuses to record
/// `gib` GiB or more in the status of a claim in namespace `ns`: the controller's
/// cache keeps the claims' old records meanwhile, as it does for a moment after every
/// write, and decisions made from it see no growth.
fn records_held_back(name: &str, ns: &str, gib: u32) -> String {
    format!(
        r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {{name: {name}}}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: [tether.dev]
      apiVersions: [v1alpha1]
      operations: [CREATE, UPDATE]
      resources: [databaseclaims/status]
  validations:
  - expression: "!has(object.status.settings) || object.status.settings.storageGiB < {gib}"
    message: the test holds back records of {gib} GiB
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {{name: {name}}}
spec:
  policyName: {name}
  validationActions: [Deny]
  matchResources:
    namespaceSelector: {{matchLabels: {{kubernetes.io/metadata.name: {ns}}}}}
"#
    )
}

/// The `QuotaExceeded` message of claim `name` for its current generation, if it has
/// one.
async fn quota_refusal(claims: &Api<DatabaseClaim>, name: &str) -> Option<String> {
    let claim = claims.get(name).await.expect("reading the claim");
    claim_conditions(&claim)
        .iter()
        .find(|condition| {
            condition.type_ == SYNCED
                && condition.status == "False"
                && condition.reason == "QuotaExceeded"
                && condition.observed_generation == claim.metadata.generation
        })
        .map(|condition| condition.message.clone())
}

#[tokio::test]
async fn two_claims_grown_in_one_apply_stay_within_the_namespaces_storage_limit() {
    let world = World::start().await;
    let ns = world.ns.name.clone();
    world
        .apply(&database_class(
            &world,
            "capped",
            SIXTEEN,
            "  limits: {storageGiBPerNamespace: 100}\n",
        ))
        .await;
    let both = |gib: u32| {
        ["left", "right"]
            .map(|name| database_claim(&world, name, "capped", &format!("  storageGiB: {gib}\n")))
            .join("---\n")
    };
    world.apply(&both(40)).await;
    let claims: Api<DatabaseClaim> = world.ns.api();
    let databases: Api<DBInstance> = world.ns.api();
    let mut identifiers = Vec::new();
    for name in ["left", "right"] {
        world
            .wait_condition_of(&claims, name, READY, "True", None, claim_conditions)
            .await;
        identifiers.push((name, rds_identifier(&world, name).await));
    }

    // The race made certain: while the API server refuses to record 60 GiB on a
    // claim, no decision can see the other claim's growth in the controller's cache.
    let policy = format!("{ns}-records-held-back");
    world.apply(&records_held_back(&policy, &ns, 60)).await;
    let held_back = PatchParams {
        dry_run: true,
        ..PatchParams::default()
    };
    let record = Patch::Merge(json!({"status": {"settings": {"storageGiB": 60}}}));
    let mut taken_up = false;
    for _ in 0..60 {
        let answer = claims.patch_status("left", &held_back, &record).await;
        taken_up = matches!(&answer, Err(kube::Error::Api(status)) if status.message.contains("the test holds back"));
        if taken_up {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        taken_up,
        "the API server did not take up the test's admission policy within 60 s"
    );

    // Both grow in one apply: 60 + 60 GiB would pass the limit, so one of them must
    // wait. Decided: one is refused, or both databases were told to grow.
    world.apply(&both(60)).await;
    let mut decided = false;
    for _ in 0..120 {
        let mut grown = 0;
        for (name, _) in &identifiers {
            decided |= quota_refusal(&claims, name).await.is_some();
            let spec = databases
                .get(name)
                .await
                .expect("reading the DBInstance")
                .spec;
            if spec.allocated_storage_gib == Some(60) {
                grown += 1;
            }
        }
        decided |= grown == identifiers.len();
        if decided {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        decided,
        "neither claim was refused nor were both databases grown within 60 s:\n{}",
        world.log_tail()
    );
    let admission = world.ns.client.clone();
    Api::<ValidatingAdmissionPolicyBinding>::all(admission.clone())
        .delete(&policy, &DeleteParams::default())
        .await
        .expect("deleting the test's policy binding");
    Api::<ValidatingAdmissionPolicy>::all(admission)
        .delete(&policy, &DeleteParams::default())
        .await
        .expect("deleting the test's policy");

    // Settled, once the records go through: each claim is refused or its database has
    // grown in AWS.
    let mut settled = Vec::new();
    for _ in 0..120 {
        settled.clear();
        for (name, identifier) in &identifiers {
            let refusal = quota_refusal(&claims, name).await;
            let gib = described(&world, identifier)
                .await
                .allocated_storage()
                .unwrap_or_default();
            if refusal.is_some() || gib == 60 {
                settled.push((*name, gib, refusal));
            }
        }
        if settled.len() == identifiers.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(
        settled.len(),
        identifiers.len(),
        "the claims did not settle within 60 s ({settled:?}):\n{}",
        world.log_tail()
    );

    // What AWS holds stays within the limit: one database grew, the other kept its
    // size, and its claim says why.
    let total: i32 = settled.iter().map(|(_, gib, _)| gib).sum();
    assert!(
        total <= 100,
        "the namespace holds {total} GiB of a class that allows 100: {settled:?}"
    );
    let refused: Vec<_> = settled
        .iter()
        .filter(|(_, _, refusal)| refusal.is_some())
        .collect();
    assert_eq!(refused.len(), 1, "{settled:?}");
    let (name, gib, message) = refused[0];
    assert_eq!(*gib, 40, "the refused claim's database kept its size");
    let message = message.as_deref().unwrap_or_default();
    assert!(
        message.contains(
            "60 GiB would bring the namespace's storage in the class to 120 GiB; the class allows 100 GiB per namespace"
        ),
        "{name}: {message}"
    );
    let kept = databases.get(name).await.unwrap();
    assert_eq!(kept.spec.allocated_storage_gib, Some(40));
    world.finish().await;
}

#[tokio::test]
async fn the_api_server_refuses_a_claim_whose_storage_shrinks() {
    let ns = tether_testkit::TestNamespace::new().await;
    cluster::install_crds(&ns.client).await;
    let claim = |gib: u32| {
        format!(
            "apiVersion: tether.dev/v1alpha1\nkind: DatabaseClaim\nmetadata: {{name: orders}}\nspec:\n  className: standard\n  storageGiB: {gib}\n"
        )
    };
    ns.apply(&claim(50)).await.expect("a claim of 50 GiB");
    let message = ns.refusal(&claim(40), "a claim shrunk to 40 GiB").await;
    assert!(
        message.contains("spec.storageGiB") && message.contains("can grow but never shrink"),
        "{message}"
    );
    ns.apply(&claim(60)).await.expect("a claim may grow");
    ns.delete().await;
}
