//! What moto cannot show (lost answers, states such as `stopping`, exact request
//! contents and order), with the SDK's own mocks; the diff, without mocks; and the
//! CRD's rules.
//!
//! One file a part: the client with the SDK's mocks (`client`), the diff
//! (`diff`), the CRD (`types`); the fixtures they share are here.

mod client;
mod diff;
mod types;

use std::collections::BTreeMap;

use crate::testing::{self, UID, a_dropped_tag, error, exists, metadata, mock_client};
use aws_sdk_ec2::{
    operation::{
        create_tags::CreateTagsOutput,
        delete_key_pair::DeleteKeyPairOutput,
        delete_tags::DeleteTagsOutput,
        describe_instances::{DescribeInstancesError, DescribeInstancesOutput},
        describe_key_pairs::DescribeKeyPairsOutput,
        import_key_pair::{ImportKeyPairError, ImportKeyPairOutput},
        modify_instance_attribute::ModifyInstanceAttributeOutput,
        run_instances::{RunInstancesError, RunInstancesOutput},
        start_instances::StartInstancesOutput,
        stop_instances::StopInstancesOutput,
        terminate_instances::TerminateInstancesOutput,
    },
    primitives::DateTime,
    types::{
        GroupIdentifier, Instance as Ec2Instance, InstanceState, InstanceStateName, InstanceType,
        KeyPairInfo, Reservation, ResourceType, Tag, TagSpecification, builders::InstanceBuilder,
    },
};
use aws_smithy_mocks::{Rule, RuleMode, mock};
use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::CustomResourceExt;
use tether_api::{
    ErrorClass, LocalReference,
    external::{
        ConnectionDetails, Context, Created, Delta, ExternalClient, Observation, ObservedOf,
        Readiness,
    },
    managed::{DeletionPolicy, LocalSecretReference, Managed},
};

use super::{
    client::{SSH_PRIVATE_KEY, client_token, observed, the_one},
    diff::diff,
    kept::KeptInstance,
    *,
};
use crate::{ec2::ssh_key, tags::UID_TAG};

const ID: &str = "i-0123456789abcdef0";
const OLD_ID: &str = "i-0fedcba9876543210";
const KEY_PAIR: &str = "tether-0c9f3a1e-5b7d-4e2a-9c1f-2d3e4f5a6b7c";

fn object() -> Instance {
    Instance {
        metadata: metadata("web"),
        spec: InstanceSpec {
            image_id: "ami-0abc".into(),
            instance_type: "t3.micro".into(),
            subnet_id: Some("subnet-0a".into()),
            ..InstanceSpec::default()
        },
        status: None,
    }
}

/// [`object`] with a generated SSH key.
fn generating() -> Instance {
    let mut object = object();
    object.spec.ssh_key = Some(SshKey {
        generate: true,
        ..SshKey::default()
    });
    object.spec.managed.write_connection_secret_to_ref = Some(LocalSecretReference {
        name: "web-ssh".into(),
    });
    object
}

/// An instance as DescribeInstances reports it, matching [`object`].
fn instance(id: &str, state: InstanceStateName) -> InstanceBuilder {
    Ec2Instance::builder()
        .instance_id(id)
        .state(InstanceState::builder().name(state).build())
        .instance_type(InstanceType::from("t3.micro"))
        .image_id("ami-0abc")
        .subnet_id("subnet-0a")
        .vpc_id("vpc-0a")
        .private_ip_address("10.0.0.5")
        .public_ip_address("203.0.113.7")
        .private_dns_name("ip-10-0-0-5.ec2.internal")
        .public_dns_name("")
        .security_groups(GroupIdentifier::builder().group_id("sg-0def").build())
        .launch_time(DateTime::from_secs(1_700_000_000))
        .tags(Tag::builder().key(UID_TAG).value(UID).build())
        .tags(Tag::builder().key("Name").value("shop/web").build())
}

fn described(instances: Vec<Ec2Instance>) -> DescribeInstancesOutput {
    DescribeInstancesOutput::builder()
        .reservations(
            Reservation::builder()
                .set_instances(Some(instances))
                .build(),
        )
        .build()
}

/// A DescribeInstances by the UID tag (and live states) answering `instances`.
fn by_uid(instances: Vec<Ec2Instance>) -> Rule {
    mock!(aws_sdk_ec2::Client::describe_instances)
        .match_requests(|request| {
            let filter = |name: &str| {
                request
                    .filters()
                    .iter()
                    .find(|f| f.name() == Some(name))
                    .map(|f| f.values().to_vec())
            };
            request.instance_ids().is_empty()
                && filter("tag:tether.dev/uid") == Some(vec![UID.to_owned()])
                && filter("instance-state-name").is_some_and(|states| {
                    states.len() == 5 && !states.iter().any(|s| s == "terminated")
                })
        })
        .then_output(move || described(instances.clone()))
}

/// A DescribeInstances of the instance `id` answering `instances`.
fn by_id(id: &'static str, instances: Vec<Ec2Instance>) -> Rule {
    mock!(aws_sdk_ec2::Client::describe_instances)
        .match_requests(move |request| request.instance_ids() == [id])
        .then_output(move || described(instances.clone()))
}

fn client(rules: &[&Rule]) -> InstanceClient {
    InstanceClient::new(mock_client!(aws_sdk_ec2, RuleMode::MatchAny, rules))
}

/// A client that answers `rules` in this order and no other.
fn in_order(rules: &[&Rule]) -> InstanceClient {
    InstanceClient::new(mock_client!(aws_sdk_ec2, RuleMode::Sequential, rules))
}

fn text(details: &ConnectionDetails, key: &str) -> String {
    String::from_utf8(details.0[key].clone()).unwrap()
}

fn published_key(private_key: &[u8]) -> ConnectionDetails {
    ConnectionDetails(BTreeMap::from([(
        SSH_PRIVATE_KEY.to_owned(),
        private_key.to_vec(),
    )]))
}

fn with_published<'a>(
    published: &'a ConnectionDetails,
    external_name: Option<&'a str>,
) -> Context<'a> {
    Context {
        published,
        credentials_pending: true,
        ..Context::named(external_name)
    }
}

/// Whether a tag specification for `resource` carries the UID and Name tags.
fn tagged(specs: &[TagSpecification], resource: ResourceType) -> bool {
    specs.iter().any(|spec| {
        spec.resource_type() == Some(&resource)
            && spec
                .tags()
                .iter()
                .any(|t| t.key() == Some(UID_TAG) && t.value() == Some(UID))
            && spec
                .tags()
                .iter()
                .any(|t| t.key() == Some("Name") && t.value() == Some("shop/web"))
    })
}

fn observation(
    state: &str,
    instance_type: &str,
    restart_after_stop: bool,
    delta: InstanceDelta,
) -> ObservedOf<Instance> {
    testing::observed(
        Some(ID),
        delta,
        InstanceObservation {
            instance_id: Some(ID.into()),
            state: Some(state.into()),
            instance_type: Some(instance_type.into()),
            restart_after_stop,
            ..InstanceObservation::default()
        },
    )
}
