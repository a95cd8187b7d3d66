//! The EC2 calls that find an instance by its UID tag, launch it exactly once (with the
//! key pair tether imports for it), change its tags, security groups and type
//! (stopping and starting it only when allowed), and terminate it; and what observe
//! reports of an instance.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex, MutexGuard},
};

use aws_sdk_ec2::{
    error::ProvideErrorMetadata,
    primitives::{Blob, DateTimeFormat},
    types::{AttributeValue, Instance as Ec2Instance, InstanceType, ResourceType, Tag},
};
use base64::{Engine, engine::general_purpose::STANDARD as BASE64};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use tether_api::{
    ErrorClass,
    external::{
        ConnectionDetails, Context, Created, ExternalClient, Observation, ObservationOf, Observed,
        ObservedOf, ProviderError, Readiness,
    },
    managed::DeletionPolicy,
    snapshot::{Snapshot, WriteGuard},
};

use super::{
    Instance, InstanceDelta, InstanceObservation,
    diff::diff,
    kept::KeptInstance,
    types::{DEFAULT_USERNAME, PENDING, RUNNING, SHUTTING_DOWN, STOPPED, STOPPING, TERMINATED},
};
use crate::{
    call_metrics::AwsConfig,
    ec2::{
        create_tags, is_not_found,
        live_instances::{live_instances, tagged_by_uid},
        retried_only_when_throttled, ssh_key, sync_tags, tag_map, tag_specification, uid_filter,
    },
    errors::{absent_if, provider_error},
    tags::UID_TAG,
};

/// The value of [`RESTART_TAG`] while tether changes the instance type.
const RESTART_FOR_INSTANCE_TYPE: &str = "instanceType";

/// Tag tether puts on an instance before it stops it to apply a change that needs a
/// stopped instance (its value names the change, e.g. `instanceType`). While it is
/// there, tether starts the instance again once the change is made; it survives a
/// crash between the stop and the start.
pub const RESTART_TAG: &str = "tether.dev/restart-after-stop";

/// The longest `ClientToken` EC2 accepts.
const MAX_CLIENT_TOKEN_CHARS: usize = 64;

/// Connection-Secret keys.
pub(super) const SSH_PRIVATE_KEY: &str = "ssh-privatekey";
const USERNAME_KEY: &str = "username";
const HOST_KEY: &str = "host";
const PRIVATE_IP_KEY: &str = "private-ip";
const PUBLIC_IP_KEY: &str = "public-ip";
const INSTANCE_ID_KEY: &str = "instance-id";

/// EC2's error code for a key pair name already taken.
const KEY_PAIR_DUPLICATE: &str = "InvalidKeyPair.Duplicate";

/// The `ClientToken` of the RunInstances call for the object with `uid`, for the
/// create first attempted at `attempt`: `<uid>-<attempt in Unix seconds>`. A launch
/// sent again because EC2 did not show the first one yet carries the same attempt, so
/// EC2 answers with the instance the first made; a launch after positive evidence that
/// the instance is gone (it was seen terminated, or never showed within the runtime's
/// grace period) is a new attempt with a new token. Without an attempt time, the UID.
/// At most 64 characters.
pub(super) fn client_token(uid: &str, attempt: Option<Timestamp>) -> String {
    let token = match attempt {
        Some(attempt) => format!("{uid}-{}", attempt.as_second()),
        None => uid.to_owned(),
    };
    token.chars().take(MAX_CLIENT_TOKEN_CHARS).collect()
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

/// What observe reports of `instance`, the instance of `object`.
pub(super) fn observed(
    object: &Instance,
    context: &Context<'_>,
    instance: &Ec2Instance,
) -> ObservedOf<Instance> {
    let tags = tag_map(instance.tags());
    let state = state_of(instance);
    let instance_type = instance.instance_type().map(|t| t.as_str().to_owned());
    let groups: BTreeSet<String> = instance
        .security_groups()
        .iter()
        .filter_map(|group| group.group_id().map(str::to_owned))
        .collect();
    let restart_after_stop = tags.contains_key(RESTART_TAG);

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

    let at_provider = InstanceObservation {
        instance_id: id.clone(),
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
    };
    let delta = diff(object, context, &at_provider, &tags);

    Observed {
        external_name: id,
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
        at_provider,
        connection: ConnectionDetails(
            connection
                .into_iter()
                .map(|(key, value)| (key, value.into_bytes()))
                .collect(),
        ),
    }
}

/// Of the live instances found for an object, the object's instance (the one named
/// `external_name`, else the earliest launched) and the ids of the others: duplicates
/// of a launch made twice, which carry the object's UID tag too. `None` when none was
/// found.
pub(super) fn the_one(
    mut found: Vec<Ec2Instance>,
    external_name: Option<&str>,
) -> Option<(Ec2Instance, Vec<String>)> {
    let launched = |instance: &Ec2Instance| {
        (
            instance.launch_time().is_none(),
            instance.launch_time().copied(),
            instance.instance_id().map(str::to_owned),
        )
    };
    let named = external_name.and_then(|id| {
        found
            .iter()
            .position(|instance| instance.instance_id() == Some(id))
    });
    let at = named.or_else(|| {
        (0..found.len()).min_by(|&a, &b| launched(&found[a]).cmp(&launched(&found[b])))
    })?;
    let instance = found.swap_remove(at);
    let duplicates = found
        .iter()
        .filter_map(|other| other.instance_id().map(str::to_owned))
        .collect();
    Some((instance, duplicates))
}

/// Observes and changes EC2 instances (and the key pairs tether imports for them)
/// through the EC2 API.
#[derive(Clone, Debug)]
pub struct InstanceClient {
    ec2: aws_sdk_ec2::Client,
    /// Every live instance tether tagged in this account and region, by UID (several
    /// when a launch was made twice): answers the polls of every Instance of this
    /// ProviderConfig at once.
    snapshot: Snapshot<Box<[KeptInstance]>>,
    /// The key pairs this client imported, by name, with the public key imported: a
    /// launch repeated after its RunInstances was refused (throttled) reuses the key
    /// pair instead of importing it again (which would find it and replace it).
    imported_keys: Arc<Mutex<HashMap<String, String>>>,
}

impl InstanceClient {
    /// A client that calls EC2 through `ec2`.
    pub fn new(ec2: aws_sdk_ec2::Client) -> Self {
        Self {
            ec2,
            snapshot: Snapshot::default(),
            imported_keys: Arc::default(),
        }
    }

    /// A client for the AWS account and region of `config` (the shape
    /// [`AwsConnector`](crate::connector::AwsConnector) builds clients with).
    pub fn from_config(config: &AwsConfig) -> Self {
        Self::new(config.ec2())
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

    /// Every live instance carrying the UID tag `uid`.
    async fn by_uid(&self, uid: &str) -> Result<Vec<Ec2Instance>, ProviderError> {
        live_instances(&self.ec2, uid_filter(uid)).await
    }

    /// The instances of `object`, read now: every live one tagged with the object's
    /// UID (so that a second one is seen), and the one with id `external_name` when that
    /// read does not show it (an adopted instance not tagged yet; a tag-filtered read
    /// that lags behind the launch). Empty: none.
    async fn read(
        &self,
        object: &Instance,
        external_name: Option<&str>,
    ) -> Result<Vec<Ec2Instance>, ProviderError> {
        let mut found = match object.uid() {
            Some(uid) => self.by_uid(&uid).await?,
            None => Vec::new(),
        };
        if let Some(id) = external_name
            && !found
                .iter()
                .any(|instance| instance.instance_id() == Some(id))
            && let Some(instance) = self.by_id(id).await?
        {
            found.push(instance);
        }
        Ok(found)
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
        if self.imported_keys().get(name).map(String::as_str) == Some(public_key) {
            return Ok(());
        }
        let import = || {
            self.ec2
                .import_key_pair()
                .key_name(name)
                .public_key_material(Blob::new(public_key.as_bytes()))
                .tag_specifications(tag_specification(ResourceType::KeyPair, tags))
                .send()
        };
        match import().await {
            Ok(_) => {}
            Err(error) if error.code() == Some(KEY_PAIR_DUPLICATE) => {
                self.delete_key_pair(name).await?;
                import().await.map_err(provider_error)?;
            }
            Err(error) => return Err(provider_error(error)),
        }
        self.imported_keys()
            .insert(name.to_owned(), public_key.to_owned());
        Ok(())
    }

    fn imported_keys(&self) -> MutexGuard<'_, HashMap<String, String>> {
        self.imported_keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Deletes the key pair `name`; one that is gone already is fine.
    async fn delete_key_pair(&self, name: &str) -> Result<(), ProviderError> {
        self.imported_keys().remove(name);
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
    /// Instances are kept by the object's UID (their `tether.dev/uid` tag).
    fn write_guard(&self, object: &Instance, _context: Context<'_>) -> Option<WriteGuard> {
        Some(self.snapshot.write_guard(&object.uid()?))
    }

    async fn observe(
        &self,
        object: &Instance,
        context: Context<'_>,
    ) -> Result<ObservationOf<Instance>, ProviderError> {
        let kept = |instances: Vec<Ec2Instance>| {
            (!instances.is_empty()).then(|| {
                instances
                    .iter()
                    .map(KeptInstance::from)
                    .collect::<Box<[_]>>()
            })
        };
        let read = || async {
            Ok::<_, ProviderError>(kept(self.read(object, context.external_name).await?))
        };
        let found: Vec<Ec2Instance> = match object.uid() {
            Some(uid) => self
                .snapshot
                .get(
                    &uid,
                    context.freshness,
                    || async {
                        let listing = tagged_by_uid(&self.ec2).await?;
                        Ok(listing
                            .map(|instance| KeptInstance::from(&instance))
                            .grouped())
                    },
                    // Found by its UID tag: the object's instances, unless the object
                    // names another (adopted) one.
                    |instances| {
                        context.external_name.is_none_or(|id| {
                            instances
                                .iter()
                                .any(|instance| instance.instance_id() == Some(id))
                        })
                    },
                    read,
                )
                .await?
                .map(|instances| instances.iter().cloned().map(Ec2Instance::from).collect())
                .unwrap_or_default(),
            None => self.read(object, context.external_name).await?,
        };
        if let Some((instance, duplicates)) = the_one(found, context.external_name) {
            let mut observed = observed(object, &context, &instance);
            observed.delta.duplicates = duplicates;
            return Ok(Observation::Exists(observed));
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
        let private_key = ssh_key::generate(&comment)
            .map_err(|error| ProviderError::transient(error.to_string()))?;
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
        let spec = &object.spec;
        let uid = object.uid().ok_or_else(|| {
            ProviderError::terminal(
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
                    ProviderError::terminal(
                        "the connection Secret holds no ssh-privatekey: tether writes the generated \
                         key there before it launches the instance; without it the instance's key \
                         pair cannot be made"
                            .to_owned(),
                    )
                })?;
            // The message of a parse error never includes the key.
            let public_key = ssh_key::public_key(private_key).map_err(|error| {
                ProviderError::terminal(format!("the connection Secret's {error}"))
            })?;
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
            .config_override(retried_only_when_throttled())
            .send()
            .await
            .map_err(provider_error)
            .inspect_err(|error| {
                // Refused for a reason other than the budget (a key pair someone
                // deleted, say): import the key pair again next time.
                if error.class != ErrorClass::Throttled
                    && let Some(name) = object.key_pair_name()
                {
                    self.imported_keys().remove(&name);
                }
            })?;
        let id = launched
            .instances()
            .iter()
            .find_map(|instance| instance.instance_id())
            // The next observe finds the instance by its UID tag.
            .ok_or_else(|| {
                ProviderError::transient("RunInstances answered without an instance id")
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
        let spec = &object.spec;
        let at_provider = &observed.at_provider;
        let id = observed
            .external_name
            .as_deref()
            .or(at_provider.instance_id.as_deref())
            .or(context.external_name)
            .ok_or_else(|| ProviderError::terminal("the observed instance has no id".to_owned()))?;
        let delta = &observed.delta;
        let state = at_provider.state.as_deref();

        if !delta.duplicates.is_empty() {
            absent_if(
                self.ec2
                    .terminate_instances()
                    .set_instance_ids(Some(delta.duplicates.clone()))
                    .send()
                    .await,
                is_not_found,
            )?;
        }

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
                refused = Some(ProviderError::terminal(format!(
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
