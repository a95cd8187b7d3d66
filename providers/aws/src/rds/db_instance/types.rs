//! The `DBInstance` custom resource: its spec with the CEL rules, its status, what the
//! runtime needs to know of it (its references, Secrets and identifier), and the
//! security groups and tags it asks for.

use std::collections::{BTreeMap, BTreeSet};

use kube::{CustomResource, KubeSchema, ResourceExt, core::ApiResource};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tether_api::{
    LocalReference, ObjectReference, SecretKeyRef,
    external::Context,
    managed::{DeletionPolicy, Managed, ManagedFields, ManagedStatus, derived_name},
    rotation::PasswordRotation,
};

use super::DBInstanceDelta;
use crate::{ec2::SecurityGroup, rds::DBSubnetGroup};

/// The reference field naming the DB subnet group; the key of its resolved name in
/// `Context::references`.
pub const DB_SUBNET_GROUP_REF: &str = "dbSubnetGroupRef";

/// The field naming the Secret key of a user-supplied master password; the key of its
/// value in `Context::secrets`.
pub const MASTER_PASSWORD_REF: &str = "masterPassword.secretKeyRef";

/// The reference field of the `index`th entry of `vpcSecurityGroupRefs`.
fn security_group_ref_field(index: usize) -> String {
    format!("vpcSecurityGroupRefs[{index}]")
}

/// The longest DB instance identifier RDS accepts.
const MAX_IDENTIFIER_LENGTH: usize = 63;

/// An RDS DB instance: a managed database server, whose connection details (host,
/// port, username, password, database name and URI) tether writes to a Secret.
// clippy reads the repeated `type_ = "string"` of the print columns as a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "rds.tether.dev",
    version = "v1alpha1",
    kind = "DBInstance",
    namespaced,
    status = "DBInstanceStatus",
    doc = "An RDS DB instance; Ready while RDS reports it available.",
    category = "tether",
    shortname = "dbinstance",
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
    printcolumn(name = "Engine", type_ = "string", json_path = ".spec.engine"),
    printcolumn(
        name = "Endpoint",
        type_ = "string",
        json_path = ".status.atProvider.endpointAddress"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = kube::core::Rule::new("has(self.identifier) == has(oldSelf.identifier)")
    .message("identifier cannot be added or removed after creation: the DB instance keeps the RDS identifier it was created with")
    .field_path(".identifier")
    .reason(kube::core::Reason::FieldValueInvalid))]
#[x_kube(validation = kube::core::Rule::new("!(has(self.dbSubnetGroupRef) && has(self.dbSubnetGroupName))")
    .message("set at most one of dbSubnetGroupRef and dbSubnetGroupName")
    .field_path(".dbSubnetGroupName")
    .reason(kube::core::Reason::FieldValueForbidden))]
#[x_kube(validation = kube::core::Rule::new("!has(self.masterPassword) || !has(self.manageMasterUserPassword) || !self.manageMasterUserPassword")
    .message("masterPassword and manageMasterUserPassword: true exclude each other: either you supply the master password or RDS manages it")
    .field_path(".masterPassword")
    .reason(kube::core::Reason::FieldValueForbidden))]
#[x_kube(validation = kube::core::Rule::new("has(self.writeConnectionSecretToRef) || has(self.masterPassword) || (has(self.manageMasterUserPassword) && self.manageMasterUserPassword)")
    .message("writeConnectionSecretToRef is required when tether generates the master password (neither masterPassword nor manageMasterUserPassword: true is set): that Secret is the only place the password is kept")
    .field_path(".writeConnectionSecretToRef")
    .reason(kube::core::Reason::FieldValueRequired))]
#[x_kube(validation = kube::core::Rule::new("!has(self.passwordRotation) || (!has(self.masterPassword) && !(has(self.manageMasterUserPassword) && self.manageMasterUserPassword))")
    .message("passwordRotation needs a password tether generates: remove masterPassword and manageMasterUserPassword, or passwordRotation")
    .field_path(".passwordRotation")
    .reason(kube::core::Reason::FieldValueForbidden))]
#[x_kube(validation = kube::core::Rule::new("!has(self.passwordRotation) || self.engine in ['postgres', 'mysql', 'mariadb']")
    .message("passwordRotation is built for engines postgres, mysql and mariadb only, so far")
    .field_path(".passwordRotation")
    .reason(kube::core::Reason::FieldValueForbidden))]
#[x_kube(validation = kube::core::Rule::new("!has(self.passwordRotation) || has(self.databaseName)")
    .message("passwordRotation needs databaseName: the rotated logins get their privileges on that database")
    .field_path(".databaseName")
    .reason(kube::core::Reason::FieldValueRequired))]
#[x_kube(validation = kube::core::Rule::new("!has(self.passwordRotation) || !has(self.managementPolicy) || self.managementPolicy != 'ObserveOnly'")
    .message("passwordRotation changes logins inside the database, which ObserveOnly never does")
    .field_path(".passwordRotation")
    .reason(kube::core::Reason::FieldValueForbidden))]
#[serde(rename_all = "camelCase")]
pub struct DBInstanceSpec {
    #[serde(flatten)]
    pub managed: ManagedFields,

    /// The RDS DB instance identifier; default `<namespace>-<name>-<first 10 hex
    /// digits of the object's UID>`, cut to 63 characters, so that no two objects share
    /// one. tether manages only an instance it created (it carries the object's UID in
    /// the tag `tether.dev/uid`) or one adopted with the annotation
    /// `tether.dev/external-name`. Immutable, and
    /// can be neither added nor removed after creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-zA-Z][a-zA-Z0-9-]{0,62}$")
    )]
    #[x_kube(
        validation = kube::core::Rule::new("self == oldSelf")
            .message("identifier is immutable: the DB instance keeps the RDS identifier it was created with")
            .reason(kube::core::Reason::FieldValueInvalid),
        validation = kube::core::Rule::new("!self.contains('--') && !self.endsWith('-')")
            .message("identifier must not contain two consecutive hyphens or end with a hyphen")
            .reason(kube::core::Reason::FieldValueInvalid)
    )]
    pub identifier: Option<String>,

    /// The database engine, e.g. `postgres`, `mysql`, `mariadb`. Immutable.
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf")
        .message("engine is immutable: a DB instance cannot change its engine")
        .reason(kube::core::Reason::FieldValueInvalid))]
    pub engine: String,

    /// The engine version, e.g. `16` or `16.3`. A version without a minor part
    /// matches every minor version AWS picks or upgrades to. Default: AWS's default
    /// for the engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub engine_version: Option<String>,

    /// The compute and memory class, e.g. `db.t3.micro`.
    #[schemars(length(min = 1, max = 64))]
    pub instance_class: String,

    /// Storage in GiB (20 to 65536). RDS can grow storage but never shrink it.
    /// Default: AWS's default for the engine and storage type.
    #[serde(
        rename = "allocatedStorageGiB",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 20, max = 65536))]
    #[x_kube(validation = kube::core::Rule::new("self >= oldSelf")
        .message("allocatedStorageGiB can grow but never shrink: RDS cannot make storage smaller")
        .reason(kube::core::Reason::FieldValueInvalid))]
    pub allocated_storage_gib: Option<i32>,

    /// The storage type, e.g. `gp3`, `gp2`, `io1`, `io2`, `standard`. Default: AWS's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    pub storage_type: Option<String>,

    /// Name of the database RDS creates in the instance; none when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[a-zA-Z][a-zA-Z0-9_]*$"))]
    pub database_name: Option<String>,

    /// The master user's name. Immutable.
    #[schemars(regex(pattern = r"^[a-zA-Z][a-zA-Z0-9_]{0,15}$"))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf")
        .message("masterUsername is immutable: RDS cannot rename the master user")
        .reason(kube::core::Reason::FieldValueInvalid))]
    pub master_username: String,

    /// Where the master password comes from when you supply it: a key of a Secret in
    /// this object's namespace. When neither this nor `manageMasterUserPassword` is
    /// set, tether generates a password and keeps it in the connection Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_password: Option<MasterPassword>,

    /// `true`: RDS keeps the master password in AWS Secrets Manager and rotates it;
    /// tether copies its current value into the connection Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manage_master_user_password: Option<bool>,

    /// Rotate the password on a schedule, without downtime (engines `postgres`,
    /// `mysql` and `mariadb`, with a password tether generates). The connection Secret
    /// then holds one of two logins tether keeps inside the database,
    /// `<masterUsername>_a` and `_b`, which take turns: each rotation gives the idle
    /// one a new password and switches the Secret to it, and `gracePeriod` later the
    /// previous one's password is changed to one nobody knows (MySQL: and the account
    /// locked). On PostgreSQL both logins act as the role `<masterUsername>_app`, which
    /// owns what either creates; on MySQL and MariaDB both have all privileges on the
    /// database `databaseName`, whose tables either can use. The master credentials are kept in the Secret
    /// `<writeConnectionSecretToRef.name>-master`, for administrators only. The
    /// annotation `tether.dev/rotate-now` with a new value rotates at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_rotation: Option<PasswordRotation>,

    /// The `DBSubnetGroup` in this namespace to place the instance in; tether waits
    /// until it is Ready. At most one of this and `dbSubnetGroupName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_subnet_group_ref: Option<LocalReference>,

    /// Name of an existing RDS DB subnet group not managed by tether. Default: the
    /// default VPC's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub db_subnet_group_name: Option<String>,

    /// Ids of VPC security groups (`sg-…`) not managed by tether. The instance's
    /// groups are these and `vpcSecurityGroupRefs`; when both are empty, the VPC's
    /// default security group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20), inner(regex(pattern = r"^sg-[0-9a-f]+$")))]
    pub vpc_security_group_ids: Vec<String>,

    /// `SecurityGroup` objects in this namespace whose groups the instance joins;
    /// tether waits until they are Ready.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    pub vpc_security_group_refs: Vec<LocalReference>,

    /// Whether RDS keeps a standby in a second availability zone.
    #[serde(rename = "multiAZ", default, skip_serializing_if = "Option::is_none")]
    pub multi_az: Option<bool>,

    /// Whether the instance gets an address reachable from outside its VPC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publicly_accessible: Option<bool>,

    /// Days RDS keeps automated backups (0 to 35; 0 turns them off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 35))]
    pub backup_retention_days: Option<i32>,

    /// Whether RDS refuses to delete the instance. While it is on, deleting this
    /// object fails with AWS's message until it is turned off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_protection: Option<bool>,

    /// Tags for the instance. tether adds `tether.dev/uid`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "tether_api::managed::tags_schema")]
    pub tags: BTreeMap<String, String>,
}

/// A master password supplied by the user.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct MasterPassword {
    /// The key of a Secret in this object's namespace that holds the password.
    pub secret_key_ref: SecretKeyReference,
}

/// A key of a Secret in the object's own namespace.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
pub struct SecretKeyReference {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key within the Secret.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[-._a-zA-Z0-9]+$"))]
    pub key: String,
}

/// What tether and AWS report about the DB instance.
pub type DBInstanceStatus = ManagedStatus<DBInstanceObservation>;

/// The DB instance as AWS reports it.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DBInstanceObservation {
    /// ARN of the DB instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arn: Option<String>,
    /// AWS's status of the instance, e.g. `creating`, `available`, `modifying`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// The address applications connect to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_address: Option<String>,
    /// The port applications connect to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_port: Option<i32>,
    /// The engine version running now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_version: Option<String>,
    /// The instance class in use now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_class: Option<String>,
    /// ARN of the Secrets Manager secret holding the master password, when RDS
    /// manages it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_user_secret_arn: Option<String>,
    /// The final snapshot the deletion of this object takes (while it is being
    /// deleted with the `Snapshot` policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_snapshot_identifier: Option<String>,
}

impl Managed for DBInstance {
    type AtProvider = DBInstanceObservation;
    type Delta = DBInstanceDelta;

    const DEFAULT_DELETION_POLICY: DeletionPolicy = DeletionPolicy::Snapshot;

    const READS_SECRETS: bool = true;

    fn referenced_kinds() -> Vec<kube::core::ApiResource> {
        vec![
            ApiResource::erase::<DBSubnetGroup>(&()),
            ApiResource::erase::<SecurityGroup>(&()),
        ]
    }

    fn managed_fields(&self) -> &ManagedFields {
        &self.spec.managed
    }

    fn status(&self) -> Option<&ManagedStatus<DBInstanceObservation>> {
        self.status.as_ref()
    }

    fn spec_tags(&self) -> Option<&BTreeMap<String, String>> {
        Some(&self.spec.tags)
    }

    /// `spec.identifier`, else `<namespace>-<name>-<UID digits>` cut to RDS's 63
    /// characters (see [`derived_name`]); `None` before the object has a UID.
    fn default_external_name(&self) -> Option<String> {
        match &self.spec.identifier {
            Some(identifier) => Some(identifier.clone()),
            None => Some(derived_name(
                &self.namespace().unwrap_or_default(),
                &self.name_any(),
                &self.uid()?,
                MAX_IDENTIFIER_LENGTH,
            )),
        }
    }

    fn references(&self) -> Vec<ObjectReference> {
        let subnet_group = self
            .spec
            .db_subnet_group_ref
            .iter()
            .map(|reference| ObjectReference {
                field: DB_SUBNET_GROUP_REF.to_owned(),
                resource: ApiResource::erase::<DBSubnetGroup>(&()),
                name: reference.name.clone(),
                needed_to_create: true,
            });
        let security_groups =
            self.spec
                .vpc_security_group_refs
                .iter()
                .enumerate()
                .map(|(index, reference)| ObjectReference {
                    field: security_group_ref_field(index),
                    resource: ApiResource::erase::<SecurityGroup>(&()),
                    name: reference.name.clone(),
                    needed_to_create: true,
                });
        subnet_group.chain(security_groups).collect()
    }

    fn password_rotation(&self) -> Option<&PasswordRotation> {
        self.spec.password_rotation.as_ref()
    }

    fn secret_key_refs(&self) -> Vec<SecretKeyRef> {
        self.spec
            .master_password
            .iter()
            .map(|password| SecretKeyRef {
                field: MASTER_PASSWORD_REF.to_owned(),
                name: password.secret_key_ref.name.clone(),
                key: password.secret_key_ref.key.clone(),
            })
            .collect()
    }
}

impl DBInstance {
    /// The security groups the spec asks for: `vpcSecurityGroupIds` and the groups of
    /// `vpcSecurityGroupRefs` (resolved in `context`); `None` when it names none and
    /// RDS picks the VPC's default group.
    pub(super) fn desired_security_groups(
        &self,
        context: &Context<'_>,
    ) -> Option<BTreeSet<String>> {
        let referenced = (0..self.spec.vpc_security_group_refs.len())
            .filter_map(|index| context.reference(&security_group_ref_field(index)));
        let groups: BTreeSet<String> = self
            .spec
            .vpc_security_group_ids
            .iter()
            .map(String::as_str)
            .chain(referenced)
            .map(str::to_owned)
            .collect();
        (!groups.is_empty()).then_some(groups)
    }

    /// The tags tether wants on the instance: the spec's, plus the UID tag.
    pub(super) fn desired_tags(&self) -> BTreeMap<String, String> {
        crate::tags::desired_tags(&self.spec.tags, self.uid())
    }
}
