//! The AWS SDK, configured from a ProviderConfig stored in the real API server, against
//! moto and LocalStack, with the fault proxy in between.

use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_ec2::{
    config::{retry::RetryConfig, timeout::TimeoutConfig},
    error::{DisplayErrorContext, ProvideErrorMetadata},
    types::{Filter, ResourceType, Tag, TagSpecification},
};
use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{Api, api::PostParams, core::ObjectMeta};
use tether_api::ErrorClass;
use tether_aws::{ProviderConfig, sdk_config};
use tether_testkit::{Emulator, Fault, FaultProxy, TestNamespace, cluster, emulator::EmulatorKind};

use crate::world::on_moto_and_localstack;

/// Static keys the emulators accept.
const TEST_ACCESS_KEY_ID: &str = "AKIATETHERTEST000001";
const TEST_SECRET_ACCESS_KEY: &str = "tether-test-secret-access-key";

/// Stores a credentials Secret and a ProviderConfig (named after the namespace) that
/// points at `endpoint`, and returns the ProviderConfig as the API server keeps it.
async fn provider_config(ns: &TestNamespace, endpoint: &str, credentials: &str) -> ProviderConfig {
    cluster::install_crds(&ns.client).await;
    let keys = [
        ("aws_access_key_id", TEST_ACCESS_KEY_ID),
        ("aws_secret_access_key", TEST_SECRET_ACCESS_KEY),
    ];
    ns.api::<Secret>()
        .create(
            &PostParams::default(),
            &Secret {
                metadata: ObjectMeta {
                    name: Some("aws-keys".into()),
                    ..ObjectMeta::default()
                },
                data: Some(
                    keys.iter()
                        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                        .collect(),
                ),
                ..Secret::default()
            },
        )
        .await
        .expect("creating the credentials Secret");
    ns.apply(&format!(
        r#"
apiVersion: tether.dev/v1alpha1
kind: ProviderConfig
metadata: {{name: {name}}}
spec:
  region: us-east-1
  endpoint: {endpoint}
  credentials:
    secretRef: {{namespace: {name}, name: aws-keys}}
    {credentials}
"#,
        name = ns.name,
    ))
    .await
    .expect("applying the ProviderConfig");
    Api::<ProviderConfig>::all(ns.client.clone())
        .get(&ns.name)
        .await
        .expect("reading the ProviderConfig back")
}

async fn sdk_config_for(ns: &TestNamespace, endpoint: &str, credentials: &str) -> SdkConfig {
    let config = provider_config(ns, endpoint, credentials).await;
    sdk_config::load(&config.spec, &ns.client)
        .await
        .expect("building the SDK configuration")
}

/// An EC2 client with the SDK's standard three attempts, but short back-offs so that
/// the tests do not wait on them.
fn ec2(config: &SdkConfig) -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::config::Builder::from(config)
            .retry_config(RetryConfig::standard().with_initial_backoff(Duration::from_millis(10)))
            .build(),
    )
}

fn rds(config: &SdkConfig) -> aws_sdk_rds::Client {
    aws_sdk_rds::Client::from_conf(
        aws_sdk_rds::config::Builder::from(config)
            .retry_config(RetryConfig::standard().with_initial_backoff(Duration::from_millis(10)))
            .build(),
    )
}

async fn security_group_round_trip(kind: EmulatorKind) {
    let ns = TestNamespace::new().await;
    let proxy = FaultProxy::start(Emulator::of(kind).endpoint()).await;
    let ec2 = ec2(&sdk_config_for(&ns, &proxy.endpoint(), "source: Secret").await);

    let created = ec2
        .create_security_group()
        .group_name(format!("{}-sg", ns.name))
        .description("tether integration test")
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::SecurityGroup)
                .tags(
                    Tag::builder()
                        .key("tether.dev/test")
                        .value(&ns.name)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap_or_else(|e| panic!("{kind:?}: CreateSecurityGroup: {}", DisplayErrorContext(e)));
    let group_id = created.group_id().expect("a group id").to_owned();

    let described = ec2
        .describe_security_groups()
        .filters(
            Filter::builder()
                .name("tag:tether.dev/test")
                .values(&ns.name)
                .build(),
        )
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{kind:?}: DescribeSecurityGroups: {}",
                DisplayErrorContext(e)
            )
        });
    let groups = described.security_groups();
    assert_eq!(
        groups.len(),
        1,
        "{kind:?}: exactly one group carries the test's tag"
    );
    assert_eq!(groups[0].group_id(), Some(group_id.as_str()));
    assert_eq!(
        groups[0].group_name(),
        Some(format!("{}-sg", ns.name).as_str())
    );

    assert_eq!(proxy.count("CreateSecurityGroup"), 1);
    assert_eq!(proxy.count("DescribeSecurityGroups"), 1);
    assert!(
        proxy
            .calls()
            .iter()
            .all(|call| call.service == "ec2" && call.access_key_id == TEST_ACCESS_KEY_ID),
        "every call was signed for ec2 with the keys from the Secret: {:?}",
        proxy.calls()
    );
    ns.delete().await;
}

on_moto_and_localstack!(
    security_group_round_trip:
    sdk_from_provider_config_manages_ec2_on_moto,
    sdk_from_provider_config_manages_ec2_on_localstack
);

#[tokio::test]
async fn sdk_from_provider_config_manages_rds_on_moto() {
    let ns = TestNamespace::new().await;
    let proxy = FaultProxy::start(Emulator::moto().endpoint()).await;
    let config = sdk_config_for(&ns, &proxy.endpoint(), "source: Secret").await;
    let subnets = ec2(&config)
        .describe_subnets()
        .send()
        .await
        .expect("DescribeSubnets");
    let subnet_ids: Vec<String> = subnets
        .subnets()
        .iter()
        .filter_map(|subnet| subnet.subnet_id().map(str::to_owned))
        .take(2)
        .collect();
    assert_eq!(
        subnet_ids.len(),
        2,
        "moto's default VPC has subnets in two zones"
    );

    let rds = rds(&config);
    let name = format!("{}-subnets", ns.name);
    rds.create_db_subnet_group()
        .db_subnet_group_name(&name)
        .db_subnet_group_description("tether integration test")
        .set_subnet_ids(Some(subnet_ids.clone()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateDBSubnetGroup: {}", DisplayErrorContext(e)));
    let described = rds
        .describe_db_subnet_groups()
        .db_subnet_group_name(&name)
        .send()
        .await
        .expect("DescribeDBSubnetGroups");
    let group = &described.db_subnet_groups()[0];
    let mut described_subnets: Vec<&str> = group
        .subnets()
        .iter()
        .filter_map(|subnet| subnet.subnet_identifier())
        .collect();
    described_subnets.sort();
    let mut expected: Vec<&str> = subnet_ids.iter().map(String::as_str).collect();
    expected.sort();
    assert_eq!(described_subnets, expected);
    assert_eq!(proxy.count("CreateDBSubnetGroup"), 1);
    assert_eq!(proxy.count("DescribeDBSubnetGroups"), 1);
    ns.delete().await;
}

/// EC2 throttling: always throttled, the SDK tries three times and reports
/// `RequestLimitExceeded`; throttled twice, its third attempt gets through.
async fn ec2_throttling_is_the_sdks_throttling_error(kind: EmulatorKind) {
    let ns = TestNamespace::new().await;
    let proxy = FaultProxy::start(Emulator::of(kind).endpoint()).await;
    let ec2 = ec2(&sdk_config_for(&ns, &proxy.endpoint(), "source: Secret").await);

    proxy.inject("DescribeSecurityGroups", Fault::Throttle, None);
    let error = ec2
        .describe_security_groups()
        .send()
        .await
        .expect_err("throttled");
    assert_eq!(
        error.code(),
        Some("RequestLimitExceeded"),
        "{}",
        DisplayErrorContext(&error)
    );
    assert_eq!(
        proxy.count("DescribeSecurityGroups"),
        3,
        "the SDK's three attempts"
    );

    proxy.clear_faults();
    proxy.reset_counts();
    proxy.inject("DescribeSecurityGroups", Fault::Throttle, Some(2));
    ec2.describe_security_groups()
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{kind:?}: the third attempt passes: {}",
                DisplayErrorContext(e)
            )
        });
    let calls = proxy.calls();
    assert_eq!(
        calls.iter().map(|call| call.forwarded).collect::<Vec<_>>(),
        [false, false, true],
        "three attempts, only the last reached the emulator"
    );
    ns.delete().await;
}

on_moto_and_localstack!(
    ec2_throttling_is_the_sdks_throttling_error:
    ec2_throttling_is_the_sdks_throttling_error_on_moto,
    ec2_throttling_is_the_sdks_throttling_error_on_localstack
);

#[tokio::test]
async fn rds_throttling_is_the_sdks_throttling_error() {
    let ns = TestNamespace::new().await;
    let proxy = FaultProxy::start(Emulator::moto().endpoint()).await;
    let rds = rds(&sdk_config_for(&ns, &proxy.endpoint(), "source: Secret").await);
    proxy.inject("DescribeDBInstances", Fault::Throttle, None);
    let error = rds
        .describe_db_instances()
        .send()
        .await
        .expect_err("throttled");
    assert_eq!(
        error.code(),
        Some("Throttling"),
        "{}",
        DisplayErrorContext(&error)
    );
    assert_eq!(
        proxy.count("DescribeDBInstances"),
        3,
        "the SDK's three attempts"
    );
    assert!(
        proxy
            .calls()
            .iter()
            .all(|call| call.service == "rds" && !call.forwarded)
    );
    ns.delete().await;
}

#[tokio::test]
async fn a_dropped_response_still_reaches_the_emulator() {
    let ns = TestNamespace::new().await;
    let proxy = FaultProxy::start(Emulator::moto().endpoint()).await;
    let ec2 = ec2(&sdk_config_for(&ns, &proxy.endpoint(), "source: Secret").await);
    let name = format!("{}-dropped", ns.name);

    proxy.inject("CreateSecurityGroup", Fault::DropResponse, Some(1));
    let error = ec2
        .create_security_group()
        .group_name(&name)
        .description("dropped response")
        .send()
        .await
        .expect_err("the retry finds the group the dropped call created");
    assert_eq!(
        error.code(),
        Some("InvalidGroup.Duplicate"),
        "{}",
        DisplayErrorContext(&error)
    );
    assert_eq!(
        proxy.count("CreateSecurityGroup"),
        2,
        "the SDK retried once"
    );
    let groups = ec2
        .describe_security_groups()
        .filters(Filter::builder().name("group-name").values(&name).build())
        .send()
        .await
        .expect("DescribeSecurityGroups");
    assert_eq!(
        groups.security_groups().len(),
        1,
        "the dropped call made the group"
    );
    ns.delete().await;
}

#[tokio::test]
async fn added_latency_trips_the_sdks_attempt_timeout() {
    let ns = TestNamespace::new().await;
    let proxy = FaultProxy::start(Emulator::moto().endpoint()).await;
    let config = sdk_config_for(&ns, &proxy.endpoint(), "source: Secret").await;
    // moto loads its EC2 backend on the first EC2 call (seconds on a busy machine):
    // warm it up without a timeout, so the timed calls below measure only the proxy.
    ec2(&config)
        .describe_security_groups()
        .send()
        .await
        .expect("warm-up call");
    let ec2 = aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::config::Builder::from(&config)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_secs(3))
                    .build(),
            )
            .build(),
    );
    ec2.describe_security_groups()
        .send()
        .await
        .expect("no latency yet");
    proxy.inject(
        "DescribeSecurityGroups",
        Fault::Latency(Duration::from_secs(10)),
        Some(1),
    );
    let error = ec2
        .describe_security_groups()
        .send()
        .await
        .expect_err("the delayed call times out");
    assert!(
        matches!(error, aws_sdk_ec2::error::SdkError::TimeoutError(_)),
        "{}",
        DisplayErrorContext(&error)
    );
    ns.delete().await;
}

#[tokio::test]
async fn assume_role_signs_with_keys_issued_by_sts() {
    let ns = TestNamespace::new().await;
    let proxy = FaultProxy::start(Emulator::moto().endpoint()).await;
    let config = sdk_config_for(
        &ns,
        &proxy.endpoint(),
        "source: AssumeRole\n    assumeRole: {roleArn: 'arn:aws:iam::123456789012:role/tether', externalId: platform}",
    )
    .await;
    ec2(&config)
        .describe_security_groups()
        .send()
        .await
        .expect("DescribeSecurityGroups with the assumed role");
    let calls = proxy.calls();
    let assume: Vec<_> = calls
        .iter()
        .filter(|c| c.operation == "AssumeRole")
        .collect();
    assert_eq!(assume.len(), 1, "one AssumeRole call: {calls:?}");
    assert_eq!(assume[0].service, "sts");
    assert_eq!(
        assume[0].access_key_id, TEST_ACCESS_KEY_ID,
        "STS was called with the Secret's keys"
    );
    let describe = calls
        .iter()
        .find(|c| c.operation == "DescribeSecurityGroups")
        .expect("the EC2 call went through the proxy");
    assert_ne!(
        describe.access_key_id, TEST_ACCESS_KEY_ID,
        "EC2 was called with the assumed role's keys, not the base keys"
    );
    ns.delete().await;
}

#[tokio::test]
async fn a_missing_credentials_secret_is_a_terminal_error_naming_it() {
    let ns = TestNamespace::new().await;
    let mut config = provider_config(&ns, "http://127.0.0.1:9", "source: Secret").await;
    config.spec.credentials.secret_ref.as_mut().unwrap().name = "no-such-secret".into();
    let error = sdk_config::load(&config.spec, &ns.client)
        .await
        .expect_err("the Secret does not exist");
    assert_eq!(error.class(), ErrorClass::Terminal);
    assert_eq!(
        error.to_string(),
        format!(
            "credentials Secret {}/no-such-secret does not exist",
            ns.name
        )
    );
    ns.delete().await;
}

#[tokio::test]
async fn the_proxy_plays_ec2s_read_lag_and_client_token_idempotency() {
    let ns = TestNamespace::new().await;
    let proxy = FaultProxy::start(Emulator::moto().endpoint()).await;
    let ec2 = ec2(&sdk_config_for(&ns, &proxy.endpoint(), "source: Secret").await);
    proxy.hide_new_resources_for(Duration::from_secs(3));
    let token = format!("{}-launch", ns.name);
    let launch = || {
        ec2.run_instances()
            .image_id("ami-0123456789abcdef0")
            .min_count(1)
            .max_count(1)
            .client_token(&token)
            .send()
    };
    let first = launch().await.expect("the first launch");
    let id = first.instances()[0].instance_id().unwrap().to_owned();
    let repeated = launch().await.expect("the repeated launch");
    assert_eq!(repeated.instances()[0].instance_id(), Some(id.as_str()));
    let launches: Vec<bool> = proxy
        .calls()
        .iter()
        .filter(|call| call.operation == "RunInstances")
        .map(|call| call.forwarded)
        .collect();
    assert_eq!(launches, [true, false], "the repeat launched nothing");

    let hidden = ec2
        .describe_instances()
        .instance_ids(&id)
        .send()
        .await
        .expect_err("not visible right after the launch");
    assert_eq!(hidden.code(), Some("InvalidInstanceID.NotFound"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let shown = ec2
        .describe_instances()
        .instance_ids(&id)
        .send()
        .await
        .expect("visible once the lag is over");
    assert_eq!(
        shown.reservations()[0].instances()[0].instance_id(),
        Some(id.as_str())
    );
    ns.delete().await;
}
