//! What moto cannot show (states such as `creating`, eventual consistency, pending
//! modifications, exact request contents, errors that quote a password), with the
//! SDK's own mocks; the pure helpers; and the diff, without mocks.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use crate::testing::mock_client;
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
use kube::core::ObjectMeta;
use tether_api::{
    ErrorClass, LocalReference,
    external::{
        ConnectionDetails, Context, Created, Delta, ExternalClient, Observation, ObservationOf,
        Observed, ObservedOf, ProviderError, Readiness,
    },
    managed::{DeletionPolicy, Managed},
    snapshot::{Freshness, Known, Listing},
};

use super::{
    client::{major_version, readiness},
    diff::{diff, version_matches},
    master_password::PASSWORD_KEY,
    *,
};
use crate::{
    rds::password,
    tags::{UID_TAG, fixtures::a_dropped_tag},
};

const UID: &str = "0c9f3a1e-5b7d-4e2a-9c1f-2d3e4f5a6b7c";
const IDENTIFIER: &str = "shop-orders";
const CANARY: &str = "canary-Zq8#pW3!xK";

fn object() -> DBInstance {
    DBInstance {
        metadata: ObjectMeta {
            name: Some("orders".into()),
            namespace: Some("shop".into()),
            uid: Some(UID.into()),
            ..ObjectMeta::default()
        },
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

/// A Kubernetes client that is never called: the tests use no user Secret.
fn offline_kube() -> kube::Client {
    let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
    kube::Client::try_from(config).unwrap()
}

fn client(rds: &[&Rule]) -> DBInstanceClient {
    client_with_secrets(rds, &[])
}

fn client_with_secrets(rds: &[&Rule], secrets: &[&Rule]) -> DBInstanceClient {
    DBInstanceClient::new(
        mock_client!(aws_sdk_rds, RuleMode::MatchAny, rds.iter().copied()),
        offline_kube(),
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
        pending,
        create_attempt: None,
        ..Context::named(Some(IDENTIFIER))
    }
}

fn exists(observation: ObservationOf<DBInstance>) -> ObservedOf<DBInstance> {
    match observation {
        Observation::Exists(observed) => observed,
        Observation::Missing => panic!("the instance is observed"),
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
        .meta(
            ErrorMetadata::builder()
                .code("DBInstanceNotFound")
                .message("DBInstance shop-orders not found.")
                .build(),
        )
        .build()
}

/// A CreateDBInstance that fails because the identifier is taken.
fn create_already_exists() -> Rule {
    mock!(aws_sdk_rds::Client::create_db_instance).then_error(|| {
        CreateDBInstanceError::DbInstanceAlreadyExistsFault(
            DbInstanceAlreadyExistsFault::builder()
                .message("DB instance already exists")
                .meta(
                    ErrorMetadata::builder()
                        .code("DBInstanceAlreadyExists")
                        .message("DB instance already exists")
                        .build(),
                )
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
    ErrorMetadata::builder()
        .code("InvalidParameterValue")
        .message(message)
        .build()
}

fn observed(delta: DBInstanceDelta) -> ObservedOf<DBInstance> {
    Observed {
        external_name: None,
        owner_uid: Some(UID.into()),
        delta,
        readiness: Readiness::Ready,
        at_provider: DBInstanceObservation {
            arn: Some(format!(
                "arn:aws:rds:us-east-1:123456789012:db:{IDENTIFIER}"
            )),
            engine_version: Some("16.3".into()),
            ..DBInstanceObservation::default()
        },
        connection: ConnectionDetails::default(),
    }
}

#[tokio::test]
async fn an_instance_creating_for_many_polls_stays_not_ready_without_an_error() {
    let describe = mock!(aws_sdk_rds::Client::describe_db_instances)
        .match_requests(|request| request.db_instance_identifier() == Some(IDENTIFIER))
        .then_output(|| described(instance("creating").build()));
    let client = client(&[&describe]);
    let object = object();
    let secret = published("pw");
    for _ in 0..20 {
        let observed = observe(&client, &object, &secret, false).await;
        assert_eq!(
            observed.readiness,
            Readiness::NotReady {
                reason: "Creating".into(),
                message: "AWS reports the DB instance as creating".into(),
            }
        );
        assert!(observed.is_up_to_date(), "{:?}", observed.delta.describe());
        assert_eq!(
            observed.connection,
            ConnectionDetails::default(),
            "no endpoint yet, so nothing to connect to"
        );
        assert_eq!(observed.at_provider.status.as_deref(), Some("creating"));
    }
    assert_eq!(describe.num_calls(), 20);
}

#[test]
fn every_status_but_available_is_not_ready_with_a_camel_case_reason() {
    assert_eq!(readiness(Some("available")), Readiness::Ready);
    for (status, reason) in [
        ("creating", "Creating"),
        ("backing-up", "BackingUp"),
        ("modifying", "Modifying"),
        ("deleting", "Deleting"),
        ("storage-optimization", "StorageOptimization"),
        ("incompatible-parameters", "IncompatibleParameters"),
    ] {
        assert_eq!(
            readiness(Some(status)),
            Readiness::NotReady {
                reason: reason.into(),
                message: format!("AWS reports the DB instance as {status}"),
            }
        );
    }
}

#[tokio::test]
async fn an_instance_not_yet_visible_after_create_is_missing_and_our_own_create_is_ok() {
    let describe = mock!(aws_sdk_rds::Client::describe_db_instances)
        .sequence()
        .error(|| DescribeDBInstancesError::DbInstanceNotFoundFault(not_found()))
        .output(|| described(instance("creating").build()))
        .build();
    let create = create_already_exists();
    let client = client(&[&describe, &create]);
    let object = object();
    let secret = published("pw");
    assert_eq!(
        client
            .observe(&object, context(&secret, true))
            .await
            .unwrap(),
        Observation::Missing
    );
    client
        .create(&object, context(&secret, true))
        .await
        .expect("the instance that exists carries this object's UID");
    assert_eq!(create.num_calls(), 1);
    assert_eq!(describe.num_calls(), 2);
}

#[tokio::test]
async fn an_existing_instance_of_someone_else_is_not_taken_over() {
    let describe = mock!(aws_sdk_rds::Client::describe_db_instances).then_output(|| {
        described(
            instance("available")
                .set_tag_list(Some(vec![
                    Tag::builder().key(UID_TAG).value("another-uid").build(),
                ]))
                .build(),
        )
    });
    let error = create_taken(describe, "not ours").await;
    assert_eq!(error.class, ErrorClass::Terminal);
    assert_eq!(
        error.message,
        "DB instance shop-orders exists and was not created by this object; to manage it, set tether.dev/external-name"
    );
}

#[tokio::test]
async fn an_existing_instance_not_yet_described_is_pending() {
    let describe = mock!(aws_sdk_rds::Client::describe_db_instances)
        .then_error(|| DescribeDBInstancesError::DbInstanceNotFoundFault(not_found()));
    let error = create_taken(describe, "not visible yet").await;
    assert_eq!(error.class, ErrorClass::Pending, "{error:?}");
}

#[tokio::test]
async fn an_object_being_deleted_is_observed_without_reading_its_password_secret() {
    let describe = mock!(aws_sdk_rds::Client::describe_db_instances)
        .then_output(|| described(instance("available").build()));
    // The Kubernetes client of these tests reaches nothing: a read would fail.
    let client = client(&[&describe]);
    let mut object = object();
    object.spec.master_password = Some(user_password());
    object.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        ));
    let secret = published("pw");
    let observed = observe(&client, &object, &secret, false).await;
    assert_eq!(
        observed.at_provider.final_snapshot_identifier.as_deref(),
        Some("shop-orders-final-0c9f3a1e")
    );
    object.spec.managed.deletion_policy = Some(DeletionPolicy::Delete);
    let observed = observe(&client, &object, &secret, false).await;
    assert_eq!(observed.at_provider.final_snapshot_identifier, None);
}

#[tokio::test]
async fn values_aws_is_still_applying_are_no_difference() {
    let describe = mock!(aws_sdk_rds::Client::describe_db_instances).then_output(|| {
        described(
            instance("modifying")
                .db_instance_class("db.t3.micro")
                .backup_retention_period(1)
                .engine_version("15.7")
                .allocated_storage(20)
                .pending_modified_values(
                    PendingModifiedValues::builder()
                        .db_instance_class("db.t3.small")
                        .backup_retention_period(7)
                        .engine_version("16.3")
                        .build(),
                )
                .build(),
        )
    });
    let client = client(&[&describe]);
    let secret = published("pw");
    let observed = observe(&client, &object(), &secret, false).await;
    assert!(
        observed.is_up_to_date(),
        "pending values count as applied: {:?}",
        observed.delta.describe()
    );
    assert_eq!(
        observed.readiness,
        Readiness::NotReady {
            reason: "Modifying".into(),
            message: "AWS reports the DB instance as modifying".into()
        }
    );

    // A pending value that is not the spec's is still a difference.
    let mut bigger = object();
    bigger.spec.instance_class = "db.m6g.large".into();
    let observed = observe(&client, &bigger, &secret, false).await;
    assert_eq!(observed.delta.describe(), ["instanceClass"]);
}

#[tokio::test]
async fn observe_names_each_differing_field() {
    let describe = mock!(aws_sdk_rds::Client::describe_db_instances).then_output(|| {
        described(
            instance("available")
                .db_instance_class("db.t3.micro")
                .engine_version("15.7")
                .allocated_storage(50)
                .backup_retention_period(1)
                .multi_az(false)
                .publicly_accessible(true)
                .deletion_protection(false)
                .vpc_security_groups(
                    VpcSecurityGroupMembership::builder()
                        .vpc_security_group_id("sg-0aaa")
                        .status("active")
                        .build(),
                )
                .build(),
        )
    });
    let client = client(&[&describe]);
    let mut object = object();
    object.spec.allocated_storage_gib = Some(100);
    object.spec.multi_az = Some(true);
    object.spec.publicly_accessible = Some(false);
    object.spec.deletion_protection = Some(true);
    object.spec.vpc_security_group_ids = vec!["sg-0bbb".into()];
    object.spec.tags.insert("team".into(), "orders".into());
    let nothing = ConnectionDetails::default();
    let observed = observe(&client, &object, &nothing, false).await;
    assert_eq!(
        observed.delta.describe(),
        [
            "engineVersion",
            "instanceClass",
            "allocatedStorageGiB",
            "masterPassword",
            "vpcSecurityGroupIds",
            "multiAZ",
            "publiclyAccessible",
            "backupRetentionDays",
            "deletionProtection",
            "tags",
        ]
    );
}

#[tokio::test]
async fn update_sends_only_the_differing_fields() {
    let modify = mock!(aws_sdk_rds::Client::modify_db_instance)
        .match_requests(|request| {
            request.db_instance_identifier() == Some(IDENTIFIER)
                && request.apply_immediately() == Some(true)
                && request.db_instance_class() == Some("db.t3.small")
                && request.backup_retention_period() == Some(7)
                && request.engine_version().is_none()
                && request.allow_major_version_upgrade().is_none()
                && request.allocated_storage().is_none()
                && request.master_user_password().is_none()
                && request.manage_master_user_password().is_none()
                && request.vpc_security_group_ids().is_empty()
                && request.multi_az().is_none()
                && request.publicly_accessible().is_none()
                && request.deletion_protection().is_none()
        })
        .then_output(|| ModifyDbInstanceOutput::builder().build());
    let client = client(&[&modify]);
    let secret = published("pw");
    client
        .update(
            &object(),
            context(&secret, false),
            &observed(DBInstanceDelta {
                instance_class: true,
                backup_retention_days: true,
                ..DBInstanceDelta::default()
            }),
        )
        .await
        .expect("one ModifyDBInstance with the two fields, and no tag call");
    assert_eq!(modify.num_calls(), 1);
}

#[tokio::test]
async fn a_tag_difference_alone_is_one_add_tags_call() {
    let tag = mock!(aws_sdk_rds::Client::add_tags_to_resource)
        .match_requests(|request| {
            request.resource_name() == Some("arn:aws:rds:us-east-1:123456789012:db:shop-orders")
                && request
                    .tags()
                    .iter()
                    .any(|t| t.key() == Some(UID_TAG) && t.value() == Some(UID))
        })
        .then_output(|| {
            aws_sdk_rds::operation::add_tags_to_resource::AddTagsToResourceOutput::builder().build()
        });
    let client = client(&[&tag]);
    let secret = published("pw");
    client
        .update(
            &object(),
            context(&secret, false),
            &observed(DBInstanceDelta {
                tags: true,
                ..DBInstanceDelta::default()
            }),
        )
        .await
        .expect("no ModifyDBInstance");
    assert_eq!(tag.num_calls(), 1);
}

#[tokio::test]
async fn a_tag_dropped_from_the_spec_is_removed_and_one_never_applied_is_not() {
    let add = mock!(aws_sdk_rds::Client::add_tags_to_resource).then_output(|| {
        aws_sdk_rds::operation::add_tags_to_resource::AddTagsToResourceOutput::builder().build()
    });
    let remove = mock!(aws_sdk_rds::Client::remove_tags_from_resource)
        .match_requests(|request| request.tag_keys() == ["env"])
        .then_output(|| {
            aws_sdk_rds::operation::remove_tags_from_resource::RemoveTagsFromResourceOutput::builder()
                .build()
        });
    let client = client(&[&add, &remove]);
    let secret = published("pw");
    let mut object = object();
    object.spec.tags = BTreeMap::from([("team".to_owned(), "shop".to_owned())]);
    let applied = BTreeSet::from(["env".to_owned(), "team".to_owned()]);
    client
        .update(
            &object,
            Context {
                applied_tags: &applied,
                ..context(&secret, false)
            },
            &observed(DBInstanceDelta {
                tags: true,
                ..DBInstanceDelta::default()
            }),
        )
        .await
        .expect("tags synced");
    assert_eq!((add.num_calls(), remove.num_calls()), (1, 1));
}

#[tokio::test]
async fn a_major_version_change_allows_a_major_upgrade_and_a_minor_one_does_not() {
    let major = mock!(aws_sdk_rds::Client::modify_db_instance)
        .match_requests(|request| {
            request.engine_version() == Some("17")
                && request.allow_major_version_upgrade() == Some(true)
        })
        .then_output(|| ModifyDbInstanceOutput::builder().build());
    let minor = mock!(aws_sdk_rds::Client::modify_db_instance)
        .match_requests(|request| {
            request.engine_version() == Some("16.4")
                && request.allow_major_version_upgrade().is_none()
        })
        .then_output(|| ModifyDbInstanceOutput::builder().build());
    let client = client(&[&major, &minor]);
    let secret = published("pw");
    let mut object = object();
    for version in ["17", "16.4"] {
        object.spec.engine_version = Some(version.into());
        client
            .update(
                &object,
                context(&secret, false),
                &observed(DBInstanceDelta {
                    engine_version: true,
                    ..DBInstanceDelta::default()
                }),
            )
            .await
            .unwrap_or_else(|error| panic!("{version}: {error}"));
    }
    assert_eq!((major.num_calls(), minor.num_calls()), (1, 1));
}

#[tokio::test]
async fn a_pending_generated_password_is_a_difference_and_update_sends_it() {
    let describe = mock!(aws_sdk_rds::Client::describe_db_instances)
        .then_output(|| described(instance("available").build()));
    let modify = mock!(aws_sdk_rds::Client::modify_db_instance)
        .match_requests(|request| {
            request.master_user_password() == Some("new-generated")
                && request.manage_master_user_password().is_none()
                && request.db_instance_class().is_none()
        })
        .then_output(|| ModifyDbInstanceOutput::builder().build());
    let client = client(&[&describe, &modify]);
    let object = object();
    let secret = published("new-generated");

    let settled = observe(&client, &object, &secret, false).await;
    assert!(settled.is_up_to_date(), "{:?}", settled.delta.describe());

    let pending = observe(&client, &object, &secret, true).await;
    assert_eq!(pending.delta.describe(), ["masterPassword"]);
    client
        .update(&object, context(&secret, true), &pending)
        .await
        .expect("ModifyDBInstance with the published password");
    assert_eq!(modify.num_calls(), 1);

    let nothing = ConnectionDetails::default();
    let unknown = observe(&client, &object, &nothing, false).await;
    assert_eq!(
        unknown.delta.describe(),
        ["masterPassword"],
        "an instance whose password tether does not hold gets a new one"
    );
}

#[tokio::test]
async fn prepare_generates_a_password_only_when_none_is_published() {
    let client = client(&[]);
    let object = object();
    let nothing = ConnectionDetails::default();
    let prepared = client
        .prepare(&object, context(&nothing, false))
        .await
        .unwrap()
        .expect("nothing published: a new password");
    assert_eq!(prepared.0["username"], b"app_admin");
    let password = String::from_utf8(prepared.0["password"].clone()).unwrap();
    assert_eq!(password.len(), password::GENERATED_PASSWORD_LENGTH);
    assert_eq!(
        prepared.0.keys().collect::<Vec<_>>(),
        ["password", "username"]
    );

    let secret = published("kept");
    assert_eq!(
        client.prepare(&object, context(&secret, false)).await,
        Ok(None)
    );
    assert_eq!(
        client.prepare(&object, context(&secret, true)).await,
        Ok(None),
        "a pending password is applied, not replaced"
    );

    let mut user_supplied = object.clone();
    user_supplied.spec.master_password = Some(user_password());
    let mut rds_managed = object.clone();
    rds_managed.spec.manage_master_user_password = Some(true);
    for other in [user_supplied, rds_managed] {
        assert_eq!(
            client.prepare(&other, context(&nothing, false)).await,
            Ok(None)
        );
    }
}

#[tokio::test]
async fn create_never_generates_a_password_itself() {
    let client = client(&[]);
    let nothing = ConnectionDetails::default();
    let error = client
        .create(&object(), context(&nothing, false))
        .await
        .expect_err("nothing published");
    assert_eq!(error.class, ErrorClass::Terminal);
    assert!(
        error.message.contains("no generated master password"),
        "{error}"
    );
}

#[tokio::test]
async fn create_sends_the_spec_the_published_password_and_the_uid_tag() {
    let create = mock!(aws_sdk_rds::Client::create_db_instance)
        .match_requests(|request| {
            request.db_instance_identifier() == Some(IDENTIFIER)
                && request.engine() == Some("postgres")
                && request.engine_version() == Some("16")
                && request.db_instance_class() == Some("db.t3.small")
                && request.allocated_storage() == Some(20)
                && request.db_name() == Some("orders")
                && request.master_username() == Some("app_admin")
                && request.master_user_password() == Some("published-pw")
                && request.manage_master_user_password().is_none()
                && request.db_subnet_group_name() == Some("shop-orders-subnets")
                && request.backup_retention_period() == Some(7)
                && request
                    .tags()
                    .iter()
                    .any(|t| t.key() == Some(UID_TAG) && t.value() == Some(UID))
        })
        .then_output(|| CreateDbInstanceOutput::builder().build());
    let client = client(&[&create]);
    let mut object = object();
    object.spec.db_subnet_group_ref = Some(LocalReference {
        name: "orders-subnets".into(),
    });
    let secret = published("published-pw");
    let references = BTreeMap::from([(
        DB_SUBNET_GROUP_REF.to_owned(),
        "shop-orders-subnets".to_owned(),
    )]);
    let at = Context {
        references: &references,
        ..context(&secret, true)
    };
    assert_eq!(client.create(&object, at).await, Ok(Created::default()));
    assert_eq!(create.num_calls(), 1);
}

#[tokio::test]
async fn a_canary_password_never_reaches_an_error_or_debug_output() {
    let quoting = |operation: &str| {
        format!("{operation}: The parameter MasterUserPassword '{CANARY}' is not valid.")
    };
    let create = mock!(aws_sdk_rds::Client::create_db_instance)
        .then_error(move || CreateDBInstanceError::generic(invalid_parameter(quoting("create"))));
    let modify = mock!(aws_sdk_rds::Client::modify_db_instance)
        .then_error(move || ModifyDBInstanceError::generic(invalid_parameter(quoting("modify"))));
    let describe = mock!(aws_sdk_rds::Client::describe_db_instances)
        .then_output(|| described(with_endpoint(instance("available")).build()));
    let client = client(&[&create, &modify, &describe]);
    let object = object();
    let secret = published(CANARY);

    let mut printed = Vec::new();
    let error = client
        .create(&object, context(&secret, true))
        .await
        .expect_err("refused");
    assert_eq!(error.class, ErrorClass::Terminal);
    assert!(error.message.contains("<redacted>"), "{error}");
    printed.push(format!("{error} {error:?}"));

    let error = client
        .update(
            &object,
            context(&secret, true),
            &observed(DBInstanceDelta {
                master_password: true,
                ..DBInstanceDelta::default()
            }),
        )
        .await
        .expect_err("refused");
    assert!(error.message.contains("<redacted>"), "{error}");
    printed.push(format!("{error} {error:?}"));

    let observation = client
        .observe(&object, context(&secret, false))
        .await
        .unwrap();
    let observed = exists(observation.clone());
    assert_eq!(
        observed.connection.0["password"],
        CANARY.as_bytes(),
        "the Secret gets the password"
    );
    printed.push(format!("{observation:?}"));
    printed.push(format!(
        "{object:?} {:?}",
        client.prepare(&object, context(&secret, false)).await
    ));
    let prepared = client
        .prepare(&object, context(&ConnectionDetails::default(), false))
        .await;
    printed.push(format!("{prepared:?}"));

    for text in printed {
        assert!(!text.contains(CANARY), "the password leaked: {text}");
    }
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

#[tokio::test]
async fn an_rds_managed_password_is_read_from_secrets_manager() {
    let describe = with_managed_secret();
    let secret = mock!(aws_sdk_secretsmanager::Client::get_secret_value)
        .match_requests(|request| request.secret_id() == Some(ARN))
        .then_output(|| {
            GetSecretValueOutput::builder()
                .secret_string(r#"{"username":"app_admin","password":"rotated:pw"}"#)
                .build()
        });
    let client = client_with_secrets(&[&describe], &[&secret]);
    let mut object = object();
    object.spec.manage_master_user_password = Some(true);
    let nothing = ConnectionDetails::default();
    let observed = observe(&client, &object, &nothing, false).await;
    assert!(observed.is_up_to_date(), "{:?}", observed.delta.describe());
    let text = |key: &str| String::from_utf8(observed.connection.0[key].clone()).unwrap();
    assert_eq!(text("password"), "rotated:pw");
    assert_eq!(text("username"), "app_admin");
    assert_eq!(
        text("uri"),
        "postgresql://app_admin:rotated%3Apw@shop-orders.abc.us-east-1.rds.amazonaws.com:5432/orders"
    );
    assert_eq!(
        observed.at_provider.master_user_secret_arn.as_deref(),
        Some(ARN)
    );
}

#[tokio::test]
async fn an_unreadable_managed_secret_is_terminal_and_not_quoted() {
    let describe = mock!(aws_sdk_rds::Client::describe_db_instances).then_output(|| {
        described(
            instance("available")
                .master_user_secret(MasterUserSecret::builder().secret_arn("arn:x").build())
                .build(),
        )
    });
    let secret = mock!(aws_sdk_secretsmanager::Client::get_secret_value).then_output(|| {
        GetSecretValueOutput::builder()
            .secret_string(format!("not json {CANARY}"))
            .build()
    });
    let client = client_with_secrets(&[&describe], &[&secret]);
    let mut object = object();
    object.spec.manage_master_user_password = Some(true);
    let nothing = ConnectionDetails::default();
    let error = client
        .observe(&object, context(&nothing, false))
        .await
        .expect_err("no JSON");
    assert_eq!(error.class, ErrorClass::Terminal);
    assert!(!format!("{error:?}").contains(CANARY));
}

#[tokio::test]
async fn switching_to_an_rds_managed_password_is_a_difference_update_applies() {
    let describe = mock!(aws_sdk_rds::Client::describe_db_instances)
        .then_output(|| described(instance("available").build()));
    let modify = mock!(aws_sdk_rds::Client::modify_db_instance)
        .match_requests(|request| {
            request.manage_master_user_password() == Some(true)
                && request.master_user_password().is_none()
        })
        .then_output(|| ModifyDbInstanceOutput::builder().build());
    let client = client(&[&describe, &modify]);
    let mut object = object();
    object.spec.manage_master_user_password = Some(true);
    let secret = published("old");
    let observed = observe(&client, &object, &secret, false).await;
    assert_eq!(observed.delta.describe(), ["masterPassword"]);
    client
        .update(&object, context(&secret, false), &observed)
        .await
        .unwrap();
    assert_eq!(modify.num_calls(), 1);
}

#[tokio::test]
async fn delete_takes_a_final_snapshot_or_skips_it_per_policy() {
    let snapshot = final_snapshot_identifier(IDENTIFIER, Some(UID));
    assert_eq!(snapshot, "shop-orders-final-0c9f3a1e");
    let with_snapshot = mock!(aws_sdk_rds::Client::delete_db_instance)
        .match_requests(|request| {
            request.skip_final_snapshot() == Some(false)
                && request.final_db_snapshot_identifier() == Some("shop-orders-final-0c9f3a1e")
        })
        .then_output(|| DeleteDbInstanceOutput::builder().build());
    let without = mock!(aws_sdk_rds::Client::delete_db_instance)
        .match_requests(|request| {
            request.skip_final_snapshot() == Some(true)
                && request.delete_automated_backups() == Some(true)
                && request.final_db_snapshot_identifier().is_none()
        })
        .then_output(|| DeleteDbInstanceOutput::builder().build());
    let client = client(&[&with_snapshot, &without]);
    let object = object();
    let at = Context::named(Some(IDENTIFIER));
    assert_eq!(
        client.delete(&object, at, DeletionPolicy::Snapshot).await,
        Ok(Some("final snapshot shop-orders-final-0c9f3a1e".into()))
    );
    assert_eq!(
        client.delete(&object, at, DeletionPolicy::Delete).await,
        Ok(None)
    );
    assert_eq!(
        client.delete(&object, at, DeletionPolicy::Retain).await,
        Ok(None),
        "Retain calls nothing"
    );
    assert_eq!((with_snapshot.num_calls(), without.num_calls()), (1, 1));
}

#[tokio::test]
async fn deleting_an_instance_already_being_deleted_or_gone_is_done() {
    let busy = || {
        DeleteDBInstanceError::InvalidDbInstanceStateFault(
            InvalidDbInstanceStateFault::builder()
                .message("Instance shop-orders is already being deleted.")
                .meta(
                    ErrorMetadata::builder()
                        .code("InvalidDBInstanceState")
                        .message("Instance shop-orders is already being deleted.")
                        .build(),
                )
                .build(),
        )
    };
    let delete = mock!(aws_sdk_rds::Client::delete_db_instance)
        .sequence()
        .error(busy)
        .error(busy)
        .error(|| DeleteDBInstanceError::DbInstanceNotFoundFault(not_found()))
        .build();
    let describe = mock!(aws_sdk_rds::Client::describe_db_instances)
        .sequence()
        .output(|| described(instance("deleting").build()))
        .output(|| described(instance("backing-up").build()))
        .build();
    let client = client(&[&delete, &describe]);
    let object = object();
    let at = Context::named(Some(IDENTIFIER));
    assert_eq!(
        client.delete(&object, at, DeletionPolicy::Snapshot).await,
        Ok(Some("final snapshot shop-orders-final-0c9f3a1e".into())),
        "already deleting"
    );
    let error = client
        .delete(&object, at, DeletionPolicy::Snapshot)
        .await
        .expect_err("busy backing up");
    assert_eq!(error.class, ErrorClass::Pending);
    assert_eq!(
        client.delete(&object, at, DeletionPolicy::Snapshot).await,
        Ok(None),
        "gone"
    );
}

#[tokio::test]
async fn deletion_protection_is_turned_off_first_only_when_the_spec_says_so() {
    let protected = || {
        DeleteDBInstanceError::generic(
            ErrorMetadata::builder()
                .code("InvalidParameterCombination")
                .message("Cannot delete protected DB Instance, please disable deletion protection and try again.")
                .build(),
        )
    };
    let refused = mock!(aws_sdk_rds::Client::delete_db_instance).then_error(protected);
    let mut object = object();
    let at = Context::named(Some(IDENTIFIER));
    let error = client(&[&refused])
        .delete(&object, at, DeletionPolicy::Delete)
        .await
        .expect_err("protected");
    assert_eq!(error.class, ErrorClass::Terminal);
    assert!(
        error.message.contains("set spec.deletionProtection: false"),
        "{}",
        error.message
    );

    object.spec.deletion_protection = Some(false);
    let delete = mock!(aws_sdk_rds::Client::delete_db_instance)
        .sequence()
        .error(protected)
        .output(|| DeleteDbInstanceOutput::builder().build())
        .build();
    let unprotect = mock!(aws_sdk_rds::Client::modify_db_instance)
        .match_requests(|request| {
            request.deletion_protection() == Some(false)
                && request.apply_immediately() == Some(true)
        })
        .then_output(|| ModifyDbInstanceOutput::builder().build());
    assert_eq!(
        client(&[&delete, &unprotect])
            .delete(&object, at, DeletionPolicy::Delete)
            .await,
        Ok(None)
    );
}

#[test]
fn final_snapshot_names_are_deterministic_and_valid() {
    assert_eq!(
        final_snapshot_identifier("shop-orders", Some(UID)),
        "shop-orders-final-0c9f3a1e"
    );
    assert_eq!(
        final_snapshot_identifier("Shop-Orders", Some(UID)),
        "shop-orders-final-0c9f3a1e",
        "RDS identifiers are case-insensitive"
    );
    assert_eq!(final_snapshot_identifier("orders", None), "orders-final");
    assert_eq!(
        final_snapshot_identifier("9lives--db.x_", Some(UID)),
        "db-9lives-db-x-final-0c9f3a1e"
    );
    assert_eq!(
        final_snapshot_identifier("--", Some(UID)),
        "db-final-0c9f3a1e"
    );
    let long = format!("a{}", "-b".repeat(200));
    for identifier in [long.as_str(), &"x".repeat(300), "shop-orders", "a-"] {
        let name = final_snapshot_identifier(identifier, Some(UID));
        assert!(name.len() <= 255, "{name}");
        assert!(name.starts_with(|c: char| c.is_ascii_lowercase()), "{name}");
        assert!(!name.contains("--") && !name.ends_with('-'), "{name}");
        assert!(name.ends_with("-final-0c9f3a1e"), "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{name}"
        );
        assert_eq!(name, final_snapshot_identifier(identifier, Some(UID)));
    }
}

#[test]
fn engine_versions_match_on_dot_boundaries() {
    assert!(version_matches("16", "16.3"));
    assert!(version_matches("16.3", "16.3"));
    assert!(!version_matches("16.3", "16.30"));
    assert!(!version_matches("16.3", "16.4"));
    assert!(!version_matches("1", "16.3"));
    assert!(!version_matches("16.3.1", "16.3"));
    assert!(version_matches("8.0", "8.0.39"));
}

#[test]
fn major_versions_follow_each_engine() {
    assert_eq!(major_version("postgres", "16.3"), "16");
    assert_eq!(major_version("postgres", "17"), "17");
    assert_eq!(major_version("postgres", "9.6.22"), "9.6");
    assert_eq!(major_version("mysql", "8.0.39"), "8.0");
    assert_eq!(major_version("mysql", "8.4.3"), "8.4");
    assert_eq!(major_version("mariadb", "10.11.9"), "10.11");
    assert_eq!(major_version("mysql", "8"), "8");
}

#[test]
fn the_object_declares_its_references_and_secrets() {
    let mut object = object();
    assert_eq!(
        object.default_external_name().as_deref(),
        Some("shop-orders-0c9f3a1e5b")
    );
    assert!(object.references().is_empty());
    assert!(object.secret_references().is_empty());
    assert_eq!(object.deletion_policy(), DeletionPolicy::Snapshot);

    object.spec.identifier = Some("orders-db".into());
    object.spec.db_subnet_group_ref = Some(LocalReference {
        name: "orders-subnets".into(),
    });
    object.spec.master_password = Some(user_password());
    assert_eq!(object.default_external_name().as_deref(), Some("orders-db"));
    let references = object.references();
    assert_eq!(references.len(), 1);
    assert_eq!(references[0].field, "dbSubnetGroupRef");
    assert_eq!(references[0].name, "orders-subnets");
    assert_eq!(references[0].resource.kind, "DBSubnetGroup");
    assert_eq!(object.secret_references(), ["orders-admin"]);
}

#[test]
fn the_spec_uses_the_api_field_names() {
    let mut object = object();
    object.spec.multi_az = Some(true);
    let json = serde_json::to_value(&object.spec).unwrap();
    for key in [
        "allocatedStorageGiB",
        "multiAZ",
        "backupRetentionDays",
        "masterUsername",
        "instanceClass",
    ] {
        assert!(json.get(key).is_some(), "{key} in {json}");
    }
}

// The diff, without mocks.

/// The tags [`instance`] carries.
fn uid_tag() -> BTreeMap<String, String> {
    BTreeMap::from([(UID_TAG.to_owned(), UID.to_owned())])
}

/// A security group membership as DescribeDBInstances reports it.
fn membership(id: &str, status: &str) -> VpcSecurityGroupMembership {
    VpcSecurityGroupMembership::builder()
        .vpc_security_group_id(id)
        .status(status)
        .build()
}

#[test]
fn an_instance_as_its_spec_says_has_an_empty_diff() {
    let context = Context::named(Some(IDENTIFIER));
    let delta = diff(
        &object(),
        &context,
        &instance("available").build(),
        &uid_tag(),
        false,
    );
    assert_eq!(delta, DBInstanceDelta::default());
    assert!(delta.is_empty());
}

#[test]
fn each_field_rds_reports_otherwise_sets_exactly_its_flag() {
    let mut object = object();
    object.spec.multi_az = Some(false);
    object.spec.publicly_accessible = Some(false);
    object.spec.deletion_protection = Some(true);
    let matching = || {
        instance("available")
            .multi_az(false)
            .publicly_accessible(false)
            .deletion_protection(true)
    };
    let context = Context::named(Some(IDENTIFIER));
    let delta = |instance: DbInstance, password_differs| {
        diff(&object, &context, &instance, &uid_tag(), password_differs)
    };
    assert!(delta(matching().build(), false).is_empty());

    let only = |set: fn(&mut DBInstanceDelta)| {
        let mut delta = DBInstanceDelta::default();
        set(&mut delta);
        delta
    };
    let cases = [
        (
            matching().engine_version("15.7"),
            only(|d| d.engine_version = true),
        ),
        // `16` matches `16.3`, but not `160.1`: versions match on dot boundaries.
        (
            matching().engine_version("160.1"),
            only(|d| d.engine_version = true),
        ),
        (
            matching().db_instance_class("db.t3.micro"),
            only(|d| d.instance_class = true),
        ),
        (
            matching().allocated_storage(50),
            only(|d| d.allocated_storage = true),
        ),
        (matching().multi_az(true), only(|d| d.multi_az = true)),
        (
            matching().publicly_accessible(true),
            only(|d| d.publicly_accessible = true),
        ),
        (
            matching().backup_retention_period(1),
            only(|d| d.backup_retention_days = true),
        ),
        (
            matching().deletion_protection(false),
            only(|d| d.deletion_protection = true),
        ),
    ];
    for (instance, expected) in cases {
        assert_eq!(delta(instance.build(), false), expected);
    }
    // The password is not in what RDS describes: the diff takes what reading it found.
    assert_eq!(
        delta(matching().build(), true),
        only(|d| d.master_password = true)
    );
}

#[test]
fn fields_the_spec_leaves_to_aws_are_no_difference() {
    let mut object = object();
    object.spec.engine_version = None;
    object.spec.allocated_storage_gib = None;
    object.spec.backup_retention_days = None;
    let instance = instance("available")
        .engine_version("15.7")
        .allocated_storage(100)
        .backup_retention_period(1)
        .multi_az(true)
        .publicly_accessible(true)
        .deletion_protection(true)
        .vpc_security_groups(membership("sg-0aaa", "active"))
        .build();
    let context = Context::named(Some(IDENTIFIER));
    let delta = diff(&object, &context, &instance, &uid_tag(), false);
    assert!(delta.is_empty(), "{:?}", delta.describe());
}

#[test]
fn security_groups_are_the_ids_and_resolved_references_and_removals_do_not_count() {
    let mut object = object();
    object.spec.vpc_security_group_ids = vec!["sg-0aaa".into()];
    object.spec.vpc_security_group_refs = vec![LocalReference { name: "db".into() }];
    let references = BTreeMap::from([("vpcSecurityGroupRefs[0]".to_owned(), "sg-0bbb".to_owned())]);
    let context = Context {
        references: &references,
        ..Context::named(Some(IDENTIFIER))
    };
    let joined = instance("available")
        .vpc_security_groups(membership("sg-0aaa", "active"))
        .vpc_security_groups(membership("sg-0bbb", "adding"))
        .vpc_security_groups(membership("sg-0old", "removing"))
        .build();
    let delta = diff(&object, &context, &joined, &uid_tag(), false);
    assert!(delta.is_empty(), "{:?}", delta.describe());

    let without_the_reference = instance("available")
        .vpc_security_groups(membership("sg-0aaa", "active"))
        .build();
    let delta = diff(&object, &context, &without_the_reference, &uid_tag(), false);
    assert_eq!(delta.describe(), ["vpcSecurityGroupIds"]);
}

#[test]
fn a_tag_tether_applied_and_the_spec_dropped_is_a_difference_others_tags_are_not() {
    let object = object();
    let instance = instance("available").build();
    let (on_rds, applied) = a_dropped_tag(UID);
    let context = Context {
        applied_tags: &applied,
        ..Context::named(Some(IDENTIFIER))
    };
    let delta = diff(&object, &context, &instance, &on_rds, false);
    assert_eq!(delta.describe(), ["tags"]);

    let never_applied = Context::named(Some(IDENTIFIER));
    let delta = diff(&object, &never_applied, &instance, &on_rds, false);
    assert!(delta.is_empty(), "{:?}", delta.describe());

    let untagged = diff(&object, &never_applied, &instance, &BTreeMap::new(), false);
    assert_eq!(untagged.describe(), ["tags"], "the UID tag is missing");
}

/// A context for a routine poll: a snapshot up to 10 minutes old may answer.
fn routine<'a>(published: &'a ConnectionDetails) -> Context<'a> {
    Context {
        freshness: Freshness::Shared(Duration::from_secs(600)),
        ..context(published, false)
    }
}

#[tokio::test]
async fn a_lone_database_is_read_directly_two_share_a_listing_and_one_it_lacks_is_read() {
    const FOREIGN: &str = "someone-elses";
    let listing = mock!(aws_sdk_rds::Client::describe_db_instances)
        .match_requests(|request| request.db_instance_identifier().is_none())
        .then_output(|| {
            DescribeDbInstancesOutput::builder()
                .db_instances(instance("available").build())
                // Not tether's (no UID tag): never kept in the snapshot.
                .db_instances(
                    instance("available")
                        .db_instance_identifier(FOREIGN)
                        .set_tag_list(None)
                        .build(),
                )
                .build()
        });
    let direct = mock!(aws_sdk_rds::Client::describe_db_instances)
        .match_requests(|request| request.db_instance_identifier() == Some(FOREIGN))
        .then_output(|| {
            described(
                instance("available")
                    .db_instance_identifier(FOREIGN)
                    .set_tag_list(None)
                    .build(),
            )
        });
    let own_direct = mock!(aws_sdk_rds::Client::describe_db_instances)
        .match_requests(|request| request.db_instance_identifier() == Some(IDENTIFIER))
        .then_output(|| described(instance("available").build()));
    let client = client(&[&listing, &direct, &own_direct]);
    let calls = || {
        (
            listing.num_calls(),
            direct.num_calls(),
            own_direct.num_calls(),
        )
    };
    let nothing = ConnectionDetails::default();
    for _ in 0..3 {
        let observed = exists(client.observe(&object(), routine(&nothing)).await.unwrap());
        assert_eq!(observed.owner_uid.as_deref(), Some(UID));
    }
    assert_eq!(
        calls(),
        (0, 0, 1),
        "alone, it is read directly once, then answered by what that read saw"
    );

    let foreign = Context {
        external_name: Some(FOREIGN),
        ..routine(&nothing)
    };
    for _ in 0..2 {
        let observed = exists(client.observe(&object(), foreign).await.unwrap());
        assert_eq!(observed.owner_uid, None, "the foreign database as it is");
    }
    assert_eq!(
        calls(),
        (1, 1, 1),
        "a second object asks: one listing, which lacks the foreign database (no UID \
         tag), so that is read directly once"
    );

    let new_object = exists(
        client
            .observe(&object(), context(&nothing, false))
            .await
            .unwrap(),
    );
    assert_eq!(new_object.owner_uid.as_deref(), Some(UID));
    assert_eq!(
        calls(),
        (1, 1, 2),
        "a zero freshness reads directly, whatever the snapshot holds"
    );
}

#[tokio::test]
async fn an_rds_managed_password_is_read_again_only_when_its_version_changes() {
    let describe = with_managed_secret();
    let versions = |current: &'static str| {
        move || {
            ListSecretsOutput::builder()
                .secret_list(
                    SecretListEntry::builder()
                        .arn(ARN)
                        .secret_versions_to_stages(current, vec!["AWSCURRENT".to_owned()])
                        .secret_versions_to_stages("older", vec!["AWSPREVIOUS".to_owned()])
                        .build(),
                )
                .build()
        }
    };
    let list = mock!(aws_sdk_secretsmanager::Client::list_secrets)
        .match_requests(|request| {
            request
                .filters()
                .iter()
                .any(|filter| filter.values() == ["rds"])
        })
        .sequence()
        .output(versions("v1"))
        .output(versions("v2"))
        .build();
    let read = mock!(aws_sdk_secretsmanager::Client::get_secret_value)
        .sequence()
        .output(|| {
            GetSecretValueOutput::builder()
                .version_id("v1")
                .secret_string(r#"{"username":"app_admin","password":"first"}"#)
                .build()
        })
        .output(|| {
            GetSecretValueOutput::builder()
                .version_id("v2")
                .secret_string(r#"{"username":"app_admin","password":"rotated"}"#)
                .build()
        })
        .build();
    let client = client_with_secrets(&[&describe], &[&list, &read]);
    let mut object = object();
    object.spec.manage_master_user_password = Some(true);
    let nothing = ConnectionDetails::default();
    let password = |observed: &ObservedOf<DBInstance>| {
        String::from_utf8(observed.connection.0["password"].clone()).unwrap()
    };
    let polls = Context {
        freshness: Freshness::Shared(Duration::from_millis(200)),
        ..context(&nothing, false)
    };
    // Another database's secret was asked for a moment ago: a listing of versions now
    // costs no more than reading each.
    let other = client
        .secret_versions
        .lookup("arn:other", polls.freshness, || async {
            Err::<Listing<String>, ()>(())
        })
        .await;
    assert_eq!(other, Ok(Known::Unknown));
    for _ in 0..3 {
        let observed = exists(client.observe(&object, polls).await.unwrap());
        assert_eq!(password(&observed), "first");
    }
    assert_eq!(
        (list.num_calls(), read.num_calls()),
        (1, 1),
        "one listing of versions, one read of the value"
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    let observed = exists(client.observe(&object, polls).await.unwrap());
    assert_eq!(password(&observed), "rotated");
    assert_eq!(
        read.num_calls(),
        2,
        "RDS rotated it: the new version is read once (found by a new listing, or by \
         reading it directly when a lone secret's read is quicker than a listing)"
    );
    assert!(list.num_calls() <= 2);
}
