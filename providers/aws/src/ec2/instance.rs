//! The `Instance` kind (an EC2 instance, optionally with an SSH key pair tether
//! generates) and its external client: the CRD with its CEL rules, and the EC2 calls
//! that find an instance by its UID tag, launch it exactly once, change its tags,
//! security groups and type (stopping and starting it only when allowed), and
//! terminate it.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_ec2::{
    error::ProvideErrorMetadata,
    primitives::{Blob, DateTimeFormat},
    types::{AttributeValue, Instance as Ec2Instance, InstanceType, ResourceType, Tag},
};
use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use k8s_openapi::jiff::Timestamp;
use kube::{CustomResource, KubeSchema, ResourceExt, core::ApiResource};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tether_api::{
    ErrorClass, LocalReference, ObjectReference,
    conditions::{self, READY, SYNCED},
    external::{
        ConnectionDetails, Context, Created, ExternalClient, Observation, ObservationOf, Observed,
        ObservedOf, ProviderError, Readiness,
    },
    managed::{DeletionPolicy, Managed, ManagedFields, ManagedStatus},
};

use super::{
    SecurityGroup, create_tags,
    instance_batch::{InstanceBatch, live_instances},
    is_not_found, ssh_key, sync_tags, tag_map, tag_specification, uid_filter, without_retries,
};
use crate::{
    errors::{absent_if, provider_error},
    tags::{UID_TAG, tags_differ},
};

crate::delta::field_delta! {
    /// Where an EC2 instance differs from its spec.
    InstanceDelta {
        /// `tags`, tether's UID tag included.
        tags => "tags",
        /// `securityGroupIds` and `securityGroupRefs`.
        security_group_ids => "securityGroupIds",
        /// `instanceType`, and the instance can be stopped or is stopped.
        instance_type => "instanceType",
        /// Not a spec field: the instance is stopped (or carries a stale marker) after
        /// tether stopped it to change its type, and must be started again.
        instance_state => "instanceState",
    }
}

/// The value of [`RESTART_TAG`] while tether changes the instance type.
const RESTART_FOR_INSTANCE_TYPE: &str = "instanceType";

/// Tag tether puts on an instance before it stops it to apply a change that needs a
/// stopped instance (its value names the change, e.g. `instanceType`). While it is
/// there, tether starts the instance again once the change is made; it survives a
/// crash between the stop and the start.
pub const RESTART_TAG: &str = "tether.dev/restart-after-stop";

/// The tag AWS consoles show as the instance's name.
const NAME_TAG: &str = "Name";
/// The longest tag value EC2 accepts.
const MAX_TAG_VALUE_CHARS: usize = 256;
/// The longest `ClientToken` EC2 accepts.
const MAX_CLIENT_TOKEN_CHARS: usize = 64;

/// Connection-Secret keys.
const SSH_PRIVATE_KEY: &str = "ssh-privatekey";
const USERNAME_KEY: &str = "username";
const HOST_KEY: &str = "host";
const PRIVATE_IP_KEY: &str = "private-ip";
const PUBLIC_IP_KEY: &str = "public-ip";
const INSTANCE_ID_KEY: &str = "instance-id";

/// The login user when `sshKey.username` is not set (Amazon Linux's).
const DEFAULT_USERNAME: &str = "ec2-user";

/// EC2 instance states.
const PENDING: &str = "pending";
const RUNNING: &str = "running";
const STOPPING: &str = "stopping";
const STOPPED: &str = "stopped";
const SHUTTING_DOWN: &str = "shutting-down";
const TERMINATED: &str = "terminated";
/// EC2's error code for a key pair name already taken.
const KEY_PAIR_DUPLICATE: &str = "InvalidKeyPair.Duplicate";

/// An EC2 instance; tether writes its addresses (and, when it generates the SSH key,
/// the private key) to the connection Secret.
// clippy reads the repeated `type_ = "string"` of the print columns as a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "ec2.tether.dev",
    version = "v1alpha1",
    kind = "Instance",
    namespaced,
    status = "InstanceStatus",
    doc = "An EC2 instance; Ready while it is running.",
    category = "tether",
    shortname = "ec2instance",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Synced",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Synced\")].status"
    ),
    printcolumn(
        name = "Instance",
        type_ = "string",
        json_path = ".status.atProvider.instanceId"
    ),
    printcolumn(
        name = "State",
        type_ = "string",
        json_path = ".status.atProvider.state"
    ),
    printcolumn(
        name = "Public IP",
        type_ = "string",
        json_path = ".status.atProvider.publicIp"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = kube::core::Rule::new("!has(self.deletionPolicy) || self.deletionPolicy != 'Snapshot'")
    .message("an instance has no snapshot: use Delete or Retain")
    .field_path(".deletionPolicy")
    .reason(kube::core::Reason::FieldValueForbidden))]
#[x_kube(validation = kube::core::Rule::new("!has(self.sshKey) || !has(self.sshKey.generate) || !self.sshKey.generate || has(self.writeConnectionSecretToRef)")
    .message("writeConnectionSecretToRef is required when sshKey.generate is true: that Secret is the only place the private key is kept")
    .field_path(".writeConnectionSecretToRef")
    .reason(kube::core::Reason::FieldValueRequired))]
#[x_kube(validation = kube::core::Rule::new("has(self.subnetId) == has(oldSelf.subnetId)")
    .message("subnetId cannot be added or removed after creation: an instance stays in the subnet it was launched in")
    .field_path(".subnetId")
    .reason(kube::core::Reason::FieldValueInvalid))]
#[x_kube(validation = kube::core::Rule::new("has(self.sshKey) == has(oldSelf.sshKey)")
    .message("sshKey cannot be added or removed after creation: an instance keeps the key pair it was launched with")
    .field_path(".sshKey")
    .reason(kube::core::Reason::FieldValueInvalid))]
#[x_kube(validation = kube::core::Rule::new("has(self.userData) == has(oldSelf.userData)")
    .message("userData cannot be added or removed after creation: it only runs at the instance's first boot")
    .field_path(".userData")
    .reason(kube::core::Reason::FieldValueInvalid))]
#[serde(rename_all = "camelCase")]
pub struct InstanceSpec {
    #[serde(flatten)]
    pub managed: ManagedFields,

    /// The AMI (`ami-…`) to launch. Immutable.
    #[schemars(regex(pattern = r"^ami-[0-9a-f]+$"))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf")
        .message("imageId is immutable: an instance keeps the image it was launched from")
        .reason(kube::core::Reason::FieldValueInvalid))]
    pub image_id: String,

    /// The instance type, e.g. `t3.micro`. Changing it needs the instance stopped:
    /// tether does that only with `allowStop: true`.
    #[schemars(regex(pattern = r"^[a-z0-9-]+\.[a-z0-9-]+$"))]
    pub instance_type: String,

    /// The subnet (`subnet-…`) to launch in. Default: AWS picks one in the default
    /// VPC. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^subnet-[0-9a-f]+$"))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf")
        .message("subnetId is immutable: an instance stays in the subnet it was launched in")
        .reason(kube::core::Reason::FieldValueInvalid))]
    pub subnet_id: Option<String>,

    /// Ids of security groups (`sg-…`) not managed by tether. The instance gets these
    /// and those of `securityGroupRefs`; when both are empty, AWS gives it the VPC's
    /// default group and tether leaves its groups alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = r"^sg-[0-9a-f]+$")))]
    pub security_group_ids: Vec<String>,

    /// `SecurityGroup` objects in this namespace whose groups the instance gets;
    /// tether waits until they are Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_group_refs: Vec<LocalReference>,

    /// The SSH key pair to launch with: one tether generates, or an existing EC2 key
    /// pair. Default: none. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf")
        .message("sshKey is immutable: an instance keeps the key pair it was launched with")
        .reason(kube::core::Reason::FieldValueInvalid))]
    pub ssh_key: Option<SshKey>,

    /// A script or cloud-init configuration, as plain text (tether encodes it in
    /// base64), run at the instance's first boot. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16384))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf")
        .message("userData is immutable: it only runs at the instance's first boot")
        .reason(kube::core::Reason::FieldValueInvalid))]
    pub user_data: Option<String>,

    /// Whether tether may stop the instance, and start it again, to apply a change
    /// that needs it stopped (a new `instanceType`). Default `false`: such a change is
    /// refused with `Synced=False`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_stop: bool,

    /// Tags for the instance and its volumes. tether adds `tether.dev/uid`, and a
    /// `Name` tag `<namespace>/<name>` unless one is given here.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// The SSH key pair of an instance.
#[derive(Clone, Debug, Default, Deserialize, Serialize, KubeSchema, PartialEq, Eq)]
#[x_kube(validation = kube::core::Rule::new("has(self.keyName) != (has(self.generate) && self.generate)")
    .message("sshKey: set exactly one of generate: true and keyName")
    .reason(kube::core::Reason::FieldValueInvalid))]
#[serde(rename_all = "camelCase")]
pub struct SshKey {
    /// `true`: tether generates an ed25519 key, imports its public half into EC2 as
    /// the key pair `tether-<uid>`, and writes the private key to the connection
    /// Secret (`ssh-privatekey`), which is then required.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub generate: bool,

    /// Name of an existing EC2 key pair, not managed by tether.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub key_name: Option<String>,

    /// The login user the connection Secret names (`username`); default `ec2-user`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-z_][a-z0-9_-]{0,31}$"))]
    pub username: Option<String>,
}

/// What tether and AWS report about the instance.
pub type InstanceStatus = ManagedStatus<InstanceObservation>;

/// The instance as AWS reports it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InstanceObservation {
    /// The instance id (`i-…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// EC2's state of the instance: `pending`, `running`, `stopping`, `stopped` or
    /// `shutting-down`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// The instance type in use now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// The AMI the instance was launched from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// The subnet the instance is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
    /// The VPC the instance is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_id: Option<String>,
    /// The private IPv4 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_ip: Option<String>,
    /// The public IPv4 address, while the instance has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_ip: Option<String>,
    /// The private DNS name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_dns_name: Option<String>,
    /// The public DNS name, while the instance has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_dns_name: Option<String>,
    /// The EC2 key pair the instance was launched with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_name: Option<String>,
    /// The security groups of the instance, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_group_ids: Vec<String>,
    /// When the instance was last launched or started, in RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_time: Option<String>,
    /// tether stopped the instance to change its type and will start it again (the
    /// instance carries the `tether.dev/restart-after-stop` tag).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restart_after_stop: bool,
}

impl Managed for Instance {
    type AtProvider = InstanceObservation;
    type Delta = InstanceDelta;

    const DEFAULT_DELETION_POLICY: DeletionPolicy = DeletionPolicy::Delete;

    fn managed_fields(&self) -> &ManagedFields {
        &self.spec.managed
    }

    fn status(&self) -> Option<&ManagedStatus<InstanceObservation>> {
        self.status.as_ref()
    }

    fn spec_tags(&self) -> Option<&BTreeMap<String, String>> {
        Some(&self.spec.tags)
    }

    /// None: AWS assigns the instance id.
    fn default_external_name(&self) -> Option<String> {
        None
    }

    fn references(&self) -> Vec<ObjectReference> {
        self.spec
            .security_group_refs
            .iter()
            .enumerate()
            .map(|(index, reference)| ObjectReference {
                field: security_group_ref_field(index),
                resource: ApiResource::erase::<SecurityGroup>(&()),
                name: reference.name.clone(),
                needed_to_create: true,
            })
            .collect()
    }

    fn referenced_kinds() -> Vec<ApiResource> {
        vec![ApiResource::erase::<SecurityGroup>(&())]
    }
}

/// The reference field of the `index`th entry of `securityGroupRefs`; the key of its
/// resolved group id in `Context::references`.
fn security_group_ref_field(index: usize) -> String {
    format!("securityGroupRefs[{index}]")
}

impl Instance {
    /// The name of the EC2 key pair tether imports for this instance, `tether-<uid>`;
    /// `None` unless `sshKey.generate` is true.
    pub fn key_pair_name(&self) -> Option<String> {
        let generate = self.spec.ssh_key.as_ref().is_some_and(|key| key.generate);
        let uid = self.uid().filter(|_| generate)?;
        Some(format!("tether-{uid}"))
    }

    /// The key pair the instance is launched with: the generated one or `keyName`.
    fn launch_key_name(&self) -> Option<String> {
        self.key_pair_name().or_else(|| {
            self.spec
                .ssh_key
                .as_ref()
                .and_then(|key| key.key_name.clone())
        })
    }

    /// The tags tether wants on the instance, its volumes and its key pair: the
    /// spec's, the UID tag, and `Name` = `<namespace>/<name>` unless the spec names it.
    fn desired_tags(&self) -> BTreeMap<String, String> {
        let mut tags = crate::tags::desired_tags(&self.spec.tags, self.uid());
        tags.entry(NAME_TAG.to_owned()).or_insert_with(|| {
            format!(
                "{}/{}",
                self.namespace().unwrap_or_default(),
                self.name_any()
            )
            .chars()
            .take(MAX_TAG_VALUE_CHARS)
            .collect()
        });
        tags
    }

    /// The login user of the connection Secret, when the instance has an SSH key.
    fn username(&self) -> Option<&str> {
        self.spec
            .ssh_key
            .as_ref()
            .map(|key| key.username.as_deref().unwrap_or(DEFAULT_USERNAME))
    }

    /// The security groups the instance should have (sorted): `securityGroupIds` and
    /// the resolved `securityGroupRefs`; `None` when the spec names none. Pending while
    /// a reference is not resolved.
    fn desired_security_groups(
        &self,
        context: &Context<'_>,
    ) -> Result<Option<Vec<String>>, ProviderError> {
        if self.spec.security_group_ids.is_empty() && self.spec.security_group_refs.is_empty() {
            return Ok(None);
        }
        let mut groups: BTreeSet<String> = self.spec.security_group_ids.iter().cloned().collect();
        for (index, reference) in self.spec.security_group_refs.iter().enumerate() {
            let field = security_group_ref_field(index);
            let id = context.reference(&field).ok_or_else(|| ProviderError {
                class: ErrorClass::Pending,
                code: None,
                message: format!(
                    "the SecurityGroup {} of {field} is not resolved yet",
                    reference.name
                ),
            })?;
            groups.insert(id.to_owned());
        }
        Ok(Some(groups.into_iter().collect()))
    }
}

/// The `ClientToken` of the RunInstances call for the object with `uid`, for the
/// create first attempted at `attempt`: `<uid>-<attempt in Unix seconds>`. A launch
/// sent again because EC2 did not show the first one yet carries the same attempt, so
/// EC2 answers with the instance the first made; a launch after positive evidence that
/// the instance is gone (it was seen terminated, or never showed within the runtime's
/// grace period) is a new attempt with a new token. Without an attempt time, the UID.
/// At most 64 characters.
fn client_token(uid: &str, attempt: Option<Timestamp>) -> String {
    let token = match attempt {
        Some(attempt) => format!("{uid}-{}", attempt.as_second()),
        None => uid.to_owned(),
    };
    token.chars().take(MAX_CLIENT_TOKEN_CHARS).collect()
}

fn terminal(message: String) -> ProviderError {
    ProviderError {
        class: ErrorClass::Terminal,
        code: None,
        message,
    }
}

/// EC2's state name of an instance.
fn state_of(instance: &Ec2Instance) -> Option<&str> {
    instance
        .state()
        .and_then(|state| state.name())
        .map(|name| name.as_str())
}

/// Readiness from the instance's state and whether it carries [`RESTART_TAG`].
fn readiness(state: Option<&str>, restart_after_stop: bool) -> Readiness {
    let not_ready = |reason: &str, message: String| Readiness::NotReady {
        reason: reason.to_owned(),
        message,
    };
    match (state, restart_after_stop) {
        (Some(RUNNING), false) => Readiness::Ready,
        (Some(RUNNING), true) => not_ready(
            "Restarting",
            "tether is stopping the instance to change its type, and will start it again"
                .to_owned(),
        ),
        (Some(state), true) => not_ready(
            "Restarting",
            format!(
                "tether stopped the instance to change its type and will start it again; it is {state}"
            ),
        ),
        (Some(PENDING), false) => not_ready("Pending", "the instance is starting".to_owned()),
        (Some(STOPPING), false) => not_ready("Stopping", "the instance is stopping".to_owned()),
        (Some(STOPPED), false) => not_ready(
            "Stopped",
            "the instance is stopped; tether does not start an instance it did not stop".to_owned(),
        ),
        (Some(SHUTTING_DOWN), false) => not_ready(
            "ShuttingDown",
            "the instance is shutting down and will be terminated".to_owned(),
        ),
        (Some(other), false) => {
            not_ready("Unknown", format!("AWS reports the instance as {other}"))
        }
        (None, _) => not_ready(
            "Unknown",
            "AWS reports no state for the instance".to_owned(),
        ),
    }
}

/// Whether tether generated the instance's key and the connection Secret lost it (it
/// was deleted or edited): nobody can log in with the key the instance has.
fn key_lost(object: &Instance, context: &Context<'_>) -> bool {
    object.key_pair_name().is_some()
        && context
            .published
            .0
            .get(SSH_PRIVATE_KEY)
            .is_none_or(|key| key.is_empty())
}

/// Whether this reconcile is a routine poll: the object was Ready and Synced at its
/// current generation and is not being deleted. Anything else looks at EC2 directly.
fn is_routine_poll(object: &Instance) -> bool {
    let generation = object.metadata.generation;
    object.metadata.deletion_timestamp.is_none()
        && [READY, SYNCED].into_iter().all(|type_| {
            conditions::find(object.conditions(), type_).is_some_and(|condition| {
                condition.status == "True" && condition.observed_generation == generation
            })
        })
}

/// What observe reports of `instance`, the instance of `object`.
fn observed(
    object: &Instance,
    context: &Context<'_>,
    instance: &Ec2Instance,
) -> ObservedOf<Instance> {
    let spec = &object.spec;
    let tags = tag_map(instance.tags());
    let state = state_of(instance);
    let instance_type = instance.instance_type().map(|t| t.as_str().to_owned());
    let groups: BTreeSet<String> = instance
        .security_groups()
        .iter()
        .filter_map(|group| group.group_id().map(str::to_owned))
        .collect();
    let restart_after_stop = tags.contains_key(RESTART_TAG);
    let (running, stopped) = (state == Some(RUNNING), state == Some(STOPPED));

    // While the instance is pending, stopping or shutting down, nothing can be done.
    let type_differs =
        instance_type.as_deref() != Some(spec.instance_type.as_str()) && (running || stopped);
    // Stopped by tether: start it again. Running with the tag and no stop coming: the
    // start happened but the tag stayed, so only the tag goes.
    let stop_coming = running && type_differs && spec.allow_stop;
    let delta = InstanceDelta {
        tags: tags_differ(&object.desired_tags(), context.applied_tags, &tags),
        // Unresolved references (only while the object is being deleted) compare nothing.
        security_group_ids: object
            .desired_security_groups(context)
            .ok()
            .flatten()
            .is_some_and(|wanted| wanted.iter().cloned().collect::<BTreeSet<_>>() != groups),
        instance_type: type_differs,
        instance_state: restart_after_stop && (stopped || (running && !stop_coming)),
    };

    let id = instance.instance_id().map(str::to_owned);
    let private_ip = instance.private_ip_address().map(str::to_owned);
    let public_ip = instance.public_ip_address().map(str::to_owned);
    let mut connection = BTreeMap::from([
        (
            HOST_KEY.to_owned(),
            public_ip
                .clone()
                .or_else(|| private_ip.clone())
                .unwrap_or_default(),
        ),
        (
            PRIVATE_IP_KEY.to_owned(),
            private_ip.clone().unwrap_or_default(),
        ),
        (
            PUBLIC_IP_KEY.to_owned(),
            public_ip.clone().unwrap_or_default(),
        ),
        (INSTANCE_ID_KEY.to_owned(), id.clone().unwrap_or_default()),
    ]);
    if let Some(username) = object.username() {
        connection.insert(USERNAME_KEY.to_owned(), username.to_owned());
    }

    Observed {
        external_name: id.clone(),
        owner_uid: tags.get(UID_TAG).cloned(),
        delta,
        readiness: match readiness(state, restart_after_stop) {
            Readiness::Ready if key_lost(object, context) => Readiness::NotReady {
                reason: "SshKeyLost".to_owned(),
                message: "the connection Secret no longer holds ssh-privatekey, and EC2 keeps \
                          no copy of a private key: re-create this Instance for a new key pair"
                    .to_owned(),
            },
            other => other,
        },
        at_provider: InstanceObservation {
            instance_id: id,
            state: state.map(str::to_owned),
            instance_type,
            image_id: instance.image_id().map(str::to_owned),
            subnet_id: instance.subnet_id().map(str::to_owned),
            vpc_id: instance.vpc_id().map(str::to_owned),
            private_ip,
            public_ip,
            private_dns_name: instance
                .private_dns_name()
                .filter(|name| !name.is_empty())
                .map(str::to_owned),
            public_dns_name: instance
                .public_dns_name()
                .filter(|name| !name.is_empty())
                .map(str::to_owned),
            key_name: instance.key_name().map(str::to_owned),
            security_group_ids: groups.into_iter().collect(),
            launch_time: instance
                .launch_time()
                .and_then(|time| time.fmt(DateTimeFormat::DateTime).ok()),
            restart_after_stop,
        },
        connection: ConnectionDetails(
            connection
                .into_iter()
                .map(|(key, value)| (key, value.into_bytes()))
                .collect(),
        ),
    }
}

/// Observes and changes EC2 instances (and the key pairs tether imports for them)
/// through the EC2 API.
#[derive(Clone, Debug)]
pub struct InstanceClient {
    ec2: aws_sdk_ec2::Client,
    /// Answers routine polls for every instance of this ProviderConfig at once.
    batch: InstanceBatch,
}

impl InstanceClient {
    /// A client that calls EC2 through `ec2`.
    pub fn new(ec2: aws_sdk_ec2::Client) -> Self {
        Self {
            ec2,
            batch: InstanceBatch::default(),
        }
    }

    /// A client for the AWS account and region of `config` (the shape
    /// [`AwsConnector`](crate::connector::AwsConnector) builds clients with).
    pub fn from_config(config: &aws_config::SdkConfig, _kube: kube::Client) -> Self {
        Self::new(aws_sdk_ec2::Client::new(config))
    }

    /// The instance `id`, unless EC2 has no such instance or it is terminated.
    async fn by_id(&self, id: &str) -> Result<Option<Ec2Instance>, ProviderError> {
        let described = absent_if(
            self.ec2.describe_instances().instance_ids(id).send().await,
            is_not_found,
        )?;
        Ok(described
            .into_iter()
            .flat_map(|described| described.reservations.unwrap_or_default())
            .flat_map(|reservation| reservation.instances.unwrap_or_default())
            .find(|instance| {
                instance.instance_id() == Some(id) && state_of(instance) != Some(TERMINATED)
            }))
    }

    /// The live instance carrying the UID tag `uid`; the earliest launched when there
    /// are several (which tether never makes).
    async fn by_uid(&self, uid: &str) -> Result<Option<Ec2Instance>, ProviderError> {
        let found = live_instances(&self.ec2, uid_filter(uid)).await?;
        if found.len() > 1 {
            let ids: Vec<&str> = found.iter().filter_map(|i| i.instance_id()).collect();
            tracing::warn!(
                uid,
                instances = ?ids,
                "several instances carry the same tether.dev/uid; managing the earliest launched"
            );
        }
        Ok(found.into_iter().min_by(|a, b| {
            let key = |i: &Ec2Instance| (i.launch_time().is_none(), i.launch_time().copied());
            key(a)
                .cmp(&key(b))
                .then_with(|| a.instance_id().cmp(&b.instance_id()))
        }))
    }

    /// Whether the EC2 key pair `name` exists.
    async fn key_pair_exists(&self, name: &str) -> Result<bool, ProviderError> {
        let described = absent_if(
            self.ec2.describe_key_pairs().key_names(name).send().await,
            is_not_found,
        )?;
        Ok(described.is_some_and(|described| {
            described
                .key_pairs()
                .iter()
                .any(|pair| pair.key_name() == Some(name))
        }))
    }

    /// Imports `public_key` as the key pair `name`, replacing a key pair of that name
    /// left by an earlier attempt: the connection Secret's key is the one that counts.
    async fn import_key_pair(
        &self,
        name: &str,
        public_key: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), ProviderError> {
        let import = || {
            self.ec2
                .import_key_pair()
                .key_name(name)
                .public_key_material(Blob::new(public_key.as_bytes()))
                .tag_specifications(tag_specification(ResourceType::KeyPair, tags))
                .send()
        };
        match import().await {
            Ok(_) => Ok(()),
            Err(error) if error.code() == Some(KEY_PAIR_DUPLICATE) => {
                self.delete_key_pair(name).await?;
                import().await.map_err(provider_error)?;
                Ok(())
            }
            Err(error) => Err(provider_error(error)),
        }
    }

    /// Deletes the key pair `name`; one that is gone already is fine.
    async fn delete_key_pair(&self, name: &str) -> Result<(), ProviderError> {
        absent_if(
            self.ec2.delete_key_pair().key_name(name).send().await,
            is_not_found,
        )?;
        Ok(())
    }

    async fn start(&self, id: &str) -> Result<(), ProviderError> {
        self.ec2
            .start_instances()
            .instance_ids(id)
            .send()
            .await
            .map_err(provider_error)?;
        Ok(())
    }

    async fn remove_restart_tag(&self, id: &str) -> Result<(), ProviderError> {
        self.ec2
            .delete_tags()
            .resources(id)
            .tags(Tag::builder().key(RESTART_TAG).build())
            .send()
            .await
            .map_err(provider_error)?;
        Ok(())
    }
}

impl ExternalClient<Instance> for InstanceClient {
    async fn observe(
        &self,
        object: &Instance,
        context: Context<'_>,
    ) -> Result<ObservationOf<Instance>, ProviderError> {
        // A routine poll of an instance that is Ready and Synced: the shared snapshot
        // answers, if it has it.
        if is_routine_poll(object)
            && let (Some(uid), Some(id)) = (object.uid(), context.external_name)
            && let Some(instance) = self.batch.lookup(&self.ec2, &uid).await?
            && instance.instance_id() == Some(id)
        {
            return Ok(Observation::Exists(observed(object, &context, &instance)));
        }
        let mut instance = match context.external_name {
            Some(id) => self.by_id(id).await?,
            None => None,
        };
        if instance.is_none()
            && let Some(uid) = object.uid()
        {
            instance = self.by_uid(&uid).await?;
        }
        if let Some(instance) = instance {
            return Ok(Observation::Exists(observed(object, &context, &instance)));
        }
        if object.metadata.deletion_timestamp.is_some()
            && let Some(name) = object.key_pair_name()
            && self.key_pair_exists(&name).await?
        {
            // The instance is gone but its key pair is not: delete removes it.
            return Ok(Observation::Exists(Observed {
                external_name: None,
                // Named after the object's UID: only this object makes it.
                owner_uid: object.uid(),
                delta: InstanceDelta::default(),
                readiness: Readiness::NotReady {
                    reason: "KeyPairRemains".to_owned(),
                    message: format!(
                        "the instance is gone; its key pair {name} is still to be deleted"
                    ),
                },
                at_provider: InstanceObservation::default(),
                connection: ConnectionDetails::default(),
            }));
        }
        Ok(Observation::Missing)
    }

    async fn prepare(
        &self,
        object: &Instance,
        context: Context<'_>,
    ) -> Result<Option<ConnectionDetails>, ProviderError> {
        let generate = object.spec.ssh_key.as_ref().is_some_and(|key| key.generate);
        if !generate
            || context.external_name.is_some()
            || context
                .published
                .0
                .get(SSH_PRIVATE_KEY)
                .is_some_and(|key| !key.is_empty())
        {
            return Ok(None);
        }
        let comment = format!(
            "{}/{}",
            object.namespace().unwrap_or_default(),
            object.name_any()
        );
        let private_key = ssh_key::generate(&comment).map_err(|error| ProviderError {
            class: ErrorClass::Transient,
            code: None,
            message: error.to_string(),
        })?;
        let username = object.username().unwrap_or(DEFAULT_USERNAME);
        Ok(Some(ConnectionDetails(BTreeMap::from([
            (SSH_PRIVATE_KEY.to_owned(), private_key),
            (USERNAME_KEY.to_owned(), username.as_bytes().to_vec()),
        ]))))
    }

    async fn create(
        &self,
        object: &Instance,
        context: Context<'_>,
    ) -> Result<Created, ProviderError> {
        let _write = self.batch.write_guard();
        let spec = &object.spec;
        let uid = object.uid().ok_or_else(|| {
            terminal(
                "the object has no UID: tether cannot launch an instance it could not find again"
                    .to_owned(),
            )
        })?;
        let tags = object.desired_tags();
        if let Some(name) = object.key_pair_name() {
            let private_key = context
                .published
                .0
                .get(SSH_PRIVATE_KEY)
                .filter(|key| !key.is_empty())
                .ok_or_else(|| {
                    terminal(
                        "the connection Secret holds no ssh-privatekey: tether writes the generated \
                         key there before it launches the instance; without it the instance's key \
                         pair cannot be made"
                            .to_owned(),
                    )
                })?;
            // The message of a parse error never includes the key.
            let public_key = ssh_key::public_key(private_key)
                .map_err(|error| terminal(format!("the connection Secret's {error}")))?;
            self.import_key_pair(&name, &public_key, &tags).await?;
        }
        let security_groups = object.desired_security_groups(&context)?;
        let launched = self
            .ec2
            .run_instances()
            .image_id(&spec.image_id)
            .instance_type(InstanceType::from(spec.instance_type.as_str()))
            .min_count(1)
            .max_count(1)
            .set_subnet_id(spec.subnet_id.clone())
            .set_security_group_ids(security_groups)
            .set_key_name(object.launch_key_name())
            .set_user_data(spec.user_data.as_ref().map(|data| BASE64.encode(data)))
            .client_token(client_token(&uid, context.create_attempt))
            .tag_specifications(tag_specification(ResourceType::Instance, &tags))
            .tag_specifications(tag_specification(ResourceType::Volume, &tags))
            .customize()
            .config_override(without_retries())
            .send()
            .await
            .map_err(provider_error)?;
        let id = launched
            .instances()
            .iter()
            .find_map(|instance| instance.instance_id())
            .ok_or_else(|| ProviderError {
                // The next observe finds the instance by its UID tag.
                class: ErrorClass::Transient,
                code: None,
                message: "RunInstances answered without an instance id".to_owned(),
            })?;
        Ok(Created {
            external_name: Some(id.to_owned()),
        })
    }

    async fn update(
        &self,
        object: &Instance,
        context: Context<'_>,
        observed: &ObservedOf<Instance>,
    ) -> Result<(), ProviderError> {
        let _write = self.batch.write_guard();
        let spec = &object.spec;
        let at_provider = &observed.at_provider;
        let id = observed
            .external_name
            .as_deref()
            .or(at_provider.instance_id.as_deref())
            .or(context.external_name)
            .ok_or_else(|| terminal("the observed instance has no id".to_owned()))?;
        let delta = &observed.delta;
        let state = at_provider.state.as_deref();

        if delta.tags {
            sync_tags(&self.ec2, id, &object.desired_tags(), context.applied_tags).await?;
        }
        if delta.security_group_ids
            && let Some(groups) = object.desired_security_groups(&context)?
        {
            self.ec2
                .modify_instance_attribute()
                .instance_id(id)
                .set_groups(Some(groups))
                .send()
                .await
                .map_err(provider_error)?;
        }
        let mut refused = None;
        let mut started = false;
        if delta.instance_type {
            if !spec.allow_stop {
                refused = Some(terminal(format!(
                    "instanceType: changing {} to {} needs the instance stopped; set \
                     spec.allowStop: true to let tether stop and start it",
                    at_provider.instance_type.as_deref().unwrap_or("(unknown)"),
                    spec.instance_type
                )));
            } else if state == Some(RUNNING) {
                // The tag first: it is what makes tether start the instance again,
                // even after a crash right after the stop.
                let marker = BTreeMap::from([(
                    RESTART_TAG.to_owned(),
                    RESTART_FOR_INSTANCE_TYPE.to_owned(),
                )]);
                create_tags(&self.ec2, id, &marker).await?;
                self.ec2
                    .stop_instances()
                    .instance_ids(id)
                    .send()
                    .await
                    .map_err(provider_error)?;
            } else if state == Some(STOPPED) {
                self.ec2
                    .modify_instance_attribute()
                    .instance_id(id)
                    .instance_type(AttributeValue::builder().value(&spec.instance_type).build())
                    .send()
                    .await
                    .map_err(provider_error)?;
                // Stopped by its user (no tag): it stays stopped.
                if at_provider.restart_after_stop {
                    self.start(id).await?;
                    self.remove_restart_tag(id).await?;
                    started = true;
                }
            }
        }
        if delta.instance_state && !started {
            if state == Some(STOPPED) {
                self.start(id).await?;
            }
            self.remove_restart_tag(id).await?;
        }
        refused.map_or(Ok(()), Err)
    }

    async fn delete(
        &self,
        object: &Instance,
        context: Context<'_>,
        _policy: DeletionPolicy,
    ) -> Result<Option<String>, ProviderError> {
        let _write = self.batch.write_guard();
        if let Some(id) = context.external_name {
            absent_if(
                self.ec2.terminate_instances().instance_ids(id).send().await,
                is_not_found,
            )?;
        }
        if let Some(name) = object.key_pair_name() {
            self.delete_key_pair(&name).await?;
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    //! What moto cannot show (lost answers, states such as `stopping`, exact request
    //! contents and order), with the SDK's own mocks; and the CRD's rules.

    use aws_sdk_ec2::{
        error::ErrorMetadata,
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
            GroupIdentifier, InstanceState, InstanceStateName, KeyPairInfo, Reservation,
            TagSpecification, builders::InstanceBuilder,
        },
    };
    use aws_smithy_mocks::{Rule, RuleMode, mock, mock_client};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::{CustomResourceExt, core::ObjectMeta};
    use tether_api::managed::LocalSecretReference;

    use super::*;
    use tether_api::external::Delta;

    const UID: &str = "0c9f3a1e-5b7d-4e2a-9c1f-2d3e4f5a6b7c";
    const ID: &str = "i-0123456789abcdef0";
    const OLD_ID: &str = "i-0fedcba9876543210";
    const KEY_PAIR: &str = "tether-0c9f3a1e-5b7d-4e2a-9c1f-2d3e4f5a6b7c";

    fn object() -> Instance {
        Instance {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("shop".into()),
                uid: Some(UID.into()),
                ..ObjectMeta::default()
            },
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

    fn error(code: &str, message: &str) -> ErrorMetadata {
        ErrorMetadata::builder().code(code).message(message).build()
    }

    fn client(rules: &[&Rule]) -> InstanceClient {
        InstanceClient::new(mock_client!(
            aws_sdk_ec2,
            RuleMode::MatchAny,
            rules.iter().copied()
        ))
    }

    /// A client that answers `rules` in this order and no other.
    fn in_order(rules: &[&Rule]) -> InstanceClient {
        InstanceClient::new(mock_client!(
            aws_sdk_ec2,
            RuleMode::Sequential,
            rules.iter().copied()
        ))
    }

    fn exists(observation: ObservationOf<Instance>) -> ObservedOf<Instance> {
        match observation {
            Observation::Exists(observed) => observed,
            Observation::Missing => panic!("the instance is observed"),
        }
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
            pending: true,
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
        Observed {
            external_name: Some(ID.into()),
            owner_uid: Some(UID.into()),
            delta,
            readiness: Readiness::Ready,
            at_provider: InstanceObservation {
                instance_id: Some(ID.into()),
                state: Some(state.into()),
                instance_type: Some(instance_type.into()),
                restart_after_stop,
                ..InstanceObservation::default()
            },
            connection: ConnectionDetails::default(),
        }
    }

    #[tokio::test]
    async fn a_generated_key_gone_from_the_secret_is_reported_not_ready() {
        let running = || by_id(ID, vec![instance(ID, InstanceStateName::Running).build()]);
        let (with_key, without_key) = (running(), running());
        let key = published_key(&ssh_key::generate("shop/web").unwrap());
        let nothing = ConnectionDetails::default();
        let held = exists(
            client(&[&with_key])
                .observe(&generating(), with_published(&key, Some(ID)))
                .await
                .unwrap(),
        );
        assert_eq!(held.readiness, Readiness::Ready);
        let lost = exists(
            client(&[&without_key])
                .observe(&generating(), with_published(&nothing, Some(ID)))
                .await
                .unwrap(),
        );
        match lost.readiness {
            Readiness::NotReady { reason, message } => {
                assert_eq!(reason, "SshKeyLost");
                assert!(message.contains("re-create this Instance"), "{message}");
            }
            Readiness::Ready => panic!("a lost key is not Ready"),
        }
    }

    #[tokio::test]
    async fn without_an_external_name_the_instance_is_found_by_its_uid_tag() {
        let describe = by_uid(vec![instance(ID, InstanceStateName::Running).build()]);
        let client = client(&[&describe]);
        let mut object = object();
        object.spec.ssh_key = Some(SshKey {
            key_name: Some("ops".into()),
            ..SshKey::default()
        });
        let observed = exists(client.observe(&object, Context::named(None)).await.unwrap());
        assert_eq!(observed.external_name.as_deref(), Some(ID));
        assert_eq!(observed.readiness, Readiness::Ready);
        assert!(observed.is_up_to_date(), "{:?}", observed.delta.describe());
        let at = &observed.at_provider;
        assert_eq!(at.instance_id.as_deref(), Some(ID));
        assert_eq!(at.state.as_deref(), Some("running"));
        assert_eq!(at.security_group_ids, ["sg-0def"]);
        assert_eq!(at.launch_time.as_deref(), Some("2023-11-14T22:13:20Z"));
        assert_eq!(at.public_dns_name, None, "an empty name is no name");
        let connection = &observed.connection;
        assert_eq!(text(connection, "host"), "203.0.113.7");
        assert_eq!(text(connection, "private-ip"), "10.0.0.5");
        assert_eq!(text(connection, "public-ip"), "203.0.113.7");
        assert_eq!(text(connection, "instance-id"), ID);
        assert_eq!(text(connection, "username"), "ec2-user");
        assert!(!connection.0.contains_key(SSH_PRIVATE_KEY));
    }

    #[tokio::test]
    async fn a_terminated_instance_falls_back_to_the_uid_tag() {
        let old = by_id(
            OLD_ID,
            vec![instance(OLD_ID, InstanceStateName::Terminated).build()],
        );
        let new = by_uid(vec![
            instance(ID, InstanceStateName::Pending)
                .public_ip_address("")
                .set_public_ip_address(None)
                .build(),
        ]);
        let client = client(&[&old, &new]);
        let observed = exists(
            client
                .observe(&object(), Context::named(Some(OLD_ID)))
                .await
                .unwrap(),
        );
        assert_eq!(observed.external_name.as_deref(), Some(ID));
        assert_eq!((old.num_calls(), new.num_calls()), (1, 1));
        assert!(matches!(
            &observed.readiness,
            Readiness::NotReady { reason, .. } if reason == "Pending"
        ));
        assert_eq!(text(&observed.connection, "host"), "10.0.0.5");
        assert_eq!(
            text(&observed.connection, "public-ip"),
            "",
            "written, to replace a stale value"
        );
        assert!(!observed.connection.0.contains_key("username"));
    }

    #[tokio::test]
    async fn nothing_found_by_id_or_tag_is_missing() {
        let gone = mock!(aws_sdk_ec2::Client::describe_instances)
            .match_requests(|request| request.instance_ids() == [OLD_ID])
            .then_error(|| {
                DescribeInstancesError::generic(error(
                    "InvalidInstanceID.NotFound",
                    "The instance ID 'i-0fedcba9876543210' does not exist",
                ))
            });
        let none = by_uid(Vec::new());
        let client = client(&[&gone, &none]);
        let object = object();
        assert_eq!(
            client.observe(&object, Context::named(Some(OLD_ID))).await,
            Ok(Observation::Missing)
        );
        assert_eq!(
            client.observe(&object, Context::named(None)).await,
            Ok(Observation::Missing)
        );
        assert_eq!(none.num_calls(), 2);
    }

    #[tokio::test]
    async fn several_instances_with_the_uid_take_the_earliest_launched() {
        let describe = by_uid(vec![
            instance("i-0b", InstanceStateName::Running)
                .launch_time(DateTime::from_secs(1_700_000_100))
                .build(),
            instance("i-0a", InstanceStateName::Running).build(),
        ]);
        let client = client(&[&describe]);
        let observed = exists(
            client
                .observe(&object(), Context::named(None))
                .await
                .unwrap(),
        );
        assert_eq!(observed.external_name.as_deref(), Some("i-0a"));
    }

    #[tokio::test]
    async fn differences_cover_tags_groups_and_type() {
        let mut object = object();
        object.spec.instance_type = "t3.small".into();
        object.spec.security_group_ids = vec!["sg-0aaa".into()];
        object.spec.security_group_refs = vec![LocalReference { name: "web".into() }];
        object.spec.tags = BTreeMap::from([("team".into(), "shop".into())]);
        let references =
            BTreeMap::from([("securityGroupRefs[0]".to_owned(), "sg-0def".to_owned())]);
        let context = Context {
            references: &references,
            ..Context::named(Some(ID))
        };
        let running = instance(ID, InstanceStateName::Running).build();
        let observed = observed(&object, &context, &running);
        assert_eq!(
            observed.delta.describe(),
            ["tags", "securityGroupIds", "instanceType"]
        );

        // The groups the spec names, and the type, match; AWS's extra tags are fine.
        object.spec.instance_type = "t3.micro".into();
        object.spec.security_group_ids = vec!["sg-0def".into()];
        object.spec.tags = BTreeMap::from([("Name".into(), "shop/web".into())]);
        let matching = instance(ID, InstanceStateName::Running)
            .tags(Tag::builder().key("aws:owner").value("x").build())
            .build();
        assert!(super::observed(&object, &context, &matching).is_up_to_date());

        // No groups in the spec: tether does not manage them.
        object.spec.security_group_ids.clear();
        object.spec.security_group_refs.clear();
        object.spec.instance_type = "t3.small".into();
        let stopping = instance(ID, InstanceStateName::Stopping).build();
        let observed = super::observed(&object, &Context::named(Some(ID)), &stopping);
        assert!(
            observed.is_up_to_date(),
            "nothing can change while stopping: {:?}",
            observed.delta.describe()
        );
    }

    #[tokio::test]
    async fn a_type_change_without_allow_stop_is_refused_but_tags_are_applied() {
        let tags = mock!(aws_sdk_ec2::Client::create_tags)
            .match_requests(|request| {
                request.resources() == [ID]
                    && request
                        .tags()
                        .iter()
                        .any(|t| t.key() == Some(UID_TAG) && t.value() == Some(UID))
            })
            .then_output(|| CreateTagsOutput::builder().build());
        let client = client(&[&tags]);
        let mut object = object();
        object.spec.instance_type = "t3.small".into();
        let error = client
            .update(
                &object,
                Context::named(Some(ID)),
                &observation(
                    "running",
                    "t3.micro",
                    false,
                    InstanceDelta {
                        tags: true,
                        instance_type: true,
                        ..InstanceDelta::default()
                    },
                ),
            )
            .await
            .expect_err("refused");
        assert_eq!(error.class, ErrorClass::Terminal);
        assert_eq!(
            error.message,
            "instanceType: changing t3.micro to t3.small needs the instance stopped; set \
             spec.allowStop: true to let tether stop and start it"
        );
        assert_eq!(tags.num_calls(), 1, "the tags are applied all the same");
    }

    #[tokio::test]
    async fn with_allow_stop_a_running_instance_is_tagged_then_stopped() {
        let mark = mock!(aws_sdk_ec2::Client::create_tags)
            .match_requests(|request| {
                request.resources() == [ID]
                    && request.tags().len() == 1
                    && request.tags()[0].key() == Some(RESTART_TAG)
                    && request.tags()[0].value() == Some("instanceType")
            })
            .then_output(|| CreateTagsOutput::builder().build());
        let stop = mock!(aws_sdk_ec2::Client::stop_instances)
            .match_requests(|request| request.instance_ids() == [ID])
            .then_output(|| StopInstancesOutput::builder().build());
        let client = in_order(&[&mark, &stop]);
        let mut object = object();
        object.spec.instance_type = "t3.small".into();
        object.spec.allow_stop = true;
        client
            .update(
                &object,
                Context::named(Some(ID)),
                &observation(
                    "running",
                    "t3.micro",
                    false,
                    InstanceDelta {
                        instance_type: true,
                        ..InstanceDelta::default()
                    },
                ),
            )
            .await
            .unwrap();
        assert_eq!((mark.num_calls(), stop.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn stopped_by_tether_the_type_is_changed_and_the_instance_started_again() {
        let describe = by_id(
            ID,
            vec![
                instance(ID, InstanceStateName::Stopped)
                    .tags(
                        Tag::builder()
                            .key(RESTART_TAG)
                            .value("instanceType")
                            .build(),
                    )
                    .build(),
            ],
        );
        let modify = mock!(aws_sdk_ec2::Client::modify_instance_attribute)
            .match_requests(|request| {
                request.instance_id() == Some(ID)
                    && request.instance_type().and_then(|t| t.value()) == Some("t3.small")
            })
            .then_output(|| ModifyInstanceAttributeOutput::builder().build());
        let start = mock!(aws_sdk_ec2::Client::start_instances)
            .match_requests(|request| request.instance_ids() == [ID])
            .then_output(|| StartInstancesOutput::builder().build());
        let untag = mock!(aws_sdk_ec2::Client::delete_tags)
            .match_requests(|request| {
                request.resources() == [ID]
                    && request.tags().len() == 1
                    && request.tags()[0].key() == Some(RESTART_TAG)
                    && request.tags()[0].value().is_none()
            })
            .then_output(|| DeleteTagsOutput::builder().build());
        let client = in_order(&[&describe, &modify, &start, &untag]);
        let mut object = object();
        object.spec.instance_type = "t3.small".into();
        object.spec.allow_stop = true;
        let context = Context::named(Some(ID));
        let observed = exists(client.observe(&object, context).await.unwrap());
        assert_eq!(observed.delta.describe(), ["instanceType", "instanceState"]);
        assert!(observed.at_provider.restart_after_stop);
        assert!(matches!(
            &observed.readiness,
            Readiness::NotReady { reason, .. } if reason == "Restarting"
        ));
        client.update(&object, context, &observed).await.unwrap();
        assert_eq!(
            (modify.num_calls(), start.num_calls(), untag.num_calls()),
            (1, 1, 1),
            "one start, though both differences ask for it"
        );
    }

    #[tokio::test]
    async fn a_crash_before_the_start_is_repaired_and_a_user_stop_is_left_alone() {
        let tagged_stopped = instance(ID, InstanceStateName::Stopped)
            .tags(
                Tag::builder()
                    .key(RESTART_TAG)
                    .value("instanceType")
                    .build(),
            )
            .build();
        let object = object();
        let context = Context::named(Some(ID));
        let observed = observed(&object, &context, &tagged_stopped);
        assert_eq!(
            observed.delta.describe(),
            ["instanceState"],
            "the type matches"
        );
        let start = mock!(aws_sdk_ec2::Client::start_instances)
            .then_output(|| StartInstancesOutput::builder().build());
        let untag = mock!(aws_sdk_ec2::Client::delete_tags)
            .then_output(|| DeleteTagsOutput::builder().build());
        in_order(&[&start, &untag])
            .update(&object, context, &observed)
            .await
            .unwrap();

        let user_stopped = instance(ID, InstanceStateName::Stopped).build();
        let observed = super::observed(&object, &context, &user_stopped);
        assert!(observed.is_up_to_date());
        assert_eq!(
            observed.readiness,
            Readiness::NotReady {
                reason: "Stopped".into(),
                message:
                    "the instance is stopped; tether does not start an instance it did not stop"
                        .into()
            }
        );
    }

    #[tokio::test]
    async fn security_groups_are_set_from_ids_and_references() {
        let modify = mock!(aws_sdk_ec2::Client::modify_instance_attribute)
            .match_requests(|request| {
                request.instance_id() == Some(ID)
                    && request.groups() == ["sg-0aaa", "sg-0bbb"]
                    && request.instance_type().is_none()
            })
            .then_output(|| ModifyInstanceAttributeOutput::builder().build());
        let client = client(&[&modify]);
        let mut object = object();
        object.spec.security_group_ids = vec!["sg-0bbb".into()];
        object.spec.security_group_refs = vec![LocalReference { name: "web".into() }];
        let references =
            BTreeMap::from([("securityGroupRefs[0]".to_owned(), "sg-0aaa".to_owned())]);
        let context = Context {
            references: &references,
            ..Context::named(Some(ID))
        };
        client
            .update(
                &object,
                context,
                &observation(
                    "running",
                    "t3.micro",
                    false,
                    InstanceDelta {
                        security_group_ids: true,
                        ..InstanceDelta::default()
                    },
                ),
            )
            .await
            .unwrap();
        assert_eq!(modify.num_calls(), 1);
    }

    #[tokio::test]
    async fn prepare_generates_a_key_only_before_the_first_launch() {
        let client = client(&[]);
        let generating = generating();
        let nothing = ConnectionDetails::default();
        let prepared = client
            .prepare(&generating, with_published(&nothing, None))
            .await
            .unwrap()
            .expect("a new key");
        let key = String::from_utf8(prepared.0[SSH_PRIVATE_KEY].clone()).unwrap();
        assert!(key.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
        assert!(
            ssh_key::public_key(key.as_bytes())
                .unwrap()
                .ends_with(" shop/web")
        );
        assert_eq!(text(&prepared, "username"), "ec2-user");

        let published = published_key(key.as_bytes());
        assert_eq!(
            client
                .prepare(&generating, with_published(&published, None))
                .await,
            Ok(None),
            "the published key is used"
        );
        assert_eq!(
            client
                .prepare(&generating, with_published(&nothing, Some(ID)))
                .await,
            Ok(None),
            "an instance was launched already"
        );
        assert_eq!(
            client
                .prepare(&object(), with_published(&nothing, None))
                .await,
            Ok(None),
            "no generated key"
        );
    }

    #[tokio::test]
    async fn create_imports_the_published_key_and_launches_with_the_uid_token() {
        let private_key = ssh_key::generate("shop/web").unwrap();
        let public_key = ssh_key::public_key(&private_key).unwrap();
        let import = mock!(aws_sdk_ec2::Client::import_key_pair)
            .match_requests(move |request| {
                request.key_name() == Some(KEY_PAIR)
                    && request.public_key_material().map(|b| b.as_ref())
                        == Some(public_key.as_bytes())
                    && tagged(request.tag_specifications(), ResourceType::KeyPair)
            })
            .then_output(|| ImportKeyPairOutput::builder().build());
        let run = mock!(aws_sdk_ec2::Client::run_instances)
            .match_requests(|request| {
                request.client_token() == Some(UID)
                    && request.image_id() == Some("ami-0abc")
                    && request.instance_type() == Some(&InstanceType::T3Micro)
                    && (request.min_count(), request.max_count()) == (Some(1), Some(1))
                    && request.subnet_id() == Some("subnet-0a")
                    && request.security_group_ids() == ["sg-0aaa"]
                    && request.key_name() == Some(KEY_PAIR)
                    && request.user_data() == Some("I2Nsb3VkLWNvbmZpZwo=")
                    && tagged(request.tag_specifications(), ResourceType::Instance)
                    && tagged(request.tag_specifications(), ResourceType::Volume)
            })
            .then_output(|| {
                RunInstancesOutput::builder()
                    .instances(instance(ID, InstanceStateName::Pending).build())
                    .build()
            });
        let client = in_order(&[&import, &run]);
        let mut object = generating();
        object.spec.user_data = Some("#cloud-config\n".into());
        object.spec.security_group_ids = vec!["sg-0aaa".into()];
        let published = published_key(&private_key);
        assert_eq!(
            client
                .create(&object, with_published(&published, None))
                .await,
            Ok(Created {
                external_name: Some(ID.into())
            })
        );
        assert_eq!((import.num_calls(), run.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn a_repeated_launch_keeps_its_token_and_a_new_attempt_gets_a_new_one() {
        let first: Timestamp = "2026-11-30T12:00:00Z".parse().unwrap();
        let later: Timestamp = "2026-11-30T12:10:00Z".parse().unwrap();
        let run = mock!(aws_sdk_ec2::Client::run_instances)
            .match_requests(|request| {
                request.client_token() == Some("0c9f3a1e-5b7d-4e2a-9c1f-2d3e4f5a6b7c-1796040000")
                    && request.key_name() == Some("ops")
                    && request.security_group_ids().is_empty()
                    && request.user_data().is_none()
            })
            .then_output(|| {
                RunInstancesOutput::builder()
                    .instances(instance(ID, InstanceStateName::Pending).build())
                    .build()
            });
        let client = client(&[&run]);
        let mut object = object();
        object.spec.ssh_key = Some(SshKey {
            key_name: Some("ops".into()),
            ..SshKey::default()
        });
        let attempt = |at| Context {
            create_attempt: Some(at),
            ..Context::named(Some(OLD_ID))
        };
        // Sent again (EC2 did not show the first launch yet): the same token, so EC2
        // answers with the first launch's instance.
        for _ in 0..2 {
            let created = client.create(&object, attempt(first)).await.unwrap();
            assert_eq!(created.external_name.as_deref(), Some(ID));
        }
        assert_eq!(run.num_calls(), 2);
        assert_ne!(
            client_token(UID, Some(first)),
            client_token(UID, Some(later)),
            "a new attempt launches anew"
        );
        assert!(client_token(UID, Some(later)).len() <= 64);
    }

    #[tokio::test]
    async fn a_key_pair_left_by_an_earlier_attempt_is_replaced() {
        let duplicate = mock!(aws_sdk_ec2::Client::import_key_pair).then_error(|| {
            ImportKeyPairError::generic(error(
                "InvalidKeyPair.Duplicate",
                "The keypair already exists",
            ))
        });
        let delete = mock!(aws_sdk_ec2::Client::delete_key_pair)
            .match_requests(|request| request.key_name() == Some(KEY_PAIR))
            .then_output(|| DeleteKeyPairOutput::builder().build());
        let import = mock!(aws_sdk_ec2::Client::import_key_pair)
            .then_output(|| ImportKeyPairOutput::builder().build());
        let run = mock!(aws_sdk_ec2::Client::run_instances).then_output(|| {
            RunInstancesOutput::builder()
                .instances(instance(ID, InstanceStateName::Pending).build())
                .build()
        });
        let client = in_order(&[&duplicate, &delete, &import, &run]);
        let published = published_key(&ssh_key::generate("shop/web").unwrap());
        client
            .create(&generating(), with_published(&published, None))
            .await
            .unwrap();
        assert_eq!(
            (
                duplicate.num_calls(),
                delete.num_calls(),
                import.num_calls(),
                run.num_calls()
            ),
            (1, 1, 1, 1)
        );
    }

    #[tokio::test]
    async fn create_without_a_published_key_is_terminal() {
        let client = client(&[]);
        let nothing = ConnectionDetails::default();
        let error = client
            .create(&generating(), with_published(&nothing, None))
            .await
            .expect_err("no key");
        assert_eq!(error.class, ErrorClass::Terminal);
        assert!(
            error
                .message
                .starts_with("the connection Secret holds no ssh-privatekey"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn delete_terminates_the_instance_and_deletes_the_key_pair() {
        let terminate = mock!(aws_sdk_ec2::Client::terminate_instances)
            .match_requests(|request| request.instance_ids() == [ID])
            .then_output(|| TerminateInstancesOutput::builder().build());
        let delete = mock!(aws_sdk_ec2::Client::delete_key_pair)
            .match_requests(|request| request.key_name() == Some(KEY_PAIR))
            .then_output(|| DeleteKeyPairOutput::builder().build());
        let with_key = in_order(&[&terminate, &delete]);
        assert_eq!(
            with_key
                .delete(
                    &generating(),
                    Context::named(Some(ID)),
                    DeletionPolicy::Delete
                )
                .await,
            Ok(None)
        );
        assert_eq!((terminate.num_calls(), delete.num_calls()), (1, 1));

        let gone = mock!(aws_sdk_ec2::Client::terminate_instances).then_error(|| {
            aws_sdk_ec2::operation::terminate_instances::TerminateInstancesError::generic(error(
                "InvalidInstanceID.NotFound",
                "gone",
            ))
        });
        let without_key = client(&[&gone]);
        assert_eq!(
            without_key
                .delete(&object(), Context::named(Some(ID)), DeletionPolicy::Delete)
                .await,
            Ok(None),
            "an instance gone already is fine, and there is no key pair"
        );
    }

    #[tokio::test]
    async fn a_remaining_key_pair_keeps_a_deleted_object_until_delete_removes_it() {
        let none = by_uid(Vec::new());
        let key_pairs = mock!(aws_sdk_ec2::Client::describe_key_pairs)
            .match_requests(|request| request.key_names() == [KEY_PAIR])
            .sequence()
            .output(|| {
                DescribeKeyPairsOutput::builder()
                    .key_pairs(KeyPairInfo::builder().key_name(KEY_PAIR).build())
                    .build()
            })
            .error(|| {
                aws_sdk_ec2::operation::describe_key_pairs::DescribeKeyPairsError::generic(error(
                    "InvalidKeyPair.NotFound",
                    "gone",
                ))
            })
            .build();
        let client = client(&[&none, &key_pairs]);
        let mut object = generating();
        object.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        let observed = exists(client.observe(&object, Context::named(None)).await.unwrap());
        assert_eq!(observed.external_name, None);
        assert!(matches!(
            &observed.readiness,
            Readiness::NotReady { reason, .. } if reason == "KeyPairRemains"
        ));
        assert_eq!(observed.at_provider, InstanceObservation::default());
        assert_eq!(
            client.observe(&object, Context::named(None)).await,
            Ok(Observation::Missing)
        );
    }

    #[tokio::test]
    async fn the_private_key_never_reaches_an_error_a_status_or_debug_output() {
        let private_key = ssh_key::generate("shop/web").unwrap();
        let pem = String::from_utf8(private_key.clone()).unwrap();
        let body: Vec<&str> = pem
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        assert!(!body.is_empty());
        let refused = mock!(aws_sdk_ec2::Client::import_key_pair).then_error(|| {
            ImportKeyPairError::generic(error("InvalidKey.Format", "Key is not in valid format"))
        });
        let import = mock!(aws_sdk_ec2::Client::import_key_pair)
            .then_output(|| ImportKeyPairOutput::builder().build());
        let run = mock!(aws_sdk_ec2::Client::run_instances).then_error(|| {
            RunInstancesError::generic(error("InvalidParameterValue", "bad user data"))
        });
        let describe = by_uid(vec![instance(ID, InstanceStateName::Running).build()]);
        let client = in_order(&[&refused, &import, &run, &describe]);
        let object = generating();
        let published = published_key(&private_key);
        let at = with_published(&published, None);

        let mut printed = Vec::new();
        let error = client.create(&object, at).await.expect_err("refused");
        printed.push(format!("{error} {error:?}"));
        let error = client.create(&object, at).await.expect_err("refused");
        printed.push(format!("{error} {error:?}"));
        let observation = client.observe(&object, at).await.unwrap();
        printed.push(format!("{observation:?}"));
        printed.push(serde_json::to_string(&exists(observation).at_provider).unwrap());
        let damaged = published_key(&private_key[..private_key.len() / 2]);
        let error = client
            .create(&object, with_published(&damaged, None))
            .await
            .expect_err("damaged");
        printed.push(format!("{error} {error:?}"));
        let nothing = ConnectionDetails::default();
        let prepared = client
            .prepare(&object, with_published(&nothing, None))
            .await;
        printed.push(format!("{prepared:?} {published:?} {at:?} {object:?}"));

        for text in printed {
            for line in &body {
                assert!(!text.contains(line), "the private key leaked: {text}");
            }
        }
    }

    #[test]
    fn the_object_declares_its_references_key_pair_and_tags() {
        let mut object = object();
        assert_eq!(object.default_external_name(), None);
        assert_eq!(object.deletion_policy(), DeletionPolicy::Delete);
        assert_eq!(object.key_pair_name(), None);
        assert!(object.references().is_empty());
        assert_eq!(generating().key_pair_name().as_deref(), Some(KEY_PAIR));

        object.spec.security_group_refs = vec![
            LocalReference { name: "web".into() },
            LocalReference { name: "ssh".into() },
        ];
        let references = object.references();
        assert_eq!(references.len(), 2);
        assert_eq!(references[1].field, "securityGroupRefs[1]");
        assert_eq!(references[1].name, "ssh");
        assert_eq!(references[1].resource.kind, "SecurityGroup");
        assert_eq!(Instance::referenced_kinds()[0].kind, "SecurityGroup");

        assert_eq!(object.desired_tags()["Name"], "shop/web");
        object.spec.tags = BTreeMap::from([("Name".into(), "frontend".into())]);
        assert_eq!(object.desired_tags()["Name"], "frontend");
        assert_eq!(object.desired_tags()[UID_TAG], UID);
    }

    #[test]
    fn the_crd_carries_the_cel_rules() {
        let crd = serde_json::to_string(&Instance::crd()).unwrap();
        for message in [
            "an instance has no snapshot: use Delete or Retain",
            "imageId is immutable",
            "subnetId is immutable",
            "sshKey is immutable",
            "userData is immutable",
            "sshKey: set exactly one of generate: true and keyName",
            "writeConnectionSecretToRef is required when sshKey.generate is true",
            "subnetId cannot be added or removed after creation",
        ] {
            assert!(crd.contains(message), "{message} is missing");
        }
        for column in ["Instance", "State", "Public IP"] {
            assert!(crd.contains(&format!("\"name\":\"{column}\"")), "{column}");
        }
        assert!(crd.contains("ec2instance"));
        assert!(crd.contains(r"^ami-[0-9a-f]+$"));
    }

    #[test]
    fn the_spec_uses_the_api_field_names() {
        let mut object = generating();
        object.spec.allow_stop = true;
        object.spec.user_data = Some("echo hi".into());
        let json = serde_json::to_value(&object.spec).unwrap();
        for key in [
            "imageId",
            "instanceType",
            "subnetId",
            "sshKey",
            "userData",
            "allowStop",
        ] {
            assert!(json.get(key).is_some(), "{key} in {json}");
        }
        assert_eq!(json["sshKey"]["generate"], true);
        let spec: InstanceSpec = serde_json::from_value(serde_json::json!({
            "imageId": "ami-0abc",
            "instanceType": "t3.micro",
        }))
        .unwrap();
        assert!(!spec.allow_stop && spec.security_group_ids.is_empty());
    }
}
