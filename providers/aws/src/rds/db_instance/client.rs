//! The RDS calls that observe, create, update and delete a DB instance, the
//! connection details it publishes, and the name of its final snapshot.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use aws_sdk_rds::{
    error::ProvideErrorMetadata,
    operation::{
        delete_db_instance::DeleteDBInstanceError, describe_db_instances::DescribeDBInstancesError,
    },
    types::DbInstance,
};
use kube::ResourceExt;
use tether_api::{
    ErrorClass,
    external::{
        ConnectionDetails, Context, Created, ExternalClient, Observation, ObservationOf, Observed,
        ObservedOf, ProviderError, Readiness,
    },
    managed::{DeletionPolicy, Managed},
    rotation::Login,
    snapshot::{Freshness, Snapshot, WriteGuard},
};

use super::{
    DB_SUBNET_GROUP_REF, DBInstance, DBInstanceObservation,
    diff::diff,
    kept::KeptInstance,
    listing::tagged_instances,
    logins,
    master_password::{
        PASSWORD_KEY, PasswordSource, USERNAME_KEY, password_in, published_password, redacted,
    },
};
use crate::{
    call_metrics::AwsConfig,
    errors::{absent_if, provider_error},
    rds::{
        connection::{DatabaseEndpoint, connection_details},
        db_subnet_group::rds_tags,
        password::{self, Password},
    },
    tags::UID_TAG,
};

/// The longest DB snapshot identifier RDS accepts.
const MAX_SNAPSHOT_IDENTIFIER_LENGTH: usize = 255;

/// AWS's status of an instance that can be used.
const AVAILABLE: &str = "available";
/// AWS's status of an instance on its way out.
const DELETING: &str = "deleting";

/// Observes and changes DB instances through the RDS API, and reads master passwords
/// RDS manages from Secrets Manager. Clones share the snapshots.
#[derive(Clone)]
pub struct DBInstanceClient {
    pub(super) rds: aws_sdk_rds::Client,
    pub(super) secrets_manager: aws_sdk_secretsmanager::Client,
    /// Every DB instance tether tagged in this account and region, by identifier:
    /// answers the polls of every DBInstance of this ProviderConfig at once.
    snapshot: Snapshot<KeptInstance>,
    /// The current version of every secret RDS keeps, by ARN.
    pub(super) secret_versions: Snapshot<String>,
    /// The master passwords read from Secrets Manager, by secret ARN, with the version
    /// they were read at: read again only when the version changes.
    pub(super) managed_passwords: Arc<Mutex<HashMap<String, (String, Password)>>>,
}

impl DBInstanceClient {
    /// A client that calls RDS through `rds` and reads RDS-managed passwords through
    /// `secrets_manager`.
    pub fn new(rds: aws_sdk_rds::Client, secrets_manager: aws_sdk_secretsmanager::Client) -> Self {
        Self {
            rds,
            secrets_manager,
            snapshot: Snapshot::default(),
            secret_versions: Snapshot::default(),
            managed_passwords: Arc::default(),
        }
    }

    /// A client for the AWS account and region of `config` (the shape
    /// [`AwsConnector`](crate::connector::AwsConnector) builds clients with).
    pub fn from_config(config: &AwsConfig) -> Self {
        Self::new(config.rds(), config.secrets_manager())
    }

    /// The instance `identifier` as a record at most `freshness` old saw it (the shared
    /// snapshot, or a direct read made since), else as RDS describes it now; `None`
    /// when RDS has no such instance.
    async fn instance(
        &self,
        identifier: &str,
        freshness: Freshness,
    ) -> Result<Option<DbInstance>, ProviderError> {
        let kept = self
            .snapshot
            .get(
                identifier,
                freshness,
                || tagged_instances(&self.rds),
                |_| true,
                || async {
                    let described = self.describe(identifier).await?;
                    Ok(described.as_ref().map(KeptInstance::from))
                },
            )
            .await?;
        Ok(kept.map(DbInstance::from))
    }

    /// The instance `identifier`, or `None` when RDS has no such instance.
    async fn describe(&self, identifier: &str) -> Result<Option<DbInstance>, ProviderError> {
        let described = absent_if(
            self.rds
                .describe_db_instances()
                .db_instance_identifier(identifier)
                .send()
                .await,
            DescribeDBInstancesError::is_db_instance_not_found_fault,
        )?;
        Ok(described.and_then(|described| described.db_instances?.into_iter().next()))
    }
}

/// Whether RDS refused a deletion because the instance has deletion protection on
/// (`InvalidParameterCombination`, "Cannot delete protected DB Instance, please disable
/// deletion protection and try again.").
fn is_deletion_protected<E: ProvideErrorMetadata>(error: &E) -> bool {
    error.code() == Some("InvalidParameterCombination")
        && error
            .message()
            .is_some_and(|message| message.to_ascii_lowercase().contains("protect"))
}

/// The identifier of the final snapshot taken when the instance `identifier`, managed
/// by the object with `uid`, is deleted with the `Snapshot` policy:
/// `<identifier>-final-<first 8 characters of the UID>`, lower-case, made a valid RDS
/// snapshot identifier (starts with a letter, letters, digits and single hyphens, no
/// trailing hyphen, at most 255 characters). The same inputs always give the same
/// name, so a repeated delete asks for the same snapshot.
pub fn final_snapshot_identifier(identifier: &str, uid: Option<&str>) -> String {
    let uid8: String = uid
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(8)
        .collect::<String>()
        .to_ascii_lowercase();
    let suffix = if uid8.is_empty() {
        "-final".to_owned()
    } else {
        format!("-final-{uid8}")
    };
    let mut base = String::with_capacity(identifier.len());
    for c in identifier.chars() {
        if c.is_ascii_alphanumeric() {
            if base.is_empty() && !c.is_ascii_alphabetic() {
                base.push_str("db-");
            }
            base.push(c.to_ascii_lowercase());
        } else if !base.is_empty() && !base.ends_with('-') {
            base.push('-');
        }
    }
    if base.is_empty() {
        base.push_str("db");
    }
    base.truncate(MAX_SNAPSHOT_IDENTIFIER_LENGTH - suffix.len());
    let base = base.trim_end_matches('-');
    format!("{base}{suffix}")
}

/// The major version of `version` of `engine`: the first number for PostgreSQL 10
/// and later, the first two for older PostgreSQL and for the other engines (MySQL
/// 8.0 and 8.4, MariaDB 10.6 and 10.11 are different majors).
pub(super) fn major_version<'a>(engine: &str, version: &'a str) -> &'a str {
    let mut ends = version.match_indices('.').map(|(index, _)| index);
    let first_end = ends.next().unwrap_or(version.len());
    let postgres = matches!(engine, "postgres" | "aurora-postgresql");
    let first_is_modern = version[..first_end]
        .parse::<u32>()
        .is_ok_and(|major| major >= 10);
    if postgres && first_is_modern {
        &version[..first_end]
    } else {
        &version[..ends.next().unwrap_or(version.len())]
    }
}

/// An AWS status in CamelCase, for a condition reason: `backing-up` → `BackingUp`.
fn camel_case(status: &str) -> String {
    status
        .split(['-', '_', ' '])
        .filter(|word| !word.is_empty())
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// Readiness from AWS's status of the instance.
pub(super) fn readiness(status: Option<&str>) -> Readiness {
    match status {
        Some(AVAILABLE) => Readiness::Ready,
        Some(status) => Readiness::NotReady {
            reason: camel_case(status),
            message: format!("AWS reports the DB instance as {status}"),
        },
        None => Readiness::NotReady {
            reason: "Unknown".to_owned(),
            message: "AWS reports no status for the DB instance".to_owned(),
        },
    }
}

/// The connection details of `instance`, empty until it has an endpoint; without
/// `password` and `uri` while the password is unknown.
fn instance_connection(
    object: &DBInstance,
    instance: &DbInstance,
    password: Option<&Password>,
) -> ConnectionDetails {
    let Some((host, port)) = instance.endpoint().and_then(|endpoint| {
        let port = u16::try_from(endpoint.port()?).ok()?;
        Some((endpoint.address()?, port))
    }) else {
        return ConnectionDetails::default();
    };
    let endpoint = DatabaseEndpoint {
        engine: instance.engine().unwrap_or(&object.spec.engine),
        host,
        port,
        username: instance
            .master_username()
            .unwrap_or(&object.spec.master_username),
        // The database the instance was made with, which RDS reports for its life; not
        // the spec's, which an adopted instance may not have.
        database_name: instance.db_name(),
    };
    match password {
        Some(password) => connection_details(&endpoint, password),
        None => {
            let mut details = connection_details(&endpoint, &Password::from(String::new()));
            details.0.remove(PASSWORD_KEY);
            details.0.remove("uri");
            details
        }
    }
}

/// A new generated master password for `object`, with its user name, as the
/// connection Secret holds them.
fn new_master_password(object: &DBInstance) -> Result<ConnectionDetails, ProviderError> {
    let password =
        password::generate().map_err(|error| ProviderError::transient(error.to_string()))?;
    Ok(ConnectionDetails(BTreeMap::from([
        (
            USERNAME_KEY.to_owned(),
            object.spec.master_username.clone().into_bytes(),
        ),
        (
            PASSWORD_KEY.to_owned(),
            password.expose().as_bytes().to_vec(),
        ),
    ])))
}

impl ExternalClient<DBInstance> for DBInstanceClient {
    /// Instances are kept by identifier.
    fn write_guard(&self, _object: &DBInstance, context: Context<'_>) -> Option<WriteGuard> {
        Some(self.snapshot.write_guard(context.external_name?))
    }

    async fn observe(
        &self,
        object: &DBInstance,
        context: Context<'_>,
    ) -> Result<ObservationOf<DBInstance>, ProviderError> {
        let identifier = context.require_external_name()?;
        let Some(instance) = self.instance(identifier, context.freshness).await? else {
            return Ok(Observation::Missing);
        };
        let tags: BTreeMap<String, String> = instance
            .tag_list()
            .iter()
            .filter_map(|tag| {
                Some((
                    tag.key()?.to_owned(),
                    tag.value().unwrap_or_default().to_owned(),
                ))
            })
            .collect();
        let (password, password_differs) =
            self.observe_password(object, &context, &instance).await?;

        let delta = diff(object, &context, &instance, &tags, password_differs);

        let status = instance.db_instance_status().map(str::to_owned);
        let deleting_with_snapshot = object.metadata.deletion_timestamp.is_some()
            && object.deletion_policy() == DeletionPolicy::Snapshot;
        let at_provider = DBInstanceObservation {
            arn: instance.db_instance_arn().map(str::to_owned),
            status: status.clone(),
            endpoint_address: instance
                .endpoint()
                .and_then(|e| e.address())
                .map(str::to_owned),
            endpoint_port: instance.endpoint().and_then(|e| e.port()),
            engine_version: instance.engine_version().map(str::to_owned),
            instance_class: instance.db_instance_class().map(str::to_owned),
            master_user_secret_arn: instance
                .master_user_secret()
                .and_then(|s| s.secret_arn())
                .map(str::to_owned),
            final_snapshot_identifier: deleting_with_snapshot
                .then(|| final_snapshot_identifier(identifier, object.uid().as_deref())),
        };
        Ok(Observation::Exists(Observed {
            external_name: None,
            owner_uid: tags.get(UID_TAG).cloned(),
            delta,
            readiness: readiness(status.as_deref()),
            connection: instance_connection(object, &instance, password.as_ref()),
            at_provider,
        }))
    }

    async fn activate_login(
        &self,
        _object: &DBInstance,
        master: &ConnectionDetails,
        _observed: &ObservedOf<DBInstance>,
        login: Login,
    ) -> Result<ConnectionDetails, ProviderError> {
        logins::activate(master, login).await
    }

    async fn retire_login(
        &self,
        _object: &DBInstance,
        master: &ConnectionDetails,
        _observed: &ObservedOf<DBInstance>,
        login: Login,
    ) -> Result<(), ProviderError> {
        logins::retire(master, login).await
    }

    async fn renew_credentials(
        &self,
        object: &DBInstance,
        published: &ConnectionDetails,
    ) -> Result<Option<ConnectionDetails>, ProviderError> {
        if object.password_source() != PasswordSource::Generated || password_in(published).is_none()
        {
            return Ok(None);
        }
        new_master_password(object).map(Some)
    }

    async fn prepare(
        &self,
        object: &DBInstance,
        context: Context<'_>,
    ) -> Result<Option<ConnectionDetails>, ProviderError> {
        if object.password_source() != PasswordSource::Generated
            || published_password(&context).is_some()
        {
            return Ok(None);
        }
        new_master_password(object).map(Some)
    }

    async fn create(
        &self,
        object: &DBInstance,
        context: Context<'_>,
    ) -> Result<Created, ProviderError> {
        let identifier = context.require_external_name()?;
        let spec = &object.spec;
        let subnet_group = match &spec.db_subnet_group_ref {
            Some(reference) => Some(
                context
                    .reference(DB_SUBNET_GROUP_REF)
                    .ok_or_else(|| {
                        ProviderError::waiting(format!(
                            "the DBSubnetGroup {} of dbSubnetGroupRef is not resolved yet",
                            reference.name
                        ))
                    })?
                    .to_owned(),
            ),
            None => spec.db_subnet_group_name.clone(),
        };
        let password = Self::desired_password(object, &context)?;
        let request = self
            .rds
            .create_db_instance()
            .db_instance_identifier(identifier)
            .engine(&spec.engine)
            .set_engine_version(spec.engine_version.clone())
            .db_instance_class(&spec.instance_class)
            .set_allocated_storage(spec.allocated_storage_gib)
            .set_storage_type(spec.storage_type.clone())
            .set_db_name(spec.database_name.clone())
            .master_username(&spec.master_username)
            .set_db_subnet_group_name(subnet_group)
            .set_vpc_security_group_ids(
                object
                    .desired_security_groups(&context)
                    .map(|groups| groups.into_iter().collect()),
            )
            .set_multi_az(spec.multi_az)
            .set_publicly_accessible(spec.publicly_accessible)
            .set_backup_retention_period(spec.backup_retention_days)
            .set_deletion_protection(spec.deletion_protection)
            .set_tags(Some(rds_tags(&object.desired_tags())));
        let request = match &password {
            Some(password) => request.master_user_password(password.expose()),
            None => request.manage_master_user_password(true),
        };
        match request.send().await {
            Ok(_) => Ok(Created::default()),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_db_instance_already_exists_fault()) =>
            {
                // Ours when it carries this object's UID: a create whose answer was
                // lost, or that DescribeDBInstances did not show yet.
                let Some(existing) = self.describe(identifier).await? else {
                    return Err(ProviderError::waiting(format!(
                        "DB instance {identifier} exists but DescribeDBInstances does not show it yet"
                    ))
                    .with_optional_code(error.code()));
                };
                let ours = object.uid().is_some_and(|uid| {
                    existing
                        .tag_list()
                        .iter()
                        .any(|tag| tag.key() == Some(UID_TAG) && tag.value() == Some(&uid))
                });
                if ours {
                    Ok(Created::default())
                } else {
                    Err(ProviderError::terminal(format!(
                        "DB instance {identifier} exists and was not created by this object; \
                         to manage it, set {}",
                        tether_api::managed::EXTERNAL_NAME_ANNOTATION
                    ))
                    .with_optional_code(error.code()))
                }
            }
            Err(error) => Err(redacted(provider_error(error), password.as_ref())),
        }
    }

    async fn update(
        &self,
        object: &DBInstance,
        context: Context<'_>,
        observed: &ObservedOf<DBInstance>,
    ) -> Result<(), ProviderError> {
        let identifier = context.require_external_name()?;
        let spec = &object.spec;
        let delta = &observed.delta;
        let mut modify = self
            .rds
            .modify_db_instance()
            .db_instance_identifier(identifier)
            .apply_immediately(true);
        let mut modifies = false;
        if let (true, Some(version)) = (delta.engine_version, &spec.engine_version) {
            let current = observed.at_provider.engine_version.as_deref();
            let major_change = current.is_none_or(|current| {
                major_version(&spec.engine, current) != major_version(&spec.engine, version)
            });
            modify = modify
                .engine_version(version)
                .set_allow_major_version_upgrade(major_change.then_some(true));
            modifies = true;
        }
        if delta.instance_class {
            modify = modify.db_instance_class(&spec.instance_class);
            modifies = true;
        }
        if let (true, Some(gib)) = (delta.allocated_storage, spec.allocated_storage_gib) {
            modify = modify.allocated_storage(gib);
            modifies = true;
        }
        let mut password = None;
        if delta.master_password {
            password = Self::desired_password(object, &context)?;
            modify = match &password {
                Some(password) => {
                    let managed_now = observed.at_provider.master_user_secret_arn.is_some();
                    modify
                        .master_user_password(password.expose())
                        .set_manage_master_user_password(managed_now.then_some(false))
                }
                None => modify.manage_master_user_password(true),
            };
            modifies = true;
        }
        if let (true, Some(groups)) = (
            delta.vpc_security_group_ids,
            object.desired_security_groups(&context),
        ) {
            modify = modify.set_vpc_security_group_ids(Some(groups.into_iter().collect()));
            modifies = true;
        }
        if let (true, Some(multi_az)) = (delta.multi_az, spec.multi_az) {
            modify = modify.multi_az(multi_az);
            modifies = true;
        }
        if let (true, Some(public)) = (delta.publicly_accessible, spec.publicly_accessible) {
            modify = modify.publicly_accessible(public);
            modifies = true;
        }
        if let (true, Some(days)) = (delta.backup_retention_days, spec.backup_retention_days) {
            modify = modify.backup_retention_period(days);
            modifies = true;
        }
        if let (true, Some(protect)) = (delta.deletion_protection, spec.deletion_protection) {
            modify = modify.deletion_protection(protect);
            modifies = true;
        }
        if modifies {
            modify
                .send()
                .await
                .map_err(|error| redacted(provider_error(error), password.as_ref()))?;
        }
        if let (true, Some(arn)) = (delta.tags, &observed.at_provider.arn) {
            crate::rds::sync_tags(&self.rds, arn, &object.desired_tags(), context.applied_tags)
                .await?;
        }
        Ok(())
    }

    async fn delete(
        &self,
        object: &DBInstance,
        context: Context<'_>,
        policy: DeletionPolicy,
    ) -> Result<Option<String>, ProviderError> {
        let identifier = context.require_external_name()?;
        let request = self
            .rds
            .delete_db_instance()
            .db_instance_identifier(identifier);
        let (request, note) = match policy {
            DeletionPolicy::Retain => return Ok(None),
            DeletionPolicy::Delete => (
                request
                    .skip_final_snapshot(true)
                    .delete_automated_backups(true),
                None,
            ),
            DeletionPolicy::Snapshot => {
                let snapshot = final_snapshot_identifier(identifier, object.uid().as_deref());
                let note = format!("final snapshot {snapshot}");
                (
                    request
                        .skip_final_snapshot(false)
                        .final_db_snapshot_identifier(snapshot),
                    Some(note),
                )
            }
        };
        let result = match request.clone().send().await {
            Err(error) if is_deletion_protected(&error) => {
                if object.spec.deletion_protection != Some(false) {
                    let refused = provider_error(error);
                    let message = format!(
                        "{} (DB instance {identifier} has deletion protection on: set \
                         spec.deletionProtection: false to let tether delete it)",
                        refused.message
                    );
                    return Err(refused.reclassed(ErrorClass::Terminal, message));
                }
                // The spec turned it off after the deletion began: apply that first.
                self.rds
                    .modify_db_instance()
                    .db_instance_identifier(identifier)
                    .deletion_protection(false)
                    .apply_immediately(true)
                    .send()
                    .await
                    .map_err(provider_error)?;
                request.send().await
            }
            result => result,
        };
        match result {
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_invalid_db_instance_state_fault()) =>
            {
                // Already being deleted (a repeated delete) is done; any other busy
                // state is Pending.
                match self.describe(identifier).await? {
                    None => Ok(None),
                    Some(instance) if instance.db_instance_status() == Some(DELETING) => Ok(note),
                    Some(_) => Err(provider_error(error)),
                }
            }
            result => Ok(absent_if(
                result,
                DeleteDBInstanceError::is_db_instance_not_found_fault,
            )?
            .and(note)),
        }
    }
}
