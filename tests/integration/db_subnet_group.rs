//! The DBSubnetGroup kind: its CRD on the real API server, and its external client
//! against moto through the fault proxy (the reconciler that drives it comes next).

use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_ec2::config::retry::RetryConfig;
use kube::core::ObjectMeta;
use tether_api::{
    ErrorClass,
    external::{Context, Delta, ExternalClient, Observation, Readiness},
    managed::{DeletionPolicy, Managed, ManagedFields},
};
use tether_aws::rds::{DBSubnetGroup, DBSubnetGroupClient, db_subnet_group::DBSubnetGroupSpec};
use tether_aws::tags::UID_TAG;
use tether_testkit::{Emulator, Fault, FaultProxy, TestNamespace, cluster};

pub fn sdk_config(endpoint: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_ec2::config::SharedCredentialsProvider::new(
            aws_sdk_ec2::config::Credentials::for_tests(),
        ))
        .retry_config(RetryConfig::standard().with_initial_backoff(Duration::from_millis(10)))
        .build()
}

pub async fn default_subnets(config: &SdkConfig) -> Vec<String> {
    let subnets = aws_sdk_ec2::Client::new(config)
        .describe_subnets()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("default-for-az")
                .values("true")
                .build(),
        )
        .send()
        .await
        .expect("DescribeSubnets");
    subnets
        .subnets()
        .iter()
        .filter_map(|s| s.subnet_id().map(str::to_owned))
        .collect()
}

fn subnet_group(ns: &TestNamespace, subnet_ids: Vec<String>) -> DBSubnetGroup {
    DBSubnetGroup {
        metadata: ObjectMeta {
            name: Some("orders".into()),
            namespace: Some(ns.name.clone()),
            uid: Some(format!("uid-{}", ns.name)),
            ..ObjectMeta::default()
        },
        spec: DBSubnetGroupSpec {
            managed: ManagedFields::default(),
            description: "orders database subnets".into(),
            subnet_ids,
            tags: [("team".to_owned(), "orders".to_owned())].into(),
        },
        status: None,
    }
}

#[tokio::test]
async fn the_client_creates_updates_and_deletes_a_subnet_group_on_moto() {
    let ns = TestNamespace::new().await;
    let proxy = FaultProxy::start(Emulator::moto().endpoint()).await;
    let config = sdk_config(&proxy.endpoint());
    let subnets = default_subnets(&config).await;
    assert!(
        subnets.len() >= 2,
        "moto's default VPC has a subnet per zone: {subnets:?}"
    );
    let client = DBSubnetGroupClient::new(aws_sdk_rds::Client::new(&config));
    let mut object = subnet_group(&ns, subnets[..2].to_vec());
    let name = object.default_external_name().unwrap();
    assert!(
        name.starts_with(&format!("{}-orders-", ns.name)),
        "{name} is derived from the namespace, name and UID"
    );
    let at = Context::named(Some(&name));

    assert_eq!(
        client.observe(&object, at).await.unwrap(),
        Observation::Missing
    );
    client
        .create(&object, at)
        .await
        .expect("CreateDBSubnetGroup");
    let Observation::Exists(observed) = client.observe(&object, at).await.unwrap() else {
        panic!("the created subnet group is observed");
    };
    assert!(observed.is_up_to_date(), "{:?}", observed.delta.describe());
    assert_eq!(observed.readiness, Readiness::Ready);
    let mut expected = subnets[..2].to_vec();
    expected.sort();
    assert_eq!(observed.at_provider.subnet_ids, expected);
    assert!(observed.at_provider.vpc_id.is_some());
    let arn = observed.at_provider.arn.clone().expect("an ARN");
    let tags = aws_sdk_rds::Client::new(&config)
        .list_tags_for_resource()
        .resource_name(&arn)
        .send()
        .await
        .unwrap();
    assert!(
        tags.tag_list().iter().any(|t| t.key() == Some(UID_TAG)
            && t.value() == Some(object.metadata.uid.as_deref().unwrap())),
        "the group carries the object's UID: {tags:?}"
    );

    // A changed description or subnet list is seen as a difference. (Applying it is
    // ModifyDBSubnetGroup, which moto 5.2.5 gets wrong: it drops the group from its
    // registry. That path gets a mocked test instead.)
    let mut changed = object.clone();
    changed.spec.description = "orders database subnets, all zones".into();
    changed.spec.subnet_ids = subnets.clone();
    let Observation::Exists(observed) = client.observe(&changed, at).await.unwrap() else {
        panic!("still there");
    };
    assert_eq!(observed.delta.describe(), ["description", "subnetIds"]);

    // A new tag is a difference that update applies with AddTagsToResource alone.
    object.spec.tags.insert("cost-centre".into(), "42".into());
    let Observation::Exists(observed) = client.observe(&object, at).await.unwrap() else {
        panic!("still there");
    };
    assert_eq!(observed.delta.describe(), ["tags"]);
    proxy.reset_counts();
    client.update(&object, at, &observed).await.expect("update");
    assert_eq!(proxy.count("AddTagsToResource"), 1);
    assert_eq!(
        proxy.count("ModifyDBSubnetGroup"),
        0,
        "nothing else differed"
    );
    let Observation::Exists(observed) = client.observe(&object, at).await.unwrap() else {
        panic!("still there");
    };
    assert!(observed.is_up_to_date(), "{:?}", observed.delta.describe());

    client
        .delete(&object, at, DeletionPolicy::Delete)
        .await
        .expect("delete");
    assert_eq!(
        client.observe(&object, at).await.unwrap(),
        Observation::Missing
    );
    client
        .delete(&object, at, DeletionPolicy::Delete)
        .await
        .expect("deleting a deleted group is not an error");
    ns.delete().await;
}

#[tokio::test]
async fn aws_refusals_and_throttling_keep_their_class_and_message() {
    let ns = TestNamespace::new().await;
    let proxy = FaultProxy::start(Emulator::moto().endpoint()).await;
    let client = DBSubnetGroupClient::new(aws_sdk_rds::Client::new(&sdk_config(&proxy.endpoint())));
    let object = subnet_group(&ns, vec!["subnet-0000dead".into()]);
    let name = object.default_external_name().unwrap();
    let at = Context::named(Some(&name));

    let refused = client
        .create(&object, at)
        .await
        .expect_err("no such subnet");
    assert_eq!(refused.class, ErrorClass::Terminal, "{refused:?}");
    assert!(refused.code.is_some(), "AWS's code is kept: {refused:?}");
    assert!(!refused.message.is_empty());

    proxy.inject("DescribeDBSubnetGroups", Fault::Throttle, None);
    let throttled = client.observe(&object, at).await.expect_err("throttled");
    assert_eq!(throttled.class, ErrorClass::Throttled);
    assert_eq!(throttled.code.as_deref(), Some("Throttling"));
    ns.delete().await;
}

#[tokio::test]
async fn the_api_server_refuses_a_snapshot_policy_and_malformed_subnets() {
    let ns = TestNamespace::new().await;
    cluster::install_crds(&ns.client).await;
    let manifest_with_subnets = |name: &str, subnets: &str, extra: &str| {
        format!(
            "apiVersion: rds.tether.dev/v1alpha1\nkind: DBSubnetGroup\nmetadata: {{name: {name}}}\nspec:\n  description: d\n  subnetIds: [{subnets}]\n  {extra}\n"
        )
    };
    let manifest = |name: &str, extra: &str| manifest_with_subnets(name, "subnet-0123abcd", extra);
    let applied = ns
        .apply(&manifest("ok", "deletionPolicy: Retain"))
        .await
        .expect("valid");
    assert_eq!(applied.len(), 1);

    for (what, yaml, fragment) in [
        (
            "a Snapshot policy",
            manifest("snap", "deletionPolicy: Snapshot"),
            "has no snapshot",
        ),
        (
            "a malformed subnet id",
            manifest_with_subnets("bad-subnet", "sub-1", "tags: {}"),
            "spec.subnetIds[0]",
        ),
    ] {
        let message = ns.refusal(&yaml, what).await;
        assert!(message.contains(fragment), "{what}: {message}");
    }
    ns.delete().await;
}
