//! Observations served by the shared snapshots: one listing for many databases, a managed password read again only on a new version.

use super::*;

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

/// An instance with every field tether reads set.
fn fully_read() -> aws_sdk_rds::types::builders::DbInstanceBuilder {
    instance("modifying")
        .multi_az(true)
        .publicly_accessible(false)
        .deletion_protection(true)
        .endpoint(
            Endpoint::builder()
                .address("orders.example")
                .port(5432)
                .build(),
        )
        .master_user_secret(
            MasterUserSecret::builder()
                .secret_arn("arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!db-1")
                .build(),
        )
        .vpc_security_groups(
            VpcSecurityGroupMembership::builder()
                .vpc_security_group_id("sg-1")
                .status("active")
                .build(),
        )
        .pending_modified_values(
            PendingModifiedValues::builder()
                .engine_version("16.4")
                .db_instance_class("db.t3.large")
                .allocated_storage(50)
                .multi_az(false)
                .backup_retention_period(1)
                .build(),
        )
}

#[test]
fn the_snapshot_keeps_every_field_tether_reads_and_nothing_else() {
    let read = fully_read().build();
    assert_eq!(DbInstance::from(KeptInstance::from(&read)), read);
    let described = fully_read()
        .preferred_backup_window("03:00-04:00")
        .availability_zone("us-east-1a")
        .ca_certificate_identifier("rds-ca-rsa2048-g1")
        .build();
    assert_eq!(
        DbInstance::from(KeptInstance::from(&described)),
        read,
        "the fields tether never reads are dropped"
    );
}
