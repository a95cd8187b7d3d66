//! The EC2 calls, against the SDK's mocks.

use super::*;

#[tokio::test]
async fn a_generated_key_gone_from_the_secret_is_reported_not_ready() {
    let running = || by_uid(vec![instance(ID, InstanceStateName::Running).build()]);
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
    let references = BTreeMap::from([("securityGroupRefs[0]".to_owned(), "sg-0def".to_owned())]);
    let context = Context::named(Some(ID)).with_references(&references);
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
    assert!(super::client::observed(&object, &context, &matching).is_up_to_date());

    // No groups in the spec: tether does not manage them.
    object.spec.security_group_ids.clear();
    object.spec.security_group_refs.clear();
    object.spec.instance_type = "t3.small".into();
    let stopping = instance(ID, InstanceStateName::Stopping).build();
    let observed = super::client::observed(&object, &Context::named(Some(ID)), &stopping);
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
    let describe = by_uid(vec![
        instance(ID, InstanceStateName::Stopped)
            .tags(
                Tag::builder()
                    .key(RESTART_TAG)
                    .value("instanceType")
                    .build(),
            )
            .build(),
    ]);
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
    let untag =
        mock!(aws_sdk_ec2::Client::delete_tags).then_output(|| DeleteTagsOutput::builder().build());
    in_order(&[&start, &untag])
        .update(&object, context, &observed)
        .await
        .unwrap();

    let user_stopped = instance(ID, InstanceStateName::Stopped).build();
    let observed = super::client::observed(&object, &context, &user_stopped);
    assert!(observed.is_up_to_date());
    assert_eq!(
        observed.readiness,
        Readiness::NotReady {
            reason: "Stopped".into(),
            message: "the instance is stopped; tether does not start an instance it did not stop"
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
    let references = BTreeMap::from([("securityGroupRefs[0]".to_owned(), "sg-0aaa".to_owned())]);
    let context = Context::named(Some(ID)).with_references(&references);
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
                && request.public_key_material().map(|b| b.as_ref()) == Some(public_key.as_bytes())
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
    let run = mock!(aws_sdk_ec2::Client::run_instances)
        .then_error(|| RunInstancesError::generic(error("InvalidParameterValue", "bad user data")));
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
fn the_snapshot_keeps_every_field_tether_reads_and_nothing_else() {
    let read = instance(ID, InstanceStateName::Running)
        .key_name(KEY_PAIR)
        .build();
    assert_eq!(Ec2Instance::from(KeptInstance::from(&read)), read);
    let described = instance(ID, InstanceStateName::Running)
        .key_name(KEY_PAIR)
        .ami_launch_index(0)
        .architecture(aws_sdk_ec2::types::ArchitectureValues::X8664)
        .root_device_name("/dev/xvda")
        .build();
    assert_eq!(
        Ec2Instance::from(KeptInstance::from(&described)),
        read,
        "the fields tether never reads are dropped"
    );
}

#[test]
fn of_two_instances_with_the_uid_the_recorded_one_is_kept_and_the_other_is_a_duplicate() {
    let launched = |id: &str, seconds: i64| {
        instance(id, InstanceStateName::Running)
            .launch_time(DateTime::from_secs(seconds))
            .build()
    };
    let found = || vec![launched("i-late", 200), launched("i-early", 100)];
    let ids = |(instance, duplicates): (Ec2Instance, Vec<String>)| {
        (instance.instance_id().unwrap().to_owned(), duplicates)
    };
    assert_eq!(
        the_one(found(), Some("i-late")).map(ids),
        Some(("i-late".to_owned(), vec!["i-early".to_owned()])),
        "the recorded one, whenever launched"
    );
    assert_eq!(
        the_one(found(), None).map(ids),
        Some(("i-early".to_owned(), vec!["i-late".to_owned()])),
        "nothing recorded: the earliest launched"
    );
    assert_eq!(
        the_one(vec![launched("i-1", 1)], Some("i-1")).map(ids),
        Some(("i-1".to_owned(), vec![]))
    );
    assert!(the_one(Vec::new(), Some("i-1")).is_none());
}
