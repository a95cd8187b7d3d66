//! `DatabaseClass` and `DatabaseClaim`: what a platform team offers as "a database"
//! and what an application team asks for; a claim becomes one `DBInstance` built from
//! both.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tether_api::{
    claim::{Choice, Claim, ClaimStatus, Class, DeletionPolicyChoice},
    managed::{
        DeletionPolicy, LocalSecretReference, ManagedFields, ManagementPolicy,
        ProviderConfigReference,
    },
    rotation::PasswordRotation,
};

use super::{StorageBounds, claim_tags, connection_secret_name, keep_or_name};
use crate::rds::db_instance::{DBInstance, DBInstanceSpec};

/// The database a claim of a class with `passwordRotation` gets when it names none.
const ROTATED_DEFAULT_DATABASE: &str = "app";

/// What a platform team offers as a database: the AWS settings a claim never sees,
/// the choices a claim may make within bounds, who may use it and how much.
// clippy reads the repeated `type_ = "string"` of the print columns as a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "tether.dev",
    version = "v1alpha1",
    kind = "DatabaseClass",
    doc = "A kind of database a platform team offers; application teams ask for one with a DatabaseClaim.",
    category = "tether",
    printcolumn(name = "Engine", type_ = "string", json_path = ".spec.engine"),
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".spec.engineVersion.default"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = kube::core::Rule::new("!has(self.passwordRotation) || self.engine in ['postgres', 'mysql', 'mariadb']")
    .message("passwordRotation is built for engines postgres, mysql and mariadb only, so far")
    .field_path(".passwordRotation")
    .reason(kube::core::Reason::FieldValueForbidden))]
#[serde(rename_all = "camelCase")]
pub struct DatabaseClassSpec {
    /// The ProviderConfig (AWS account and region) every database of the class uses
    /// (default `default`).
    #[serde(default)]
    pub provider_config_ref: ProviderConfigReference,
    /// The database engine, e.g. `postgres`, `mysql`, `mariadb`.
    #[schemars(length(min = 1, max = 64))]
    pub engine: String,
    /// The engine versions a claim may name (e.g. `16`), and the default.
    pub engine_version: Choice<String>,
    /// The compute and memory classes a claim may name (e.g. `db.t3.micro`), and the
    /// default.
    pub instance_class: Choice<String>,
    /// Storage a claim may ask for, in GiB: the default and the bounds.
    #[serde(rename = "storageGiB")]
    pub storage_gib: StorageBounds,
    /// The deletion policies a claim may name, and the default (default: only
    /// `Snapshot`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicyChoice>,
    /// The storage type, e.g. `gp3`. Default: AWS's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 32))]
    pub storage_type: Option<String>,
    /// The master user's name in every database of the class (default `app`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-zA-Z][a-zA-Z0-9_]{0,15}$"))]
    pub master_username: Option<String>,
    /// Name of the RDS DB subnet group the databases are placed in. Default: the
    /// default VPC's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub db_subnet_group_name: Option<String>,
    /// Ids of the VPC security groups (`sg-…`) the databases join. Default: the VPC's
    /// default group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20), inner(regex(pattern = r"^sg-[0-9a-f]+$")))]
    pub vpc_security_group_ids: Vec<String>,
    /// Whether RDS keeps a standby in a second availability zone.
    #[serde(rename = "multiAZ", default, skip_serializing_if = "Option::is_none")]
    pub multi_az: Option<bool>,
    /// Whether the databases get an address reachable from outside their VPC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publicly_accessible: Option<bool>,
    /// Days RDS keeps automated backups (0 to 35).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 35))]
    pub backup_retention_days: Option<i32>,
    /// Whether RDS refuses to delete the databases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_protection: Option<bool>,
    /// Rotate every claim's password on this schedule, without downtime (engines
    /// `postgres`, `mysql` and `mariadb`): see `DBInstance`'s `passwordRotation`. A claim without `databaseName`
    /// then gets a database named `app`, on which its logins get their privileges.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_rotation: Option<PasswordRotation>,
    /// Tags added to every database of the class (tether adds `tether.dev/uid`,
    /// `tether.dev/class` and `tether.dev/claim`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "tether_api::managed::tags_schema")]
    pub tags: BTreeMap<String, String>,
    /// The namespaces whose claims may use the class (by their labels); all when
    /// unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// How much of the class one namespace may claim.
    #[serde(default)]
    pub limits: DatabaseLimits,
}

/// How much of a database class one namespace may claim; unset is unlimited.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseLimits {
    /// At most this many claims of the class per namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub claims_per_namespace: Option<u32>,
    /// At most this much storage (GiB) in the class's claims per namespace.
    #[serde(
        rename = "storageGiBPerNamespace",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 0))]
    pub storage_gib_per_namespace: Option<u64>,
}

impl Class for DatabaseClass {
    fn namespace_selector(&self) -> Option<&LabelSelector> {
        self.spec.namespace_selector.as_ref()
    }

    fn claims_per_namespace(&self) -> Option<u32> {
        self.spec.limits.claims_per_namespace
    }

    fn storage_gib_per_namespace(&self) -> Option<u64> {
        self.spec.limits.storage_gib_per_namespace
    }
}

/// An application team's request for a database of a class, in its namespace.
// clippy reads the repeated `type_ = "string"` of the print columns as a duplicate.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Clone, Debug, Deserialize, Serialize, PartialEq)]
#[kube(
    group = "tether.dev",
    version = "v1alpha1",
    kind = "DatabaseClaim",
    namespaced,
    status = "DatabaseClaimStatus",
    doc = "A database of a DatabaseClass for this namespace; Ready when its database is, with the connection details in status.connectionSecret.",
    category = "tether",
    printcolumn(name = "Class", type_ = "string", json_path = ".spec.className"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Secret",
        type_ = "string",
        json_path = ".status.connectionSecret"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseClaimSpec {
    /// The DatabaseClass to take the database from. Immutable.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf")
        .message("className is immutable: a claim keeps the class its database was made from")
        .reason(kube::core::Reason::FieldValueInvalid))]
    pub class_name: String,
    /// The engine version; default: the class's. Must be one the class allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub engine_version: Option<String>,
    /// The compute and memory class; default: the class's. Must be one it allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub instance_class: Option<String>,
    /// Storage in GiB; default: the class's. Within the class's bounds; it can grow
    /// but never shrink.
    #[serde(
        rename = "storageGiB",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(range(min = 20, max = 65536))]
    #[x_kube(validation = kube::core::Rule::new("self >= oldSelf")
        .message("storageGiB can grow but never shrink: RDS cannot make storage smaller")
        .reason(kube::core::Reason::FieldValueInvalid))]
    pub storage_gib: Option<i32>,
    /// Name of the database created in the instance. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[a-zA-Z][a-zA-Z0-9_]*$"))]
    #[x_kube(validation = kube::core::Rule::new("self == oldSelf")
        .message("databaseName is immutable: RDS creates the database once")
        .reason(kube::core::Reason::FieldValueInvalid))]
    pub database_name: Option<String>,
    /// What happens to the database when the claim is deleted; default: the class's
    /// (`Snapshot` unless it says otherwise). Must be one the class allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
    /// The Secret (in this namespace) that receives the connection details; default:
    /// a Secret named like the claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_connection_secret_to_ref: Option<LocalSecretReference>,
}

/// What tether reports on a database claim.
pub type DatabaseClaimStatus = ClaimStatus<DatabaseSettings>;

/// The settings of a claim's database that a change would restart, replace or put at
/// risk (an engine upgrade, another subnet group, another deletion policy): resolved
/// from class and claim when the database is made, kept until the claim or the team
/// changes them.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSettings {
    /// The ProviderConfig.
    pub provider_config: String,
    /// The engine.
    pub engine: String,
    /// The engine version.
    pub engine_version: String,
    /// The compute and memory class.
    pub instance_class: String,
    /// Storage in GiB.
    #[serde(rename = "storageGiB")]
    pub storage_gib: i32,
    /// The storage type, when the class names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_type: Option<String>,
    /// The master user's name.
    pub master_username: String,
    /// The DB subnet group, when the class names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db_subnet_group_name: Option<String>,
    /// Whether a standby runs in a second zone.
    #[serde(rename = "multiAZ", default, skip_serializing_if = "Option::is_none")]
    pub multi_az: Option<bool>,
    /// Whether the address is reachable from outside the VPC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publicly_accessible: Option<bool>,
    /// What happens to the database when the claim is deleted.
    pub deletion_policy: DeletionPolicy,
}

/// The master user of a class that names none.
const DEFAULT_MASTER_USERNAME: &str = "app";

impl DatabaseClassSpec {
    /// The deletion policies the class offers: its own, or `Snapshot` only.
    fn deletion_policies(&self) -> DeletionPolicyChoice {
        self.deletion_policy.clone().unwrap_or(Choice {
            default: DeletionPolicy::Snapshot,
            allowed: Vec::new(),
        })
    }
}

impl Claim for DatabaseClaim {
    type Class = DatabaseClass;
    type Managed = DBInstance;
    type Settings = DatabaseSettings;

    fn class_name(&self) -> &str {
        &self.spec.class_name
    }

    fn claim_status(&self) -> Option<&ClaimStatus<DatabaseSettings>> {
        self.status.as_ref()
    }

    fn settings(&self, class: &DatabaseClass) -> Result<DatabaseSettings, Vec<String>> {
        let offered = &class.spec;
        let engine_version = offered
            .engine_version
            .pick("engineVersion", self.spec.engine_version.as_ref());
        let instance_class = offered
            .instance_class
            .pick("instanceClass", self.spec.instance_class.as_ref());
        let storage_gib = offered.storage_gib.pick(self.spec.storage_gib);
        let deletion_policy = offered
            .deletion_policies()
            .pick("deletionPolicy", self.spec.deletion_policy.as_ref());
        match (engine_version, instance_class, storage_gib, deletion_policy) {
            (Ok(engine_version), Ok(instance_class), Ok(storage_gib), Ok(deletion_policy)) => {
                Ok(DatabaseSettings {
                    provider_config: offered.provider_config_ref.name.clone(),
                    engine: offered.engine.clone(),
                    engine_version,
                    instance_class,
                    storage_gib,
                    storage_type: offered.storage_type.clone(),
                    master_username: offered
                        .master_username
                        .clone()
                        .unwrap_or_else(|| DEFAULT_MASTER_USERNAME.to_owned()),
                    db_subnet_group_name: offered.db_subnet_group_name.clone(),
                    multi_az: offered.multi_az,
                    publicly_accessible: offered.publicly_accessible,
                    deletion_policy,
                })
            }
            (engine_version, instance_class, storage_gib, deletion_policy) => Err([
                engine_version.err(),
                instance_class.err(),
                storage_gib.err(),
                deletion_policy.err(),
            ]
            .into_iter()
            .flatten()
            .collect()),
        }
    }

    fn keep_unsafe_changes(
        &self,
        wanted: &DatabaseSettings,
        built: &DatabaseSettings,
    ) -> (DatabaseSettings, Vec<&'static str>) {
        let chosen = &self.spec;
        let mut waiting = Vec::new();
        let settings = DatabaseSettings {
            provider_config: keep_or_name(
                "providerConfigRef",
                false,
                &wanted.provider_config,
                &built.provider_config,
                &mut waiting,
            ),
            engine: keep_or_name("engine", false, &wanted.engine, &built.engine, &mut waiting),
            engine_version: keep_or_name(
                "engineVersion",
                chosen.engine_version.is_some(),
                &wanted.engine_version,
                &built.engine_version,
                &mut waiting,
            ),
            instance_class: keep_or_name(
                "instanceClass",
                chosen.instance_class.is_some(),
                &wanted.instance_class,
                &built.instance_class,
                &mut waiting,
            ),
            storage_gib: keep_or_name(
                "storageGiB",
                chosen.storage_gib.is_some(),
                &wanted.storage_gib,
                &built.storage_gib,
                &mut waiting,
            ),
            storage_type: keep_or_name(
                "storageType",
                false,
                &wanted.storage_type,
                &built.storage_type,
                &mut waiting,
            ),
            master_username: keep_or_name(
                "masterUsername",
                false,
                &wanted.master_username,
                &built.master_username,
                &mut waiting,
            ),
            db_subnet_group_name: keep_or_name(
                "dbSubnetGroupName",
                false,
                &wanted.db_subnet_group_name,
                &built.db_subnet_group_name,
                &mut waiting,
            ),
            multi_az: keep_or_name(
                "multiAZ",
                false,
                &wanted.multi_az,
                &built.multi_az,
                &mut waiting,
            ),
            publicly_accessible: keep_or_name(
                "publiclyAccessible",
                false,
                &wanted.publicly_accessible,
                &built.publicly_accessible,
                &mut waiting,
            ),
            deletion_policy: keep_or_name(
                "deletionPolicy",
                chosen.deletion_policy.is_some(),
                &wanted.deletion_policy,
                &built.deletion_policy,
                &mut waiting,
            ),
        };
        (settings, waiting)
    }

    fn accept_changes(
        &self,
        wanted: &DatabaseSettings,
        built: &DatabaseSettings,
    ) -> DatabaseSettings {
        DatabaseSettings {
            engine: built.engine.clone(),
            master_username: built.master_username.clone(),
            ..wanted.clone()
        }
    }

    fn storage_gib(settings: &DatabaseSettings) -> u64 {
        u64::try_from(settings.storage_gib).unwrap_or_default()
    }

    fn compose(&self, class: &DatabaseClass, settings: &DatabaseSettings) -> DBInstance {
        let offered = &class.spec;
        let tags = claim_tags(&offered.tags, class, self);
        DBInstance::new(
            &self.name_any(),
            DBInstanceSpec {
                managed: ManagedFields {
                    provider_config_ref: ProviderConfigReference {
                        name: settings.provider_config.clone(),
                    },
                    deletion_policy: Some(settings.deletion_policy),
                    management_policy: ManagementPolicy::Full,
                    write_connection_secret_to_ref: Some(LocalSecretReference {
                        name: self.connection_secret_name(),
                    }),
                },
                engine: settings.engine.clone(),
                engine_version: Some(settings.engine_version.clone()),
                instance_class: settings.instance_class.clone(),
                allocated_storage_gib: Some(settings.storage_gib),
                storage_type: settings.storage_type.clone(),
                database_name: self.spec.database_name.clone().or_else(|| {
                    offered
                        .password_rotation
                        .as_ref()
                        .map(|_| ROTATED_DEFAULT_DATABASE.to_owned())
                }),
                password_rotation: offered.password_rotation.clone(),
                master_username: settings.master_username.clone(),
                db_subnet_group_name: settings.db_subnet_group_name.clone(),
                vpc_security_group_ids: offered.vpc_security_group_ids.clone(),
                multi_az: settings.multi_az,
                publicly_accessible: settings.publicly_accessible,
                backup_retention_days: offered.backup_retention_days,
                deletion_protection: offered.deletion_protection,
                tags,
                ..DBInstanceSpec::default()
            },
        )
    }

    fn endpoint(managed: &DBInstance) -> Option<String> {
        let observed = managed.status.as_ref()?.at_provider.as_ref()?;
        let host = observed.endpoint_address.as_deref()?;
        Some(match observed.endpoint_port {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        })
    }

    fn connection_secret_name(&self) -> String {
        connection_secret_name(self, self.spec.write_connection_secret_to_ref.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(yaml: &str) -> DatabaseClass {
        serde_saphyr::from_str(yaml).expect("a DatabaseClass")
    }

    fn small_postgres() -> DatabaseClass {
        class(
            "apiVersion: tether.dev/v1alpha1
kind: DatabaseClass
metadata: {name: small-postgres, generation: 1}
spec:
  providerConfigRef: {name: aws}
  engine: postgres
  engineVersion: {default: '16', allowed: ['15']}
  instanceClass: {default: db.t3.micro, allowed: [db.t3.small]}
  storageGiB: {default: 20, min: 20, max: 100}
  dbSubnetGroupName: private
  vpcSecurityGroupIds: [sg-0123]
  backupRetentionDays: 7
  tags: {cost-center: platform}
",
        )
    }

    fn claim(spec: &str) -> DatabaseClaim {
        serde_saphyr::from_str(&format!(
            "apiVersion: tether.dev/v1alpha1
kind: DatabaseClaim
metadata: {{name: orders, namespace: shop}}
spec:
  className: small-postgres
{spec}"
        ))
        .expect("a DatabaseClaim")
    }

    #[test]
    fn a_claim_without_choices_gets_every_default() {
        let settings = claim("").settings(&small_postgres()).expect("allowed");
        assert_eq!(
            settings,
            DatabaseSettings {
                provider_config: "aws".into(),
                engine: "postgres".into(),
                engine_version: "16".into(),
                instance_class: "db.t3.micro".into(),
                storage_gib: 20,
                storage_type: None,
                master_username: "app".into(),
                db_subnet_group_name: Some("private".into()),
                multi_az: None,
                publicly_accessible: None,
                deletion_policy: DeletionPolicy::Snapshot,
            }
        );
    }

    #[test]
    fn every_refused_choice_is_named_with_its_bound() {
        let refused = claim(
            "  engineVersion: '14'\n  storageGiB: 500\n  deletionPolicy: Delete\n  instanceClass: db.t3.small\n",
        )
        .settings(&small_postgres())
        .unwrap_err();
        assert_eq!(
            refused,
            [
                "engineVersion 14 is not allowed; the class allows 16, 15",
                "storageGiB 500 is above the class's maximum of 100",
                "deletionPolicy Delete is not allowed; the class allows Snapshot",
            ]
        );
    }

    #[test]
    fn the_database_has_the_class_settings_the_claim_never_sees() {
        let claim = claim("  storageGiB: 50\n  databaseName: orders\n");
        let class = small_postgres();
        let settings = claim.settings(&class).expect("allowed");
        let database = claim.compose(&class, &settings);
        assert_eq!(database.name_any(), "orders");
        let spec = &database.spec;
        assert_eq!(spec.allocated_storage_gib, Some(50));
        assert_eq!(spec.db_subnet_group_name.as_deref(), Some("private"));
        assert_eq!(spec.vpc_security_group_ids, ["sg-0123"]);
        assert_eq!(spec.backup_retention_days, Some(7));
        assert_eq!(spec.database_name.as_deref(), Some("orders"));
        assert_eq!(spec.managed.deletion_policy, Some(DeletionPolicy::Snapshot));
        assert_eq!(
            spec.managed.write_connection_secret_to_ref,
            Some(LocalSecretReference {
                name: "orders".into()
            })
        );
        assert_eq!(
            spec.tags,
            BTreeMap::from([
                ("cost-center".into(), "platform".into()),
                ("tether.dev/claim".into(), "shop/orders".into()),
                ("tether.dev/class".into(), "small-postgres".into()),
            ])
        );
    }

    #[test]
    fn a_class_change_that_is_not_safe_in_place_waits_but_the_claims_own_choice_applies() {
        let claim = claim("  storageGiB: 40\n");
        let built = claim.settings(&small_postgres()).expect("allowed");
        let mut changed = small_postgres();
        changed.spec.engine_version.default = "17".into();
        changed.spec.db_subnet_group_name = Some("other".into());
        changed.spec.storage_gib.default = 30;
        let mut wanted = claim.settings(&changed).expect("allowed");
        wanted.storage_gib = 60;
        let (kept, waiting) = claim.keep_unsafe_changes(&wanted, &built);
        assert_eq!(kept.engine_version, "16");
        assert_eq!(kept.db_subnet_group_name.as_deref(), Some("private"));
        assert_eq!(kept.storage_gib, 60, "the claim names its storage");
        assert_eq!(waiting, ["engineVersion", "dbSubnetGroupName"]);
    }

    #[test]
    fn the_endpoint_is_host_and_port() {
        let mut database = DBInstance::new("orders", DBInstanceSpec::default());
        assert_eq!(DatabaseClaim::endpoint(&database), None);
        database.status = Some(
            serde_json::from_value(serde_json::json!({
                "atProvider": {"endpointAddress": "orders.example", "endpointPort": 5432}
            }))
            .unwrap(),
        );
        assert_eq!(
            DatabaseClaim::endpoint(&database).as_deref(),
            Some("orders.example:5432")
        );
    }
}
