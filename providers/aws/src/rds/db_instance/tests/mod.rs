//! What moto cannot show (states such as `creating`, eventual consistency, pending
//! modifications, exact request contents, errors that quote a password), with the
//! SDK's own mocks; the pure helpers; and the diff, without mocks.
//!
//! One file a part: the RDS and Secrets Manager calls with the SDK's mocks
//! (`client`), observations served by the shared snapshots (`listing`), the diff
//! (`diff`), the CRD (`types`); the fixtures they share are here.

mod client;
mod diff;
mod listing;
mod types;

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use crate::testing::{self, UID, a_dropped_tag, exists, metadata, mock_client};
use aws_sdk_rds::{
    error::ErrorMetadata,
    operation::{
        create_db_instance::{CreateDBInstanceError, CreateDbInstanceOutput},
        delete_db_instance::{DeleteDBInstanceError, DeleteDbInstanceOutput},
        describe_db_instances::{DescribeDBInstancesError, DescribeDbInstancesOutput},
        modify_db_instance::{ModifyDBInstanceError, ModifyDbInstanceOutput},
    },
    types::{
        DbInstance, Endpoint, MasterUserSecret, PendingModifiedValues, Tag,
        VpcSecurityGroupMembership,
        error::{
            DbInstanceAlreadyExistsFault, DbInstanceNotFoundFault, InvalidDbInstanceStateFault,
        },
    },
};
use aws_sdk_secretsmanager::{
    operation::{get_secret_value::GetSecretValueOutput, list_secrets::ListSecretsOutput},
    types::SecretListEntry,
};
use aws_smithy_mocks::{Rule, RuleMode, mock};
use tether_api::{
    ErrorClass, LocalReference,
    external::{
        ConnectionDetails, Context, Created, Delta, ExternalClient, Observation, ObservedOf,
        ProviderError, Readiness, SecretValue, SecretValues,
    },
    managed::{DeletionPolicy, Managed},
    snapshot::{Freshness, Known, Listing},
};

use super::{
    client::{major_version, readiness},
    diff::{diff, version_matches},
    kept::KeptInstance,
    master_password::PASSWORD_KEY,
    *,
};
use crate::{rds::password, tags::UID_TAG};

const IDENTIFIER: &str = "shop-orders";
const CANARY: &str = "canary-Zq8#pW3!xK";

fn object() -> DBInstance {
    DBInstance {
        metadata: metadata("orders"),
        spec: DBInstanceSpec {
            engine: "postgres".into(),
            engine_version: Some("16".into()),
            instance_class: "db.t3.small".into(),
            allocated_storage_gib: Some(20),
            database_name: Some("orders".into()),
            master_username: "app_admin".into(),
            backup_retention_days: Some(7),
            ..DBInstanceSpec::default()
        },
        status: None,
    }
}

/// An instance as DescribeDBInstances reports it, matching [`object`].
fn instance(status: &str) -> aws_sdk_rds::types::builders::DbInstanceBuilder {
    DbInstance::builder()
        .db_instance_identifier(IDENTIFIER)
        .db_instance_arn(format!(
            "arn:aws:rds:us-east-1:123456789012:db:{IDENTIFIER}"
        ))
        .db_instance_status(status)
        .engine("postgres")
        .engine_version("16.3")
        .db_instance_class("db.t3.small")
        .allocated_storage(20)
        .backup_retention_period(7)
        .master_username("app_admin")
        .db_name("orders")
        .tag_list(Tag::builder().key(UID_TAG).value(UID).build())
}

fn described(instance: DbInstance) -> DescribeDbInstancesOutput {
    DescribeDbInstancesOutput::builder()
        .db_instances(instance)
        .build()
}

fn published(password: &str) -> ConnectionDetails {
    ConnectionDetails(BTreeMap::from([(
        PASSWORD_KEY.to_owned(),
        password.as_bytes().to_vec(),
    )]))
}

fn client(rds: &[&Rule]) -> DBInstanceClient {
    client_with_secrets(rds, &[])
}

fn client_with_secrets(rds: &[&Rule], secrets: &[&Rule]) -> DBInstanceClient {
    DBInstanceClient::new(
        mock_client!(aws_sdk_rds, RuleMode::MatchAny, rds.iter().copied()),
        mock_client!(
            aws_sdk_secretsmanager,
            RuleMode::MatchAny,
            secrets.iter().copied()
        ),
    )
}

fn context<'a>(published: &'a ConnectionDetails, pending: bool) -> Context<'a> {
    Context {
        published,
        credentials_pending: pending,
        create_attempt: None,
        ..Context::named(Some(IDENTIFIER))
    }
}

/// Observes `object` with `published` and `pending`, which must find the instance.
async fn observe(
    client: &DBInstanceClient,
    object: &DBInstance,
    published: &ConnectionDetails,
    pending: bool,
) -> ObservedOf<DBInstance> {
    exists(
        client
            .observe(object, context(published, pending))
            .await
            .unwrap(),
    )
}

/// RDS's fault for an instance it does not have.
fn not_found() -> DbInstanceNotFoundFault {
    DbInstanceNotFoundFault::builder()
        .message("DBInstance shop-orders not found.")
        .meta(testing::error(
            "DBInstanceNotFound",
            "DBInstance shop-orders not found.",
        ))
        .build()
}

/// A CreateDBInstance that fails because the identifier is taken.
fn create_already_exists() -> Rule {
    mock!(aws_sdk_rds::Client::create_db_instance).then_error(|| {
        CreateDBInstanceError::DbInstanceAlreadyExistsFault(
            DbInstanceAlreadyExistsFault::builder()
                .message("DB instance already exists")
                .meta(testing::error(
                    "DBInstanceAlreadyExists",
                    "DB instance already exists",
                ))
                .build(),
        )
    })
}

/// The error of creating [`object`] when CreateDBInstance finds the identifier
/// taken and `describe` answers for the instance; `why` it must fail.
async fn create_taken(describe: Rule, why: &str) -> ProviderError {
    let create = create_already_exists();
    let client = client(&[&describe, &create]);
    let secret = published("pw");
    client
        .create(&object(), context(&secret, true))
        .await
        .expect_err(why)
}

/// `instance` with the endpoint RDS gives an available instance.
fn with_endpoint(
    instance: aws_sdk_rds::types::builders::DbInstanceBuilder,
) -> aws_sdk_rds::types::builders::DbInstanceBuilder {
    instance.endpoint(
        Endpoint::builder()
            .address("shop-orders.abc.us-east-1.rds.amazonaws.com")
            .port(5432)
            .build(),
    )
}

/// A master password read from the user's Secret `orders-admin`.
fn user_password() -> MasterPassword {
    MasterPassword {
        secret_key_ref: SecretKeyReference {
            name: "orders-admin".into(),
            key: "password".into(),
        },
    }
}

/// An `InvalidParameterValue` error that says `message`.
fn invalid_parameter(message: String) -> ErrorMetadata {
    testing::error("InvalidParameterValue", &message)
}

fn observed(delta: DBInstanceDelta) -> ObservedOf<DBInstance> {
    testing::observed(
        None,
        delta,
        DBInstanceObservation {
            arn: Some(format!(
                "arn:aws:rds:us-east-1:123456789012:db:{IDENTIFIER}"
            )),
            engine_version: Some("16.3".into()),
            ..DBInstanceObservation::default()
        },
    )
}

/// The ARN of the secret RDS keeps the master password in.
const ARN: &str = "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-1";

/// DescribeDBInstances answering with an available instance whose master password RDS
/// keeps in [`ARN`].
fn with_managed_secret() -> Rule {
    mock!(aws_sdk_rds::Client::describe_db_instances).then_output(|| {
        described(
            with_endpoint(instance("available"))
                .master_user_secret(MasterUserSecret::builder().secret_arn(ARN).build())
                .build(),
        )
    })
}
