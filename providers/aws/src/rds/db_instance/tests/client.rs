//! The RDS and Secrets Manager calls, against the SDK's mocks.

use super::*;

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
    assert_eq!(error.class, ErrorClass::Waiting, "{error:?}");
}

#[tokio::test]
async fn an_object_being_deleted_is_observed_without_its_password_secret() {
    let describe = mock!(aws_sdk_rds::Client::describe_db_instances)
        .then_output(|| described(instance("available").build()));
    // The runtime reads no Secret for an object being deleted: the context has none.
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
async fn a_users_password_is_the_value_the_runtime_read_and_a_new_one_is_applied() {
    let describe = mock!(aws_sdk_rds::Client::describe_db_instances)
        .then_output(|| described(with_endpoint(instance("available")).build()));
    let modify = mock!(aws_sdk_rds::Client::modify_db_instance)
        .match_requests(|request| request.master_user_password() == Some("users-new-pw"))
        .then_output(|| ModifyDbInstanceOutput::builder().build());
    let client = client(&[&describe, &modify]);
    let mut object = object();
    object.spec.master_password = Some(user_password());
    let read = |value: &str| {
        SecretValues::from([(
            MASTER_PASSWORD_REF.to_owned(),
            SecretValue::from(value.to_owned()),
        )])
    };
    let published = published("users-pw");

    let same = read("users-pw");
    let at = Context {
        secrets: &same,
        ..context(&published, false)
    };
    let settled = exists(client.observe(&object, at).await.unwrap());
    assert!(settled.is_up_to_date(), "{:?}", settled.delta.describe());

    let changed = read("users-new-pw");
    let at = Context {
        secrets: &changed,
        ..context(&published, false)
    };
    let observed = exists(client.observe(&object, at).await.unwrap());
    assert_eq!(observed.delta.describe(), ["masterPassword"]);
    assert_eq!(observed.connection.0[PASSWORD_KEY], b"users-new-pw");
    client.update(&object, at, &observed).await.unwrap();
    assert_eq!(modify.num_calls(), 1);

    let unread = client
        .observe(&object, context(&published, false))
        .await
        .expect_err("the runtime read no value");
    assert_eq!(unread.class, ErrorClass::Terminal);
    assert!(unread.message.contains(MASTER_PASSWORD_REF), "{unread}");
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
    let at = context(&secret, true).with_references(&references);
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
                .meta(testing::error(
                    "InvalidDBInstanceState",
                    "Instance shop-orders is already being deleted.",
                ))
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
    assert_eq!(error.class, ErrorClass::Waiting);
    assert_eq!(
        client.delete(&object, at, DeletionPolicy::Snapshot).await,
        Ok(None),
        "gone"
    );
}

#[tokio::test]
async fn deletion_protection_is_turned_off_first_only_when_the_spec_says_so() {
    let protected = || {
        DeleteDBInstanceError::generic(testing::error(
            "InvalidParameterCombination",
            "Cannot delete protected DB Instance, please disable deletion protection and try again.",
        ))
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
