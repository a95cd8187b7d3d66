//! The EC2 calls (observe, update, partly made changes, create, delete), against the SDK's mocks.

use super::*;

// Observe.

#[tokio::test]
async fn an_adopted_group_is_described_by_its_id() {
    let describe = by_id(GROUP, vec![group(declared_ingress(), all_out())]);
    let uid = by_uid(Vec::new());
    let client = client(&[&describe, &uid]);
    let observed = exists(
        client
            .observe(&object(), Context::named(Some(GROUP)))
            .await
            .unwrap(),
    );
    assert_eq!(observed.external_name.as_deref(), Some(GROUP));
    assert!(observed.is_up_to_date(), "{:?}", observed.delta.describe());
    assert_eq!(observed.readiness, Readiness::Ready);
    let at = &observed.at_provider;
    assert_eq!(at.group_id, GROUP);
    assert_eq!(at.arn.as_deref(), Some(ARN));
    assert_eq!(at.group_name.as_deref(), Some("shop-web"));
    assert_eq!(at.vpc_id.as_deref(), Some("vpc-0a"));
    assert_eq!(at.ingress, [tcp(22, "10.0.0.0/8")]);
    assert_eq!(at.egress, [all_traffic("0.0.0.0/0")]);
    assert_eq!((describe.num_calls(), uid.num_calls()), (1, 0));
}

#[tokio::test]
async fn a_group_not_found_by_its_id_is_looked_up_by_the_uid_tag() {
    let gone = not_found_by_id(OLD_GROUP);
    let uid = by_uid(vec![group(declared_ingress(), all_out())]);
    let client = client(&[&gone, &uid]);
    let observed = exists(
        client
            .observe(&object(), Context::named(Some(OLD_GROUP)))
            .await
            .unwrap(),
    );
    assert_eq!(observed.external_name.as_deref(), Some(GROUP));
    assert_eq!((gone.num_calls(), uid.num_calls()), (1, 1));
}

#[tokio::test]
async fn nothing_found_by_id_or_tag_is_missing() {
    let gone = not_found_by_id(OLD_GROUP);
    let none = by_uid(Vec::new());
    let client = client(&[&gone, &none]);
    let object = object();
    assert_eq!(
        client
            .observe(&object, Context::named(Some(OLD_GROUP)))
            .await,
        Ok(Observation::Missing)
    );
    assert_eq!(
        client.observe(&object, Context::named(None)).await,
        Ok(Observation::Missing)
    );
    assert_eq!(none.num_calls(), 2);
}

#[tokio::test]
async fn a_mistyped_group_id_is_an_error_not_a_missing_group() {
    let malformed = mock!(aws_sdk_ec2::Client::describe_security_groups)
        .match_requests(|request| request.group_ids() == ["sg-nope"])
        .then_error(|| {
            DescribeSecurityGroupsError::generic(error(
                "InvalidGroupId.Malformed",
                "Invalid id: \"sg-nope\"",
            ))
        });
    let uid = by_uid(Vec::new());
    let client = client(&[&malformed, &uid]);
    let error = client
        .observe(&object(), Context::named(Some("sg-nope")))
        .await
        .expect_err("malformed");
    assert_eq!(error.class, ErrorClass::Terminal);
    assert_eq!(error.code.as_deref(), Some("InvalidGroupId.Malformed"));
    assert_eq!(uid.num_calls(), 0, "no fallback that would create a group");
}

#[tokio::test]
async fn a_rule_removed_by_hand_is_reported_as_ingress_add() {
    let observed = observe(&object(), group(Vec::new(), all_out())).await;
    assert_eq!(
        observed.delta.describe(),
        ["ingress: add tcp 22 from 10.0.0.0/8"]
    );
}

#[test]
fn while_a_peer_is_unresolved_no_rule_with_a_peer_group_is_removed() {
    let desired = BTreeSet::from([tcp(443, "10.0.0.0/8"), tcp(5432, "sg-0aaa")]);
    let actual = [
        tcp(5432, "sg-0aaa"),
        tcp(8080, "sg-0bbb"),
        tcp(22, "0.0.0.0/0"),
    ];
    let complete = RuleChanges::between(&desired, &actual, false);
    assert_eq!(complete.add, [tcp(443, "10.0.0.0/8")]);
    assert_eq!(
        complete.remove,
        [tcp(22, "0.0.0.0/0"), tcp(8080, "sg-0bbb")]
    );
    // sg-0bbb may be the peer not resolved yet: it stays; the CIDR rule goes.
    let partial = RuleChanges::between(&desired, &actual, true);
    assert_eq!(partial.add, [tcp(443, "10.0.0.0/8")]);
    assert_eq!(partial.remove, [tcp(22, "0.0.0.0/0")]);
}

#[tokio::test]
async fn rules_added_by_hand_are_reported_as_removals() {
    let mut ingress = declared_ingress();
    ingress.push(permission("tcp", Some(3389), Some(3389), "0.0.0.0/0"));
    let mut egress = all_out();
    egress.push(permission("udp", Some(53), Some(53), "8.8.8.8/32"));
    let observed = observe(&object(), group(ingress, egress)).await;
    assert_eq!(
        observed.delta.describe(),
        [
            "ingress: remove tcp 3389 from 0.0.0.0/0",
            "egress: remove udp 53 to 8.8.8.8/32",
        ]
    );
}

#[tokio::test]
async fn an_emptied_egress_reports_the_default_rule_for_removal() {
    let mut object = object();
    object.spec.egress.clear();
    object.spec.ingress.clear();
    let observed = observe(&object, group(declared_ingress(), all_out())).await;
    assert_eq!(
        observed.delta.describe(),
        [
            "ingress: remove tcp 22 from 10.0.0.0/8",
            "egress: remove all traffic to 0.0.0.0/0",
        ]
    );
}

#[tokio::test]
async fn a_missing_tag_is_a_tags_difference_and_extra_tags_are_fine() {
    let mut object = object();
    object.spec.tags = BTreeMap::from([("team".into(), "shop".into())]);
    let observed = observe(&object, group(declared_ingress(), all_out())).await;
    assert_eq!(observed.delta.describe(), ["tags"]);

    let mut tagged = group(declared_ingress(), all_out());
    tagged.tags = Some(vec![
        Tag::builder().key(UID_TAG).value(UID).build(),
        Tag::builder().key("team").value("shop").build(),
        Tag::builder().key("aws:owner").value("x").build(),
    ]);
    let observed = observe(&object, tagged).await;
    assert!(observed.is_up_to_date(), "{:?}", observed.delta.describe());
}

#[tokio::test]
async fn aws_spellings_of_all_traffic_and_icmp_match_the_spec() {
    let mut object = object();
    object.spec.ingress = vec![
        SecurityGroupRule {
            cidr_blocks: vec!["10.0.0.0/8".into()],
            ..spec_rule(Protocol::Icmp, Some((8, -1)))
        },
        SecurityGroupRule {
            security_group_ids: vec!["sg-0aaa".into()],
            ..spec_rule(Protocol::All, None)
        },
    ];
    object.spec.egress = vec![SecurityGroupRule {
        cidr_blocks: vec!["0.0.0.0/0".into()],
        ipv6_cidr_blocks: vec!["::/0".into()],
        ..spec_rule(Protocol::All, None)
    }];
    let ingress = vec![
        permission("1", Some(8), Some(-1), "10.0.0.0/8"),
        IpPermission::builder()
            .ip_protocol("-1")
            .from_port(-1)
            .to_port(-1)
            .user_id_group_pairs(
                UserIdGroupPair::builder()
                    .group_id("sg-0aaa")
                    .user_id("123456789012")
                    .build(),
            )
            .build(),
    ];
    let egress = vec![
        permission("-1", Some(-1), Some(-1), "0.0.0.0/0"),
        IpPermission::builder()
            .ip_protocol("-1")
            .ipv6_ranges(Ipv6Range::builder().cidr_ipv6("::/0").build())
            .build(),
    ];
    let observed = observe(&object, group(ingress, egress)).await;
    assert!(observed.is_up_to_date(), "{:?}", observed.delta.describe());
}

// Update.

#[tokio::test]
async fn update_adds_missing_rules_before_removing_extra_ones_and_sends_only_those() {
    let mut object = object();
    object.spec.ingress = vec![tcp_from(22, &["10.0.0.0/8"]), tcp_from(443, &["0.0.0.0/0"])];
    object.spec.egress = vec![
        tcp_from(443, &["0.0.0.0/0"]),
        SecurityGroupRule {
            security_group_refs: refs(&["db"]),
            ..spec_rule(Protocol::Tcp, Some((5432, 5432)))
        },
    ];
    let references = BTreeMap::from([(
        "egress[1].securityGroupRefs[0]".to_owned(),
        "sg-0db".to_owned(),
    )]);
    let context = Context::named(Some(GROUP)).with_references(&references);
    let observed = observation(
        vec![tcp(22, "10.0.0.0/8"), tcp(3389, "0.0.0.0/0")],
        vec![tcp(443, "0.0.0.0/0"), all_traffic("0.0.0.0/0")],
        // update converges the rules from what AWS holds, whatever the delta says.
        false,
    );

    let authorize_in = mock!(aws_sdk_ec2::Client::authorize_security_group_ingress)
        .match_requests(|request| {
            request.group_id() == Some(GROUP)
                && carried(request.ip_permissions()) == [tcp(443, "0.0.0.0/0")]
        })
        .then_output(|| AuthorizeSecurityGroupIngressOutput::builder().build());
    let revoke_in = mock!(aws_sdk_ec2::Client::revoke_security_group_ingress)
        .match_requests(|request| {
            request.group_id() == Some(GROUP)
                && carried(request.ip_permissions()) == [tcp(3389, "0.0.0.0/0")]
        })
        .then_output(|| RevokeSecurityGroupIngressOutput::builder().build());
    let authorize_out = mock!(aws_sdk_ec2::Client::authorize_security_group_egress)
        .match_requests(|request| {
            request.group_id() == Some(GROUP)
                && carried(request.ip_permissions()) == [tcp(5432, "sg-0db")]
        })
        .then_output(|| AuthorizeSecurityGroupEgressOutput::builder().build());
    let revoke_out = mock!(aws_sdk_ec2::Client::revoke_security_group_egress)
        .match_requests(|request| {
            request.group_id() == Some(GROUP)
                && carried(request.ip_permissions()) == [all_traffic("0.0.0.0/0")]
        })
        .then_output(|| RevokeSecurityGroupEgressOutput::builder().build());
    let client = in_order(&[&authorize_in, &revoke_in, &authorize_out, &revoke_out]);
    client.update(&object, context, &observed).await.unwrap();
    for (call, rule) in [
        ("authorize ingress", &authorize_in),
        ("revoke ingress", &revoke_in),
        ("authorize egress", &authorize_out),
        ("revoke egress", &revoke_out),
    ] {
        assert_eq!(rule.num_calls(), 1, "{call}");
    }
}

#[tokio::test]
async fn tags_are_written_only_when_they_differ() {
    let mut object = object();
    object.spec.tags = BTreeMap::from([("team".into(), "shop".into())]);
    let tags = mock!(aws_sdk_ec2::Client::create_tags)
        .match_requests(|request| {
            let tags = tag_map(request.tags());
            request.resources() == [GROUP]
                && tags.get(UID_TAG).map(String::as_str) == Some(UID)
                && tags.get("team").map(String::as_str) == Some("shop")
        })
        .then_output(|| CreateTagsOutput::builder().build());
    let client = client(&[&tags]);
    let declared = || (vec![tcp(22, "10.0.0.0/8")], vec![all_traffic("0.0.0.0/0")]);

    let (ingress, egress) = declared();
    client
        .update(
            &object,
            Context::named(Some(GROUP)),
            &observation(ingress, egress, true),
        )
        .await
        .unwrap();
    assert_eq!(tags.num_calls(), 1);

    let (ingress, egress) = declared();
    client
        .update(
            &object,
            Context::named(Some(GROUP)),
            &observation(ingress, egress, false),
        )
        .await
        .unwrap();
    assert_eq!(tags.num_calls(), 1, "no tag call, and no rule call");
}

// Partly made changes.

#[tokio::test]
async fn a_duplicate_in_a_batch_is_retried_one_rule_at_a_time() {
    let duplicate = || {
        AuthorizeSecurityGroupIngressError::generic(error(
            "InvalidPermission.Duplicate",
            "the specified rule already exists",
        ))
    };
    let (ssh, https) = (tcp(22, "10.0.0.0/8"), tcp(443, "0.0.0.0/0"));
    let carries = |rules: Vec<ObservedRule>| {
        move |request: &aws_sdk_ec2::operation::authorize_security_group_ingress::AuthorizeSecurityGroupIngressInput| {
            request.group_id() == Some(GROUP) && carried(request.ip_permissions()) == rules
        }
    };
    let batch = mock!(aws_sdk_ec2::Client::authorize_security_group_ingress)
        .match_requests(carries(vec![ssh.clone(), https.clone()]))
        .then_error(duplicate);
    let ssh_alone = mock!(aws_sdk_ec2::Client::authorize_security_group_ingress)
        .match_requests(carries(vec![ssh.clone()]))
        .then_error(duplicate);
    let https_alone = mock!(aws_sdk_ec2::Client::authorize_security_group_ingress)
        .match_requests(carries(vec![https.clone()]))
        .then_output(|| AuthorizeSecurityGroupIngressOutput::builder().build());
    let client = client(&[&batch, &ssh_alone, &https_alone]);
    client
        .change(
            GROUP,
            Direction::Ingress,
            Change::Add,
            &[ssh.clone(), https.clone()],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            batch.num_calls(),
            ssh_alone.num_calls(),
            https_alone.num_calls()
        ),
        (1, 1, 1)
    );

    // A single rule that is already there is done.
    client
        .change(
            GROUP,
            Direction::Ingress,
            Change::Add,
            std::slice::from_ref(&ssh),
        )
        .await
        .unwrap();
    assert_eq!(ssh_alone.num_calls(), 2);
    assert_eq!(batch.num_calls(), 1);
}

#[tokio::test]
async fn a_rule_already_revoked_counts_as_removed() {
    let not_found = || {
        RevokeSecurityGroupEgressError::generic(error(
            "InvalidPermission.NotFound",
            "The specified rule does not exist in this security group.",
        ))
    };
    let (dns, all) = (
        rule("udp", Some((53, 53)), "8.8.8.8/32"),
        all_traffic("0.0.0.0/0"),
    );
    let batch = mock!(aws_sdk_ec2::Client::revoke_security_group_egress)
        .match_requests(|request| request.ip_permissions().len() == 2)
        .then_error(not_found);
    let dns_alone = mock!(aws_sdk_ec2::Client::revoke_security_group_egress)
        .match_requests(|request| {
            carried(request.ip_permissions()) == [rule("udp", Some((53, 53)), "8.8.8.8/32")]
        })
        .then_error(not_found);
    let all_alone = mock!(aws_sdk_ec2::Client::revoke_security_group_egress)
        .match_requests(|request| carried(request.ip_permissions()) == [all_traffic("0.0.0.0/0")])
        .then_output(|| RevokeSecurityGroupEgressOutput::builder().build());
    let client = client(&[&batch, &dns_alone, &all_alone]);
    client
        .change(
            GROUP,
            Direction::Egress,
            Change::Remove,
            &[dns.clone(), all],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            batch.num_calls(),
            dns_alone.num_calls(),
            all_alone.num_calls()
        ),
        (1, 1, 1)
    );
    client
        .change(GROUP, Direction::Egress, Change::Remove, &[dns])
        .await
        .unwrap();
    assert_eq!(dns_alone.num_calls(), 2);
}

#[tokio::test]
async fn other_errors_are_returned_with_their_class() {
    let limit = mock!(aws_sdk_ec2::Client::authorize_security_group_ingress)
        .match_requests(|request| request.ip_permissions().len() == 2)
        .then_error(|| {
            AuthorizeSecurityGroupIngressError::generic(error(
                "RulesPerSecurityGroupLimitExceeded",
                "The maximum number of rules per security group has been reached.",
            ))
        });
    let client = client(&[&limit]);
    let error = client
        .change(
            GROUP,
            Direction::Ingress,
            Change::Add,
            &[tcp(22, "10.0.0.0/8"), tcp(443, "0.0.0.0/0")],
        )
        .await
        .expect_err("over the limit");
    assert_eq!(error.class, ErrorClass::Terminal);
    assert_eq!(
        error.code.as_deref(),
        Some("RulesPerSecurityGroupLimitExceeded")
    );
    assert_eq!(
        error.message,
        "The maximum number of rules per security group has been reached."
    );
    assert_eq!(limit.num_calls(), 1, "no retry one rule at a time");

    // A revoke answered with an add's "already done" code is an error.
    let odd = mock!(aws_sdk_ec2::Client::revoke_security_group_egress).then_error(|| {
        RevokeSecurityGroupEgressError::generic(self::error(
            "InvalidPermission.Duplicate",
            "the specified rule already exists",
        ))
    });
    let client = self::client(&[&odd]);
    let refused = client
        .change(
            GROUP,
            Direction::Egress,
            Change::Remove,
            &[all_traffic("0.0.0.0/0")],
        )
        .await
        .expect_err("not a revoke's already done");
    assert_eq!(refused.code.as_deref(), Some("InvalidPermission.Duplicate"));
}

#[tokio::test]
async fn an_error_while_retrying_one_rule_at_a_time_is_returned() {
    let batch = mock!(aws_sdk_ec2::Client::authorize_security_group_ingress)
        .match_requests(|request| request.ip_permissions().len() == 2)
        .then_error(|| {
            AuthorizeSecurityGroupIngressError::generic(error(
                "InvalidPermission.Duplicate",
                "the specified rule already exists",
            ))
        });
    let single = mock!(aws_sdk_ec2::Client::authorize_security_group_ingress)
        .match_requests(|request| request.ip_permissions().len() == 1)
        .then_error(|| {
            AuthorizeSecurityGroupIngressError::generic(error(
                "InvalidGroup.NotFound",
                "The security group does not exist",
            ))
        });
    let client = client(&[&batch, &single]);
    let error = client
        .change(
            GROUP,
            Direction::Ingress,
            Change::Add,
            &[tcp(22, "10.0.0.0/8"), tcp(443, "0.0.0.0/0")],
        )
        .await
        .expect_err("the group is gone");
    assert_eq!(error.code.as_deref(), Some("InvalidGroup.NotFound"));
    assert_eq!(single.num_calls(), 1, "stops at the first real error");
}

// Create.

/// CreateSecurityGroup answering that the name is taken.
fn create_duplicate() -> Rule {
    mock!(aws_sdk_ec2::Client::create_security_group).then_error(|| {
        CreateSecurityGroupError::generic(error(
            "InvalidGroup.Duplicate",
            "The security group 'shop-web-0c9f3a1e5b' already exists for VPC 'vpc-0a'",
        ))
    })
}

/// DescribeSecurityGroups by the derived name in the object's VPC, answering `groups`.
fn by_name(groups: Vec<Ec2Group>) -> Rule {
    mock!(aws_sdk_ec2::Client::describe_security_groups)
        .match_requests(|request| {
            let filter = |name: &str, value: &str| {
                request
                    .filters()
                    .iter()
                    .any(|f| f.name() == Some(name) && f.values() == [value])
            };
            filter("group-name", "shop-web-0c9f3a1e5b") && filter("vpc-id", "vpc-0a")
        })
        .then_output(move || described(groups.clone()))
}

#[tokio::test]
async fn a_duplicate_name_of_our_own_group_finds_it_instead_of_failing() {
    let (create, find) = (create_duplicate(), by_name(vec![group(vec![], all_out())]));
    let created = in_order(&[&create, &find])
        .create(&object(), Context::named(None))
        .await
        .expect("the group a lost read hid is this object's");
    assert_eq!(created.external_name.as_deref(), Some(GROUP));
}

#[tokio::test]
async fn a_duplicate_name_of_someone_elses_group_is_refused_and_a_hidden_one_waited_for() {
    let mut theirs = group(vec![], all_out());
    theirs.tags = Some(vec![Tag::builder().key(UID_TAG).value("another").build()]);
    let (create, find) = (create_duplicate(), by_name(vec![theirs]));
    let refused = in_order(&[&create, &find])
        .create(&object(), Context::named(None))
        .await
        .expect_err("someone else's group");
    assert_eq!(refused.class, ErrorClass::Terminal);
    assert_eq!(refused.code.as_deref(), Some("InvalidGroup.Duplicate"));
    assert!(
        refused.message.contains("was not created by this object"),
        "{}",
        refused.message
    );

    let (create, find) = (create_duplicate(), by_name(vec![]));
    let hidden = in_order(&[&create, &find])
        .create(&object(), Context::named(None))
        .await
        .expect_err("not visible yet");
    assert_eq!(hidden.class, ErrorClass::Waiting);
}

#[tokio::test]
async fn create_names_describes_and_tags_the_group_then_authorizes_its_ingress() {
    let create = mock!(aws_sdk_ec2::Client::create_security_group)
        .match_requests(|request| {
            request.group_name() == Some("shop-web-0c9f3a1e5b")
                && request.description() == Some("web servers")
                && request.vpc_id() == Some("vpc-0a")
                && request.tag_specifications().iter().any(|spec| {
                    spec.resource_type() == Some(&ResourceType::SecurityGroup)
                        && tag_map(spec.tags()).get(UID_TAG).map(String::as_str) == Some(UID)
                })
        })
        .then_output(|| CreateSecurityGroupOutput::builder().group_id(GROUP).build());
    let authorize = mock!(aws_sdk_ec2::Client::authorize_security_group_ingress)
        .match_requests(|request| {
            request.group_id() == Some(GROUP)
                && carried(request.ip_permissions()) == [tcp(22, "10.0.0.0/8")]
        })
        .then_output(|| AuthorizeSecurityGroupIngressOutput::builder().build());
    let fresh = by_id(
        GROUP,
        vec![group(
            Vec::new(),
            vec![all_traffic("0.0.0.0/0").to_permission()],
        )],
    );
    let client = in_order(&[&create, &fresh, &authorize]);
    let created = client
        .create(&object(), Context::named(None))
        .await
        .unwrap();
    assert_eq!(
        created,
        Created {
            external_name: Some(GROUP.into())
        }
    );
    assert_eq!(
        (create.num_calls(), authorize.num_calls()),
        (1, 1),
        "and no egress call: the default egress is AWS's"
    );
}

#[tokio::test]
async fn create_with_a_group_name_and_no_egress_revokes_every_default_egress_rule() {
    let mut object = object();
    object.spec.group_name = Some("legacy-web".into());
    object.spec.vpc_id = None;
    object.spec.ingress.clear();
    object.spec.egress.clear();
    let create = mock!(aws_sdk_ec2::Client::create_security_group)
        .match_requests(|request| {
            request.group_name() == Some("legacy-web") && request.vpc_id().is_none()
        })
        .then_output(|| CreateSecurityGroupOutput::builder().group_id(GROUP).build());
    let revoke = mock!(aws_sdk_ec2::Client::revoke_security_group_egress)
        .match_requests(|request| {
            request.group_id() == Some(GROUP)
                && carried(request.ip_permissions())
                    == [all_traffic("0.0.0.0/0"), all_traffic("::/0")]
        })
        .then_output(|| RevokeSecurityGroupEgressOutput::builder().build());
    // In a VPC with IPv6, AWS's default egress covers ::/0 too.
    let fresh = by_id(
        GROUP,
        vec![group(
            Vec::new(),
            vec![
                all_traffic("0.0.0.0/0").to_permission(),
                all_traffic("::/0").to_permission(),
            ],
        )],
    );
    let client = in_order(&[&create, &fresh, &revoke]);
    let created = client.create(&object, Context::named(None)).await.unwrap();
    assert_eq!(created.external_name.as_deref(), Some(GROUP));
    assert_eq!((create.num_calls(), revoke.num_calls()), (1, 1));
}

// Delete.

#[tokio::test]
async fn delete_deletes_the_group_by_id_and_a_group_already_gone_is_fine() {
    let delete = mock!(aws_sdk_ec2::Client::delete_security_group)
        .match_requests(|request| request.group_id() == Some(GROUP))
        .then_output(|| DeleteSecurityGroupOutput::builder().build());
    let gone = mock!(aws_sdk_ec2::Client::delete_security_group)
        .match_requests(|request| request.group_id() == Some(OLD_GROUP))
        .then_error(|| {
            DeleteSecurityGroupError::generic(error(
                "InvalidGroup.NotFound",
                "The security group 'sg-0fedcba9876543210' does not exist",
            ))
        });
    let described = by_id(GROUP, vec![group(declared_ingress(), all_out())]);
    let not_described = not_found_by_id(OLD_GROUP);
    let untagged = by_uid(Vec::new());
    let client = client(&[&delete, &gone, &described, &not_described, &untagged]);
    let object = object();
    assert_eq!(
        client
            .delete(&object, Context::named(Some(GROUP)), DeletionPolicy::Delete)
            .await,
        Ok(None)
    );
    assert_eq!(
        client
            .delete(
                &object,
                Context::named(Some(OLD_GROUP)),
                DeletionPolicy::Delete
            )
            .await,
        Ok(None)
    );
    assert_eq!((delete.num_calls(), gone.num_calls()), (1, 1));
}

/// The error of a delete EC2 refuses with `DependencyViolation`, where the groups
/// whose ingress and egress rules name the group are found by their filters as
/// `ingress_naming` and `egress_naming`.
async fn refused_delete(
    ingress_naming: Vec<Ec2Group>,
    egress_naming: Vec<Ec2Group>,
) -> tether_api::external::ProviderError {
    let describe = by_id(GROUP, vec![group(declared_ingress(), all_out())]);
    let refused =
        mock!(aws_sdk_ec2::Client::delete_security_group).then_error(dependency_violation);
    let ingress = naming(INGRESS_NAMING, ingress_naming);
    let egress = naming(EGRESS_NAMING, egress_naming);
    let client = client(&[&describe, &refused, &ingress, &egress]);
    let error = client
        .delete(
            &object(),
            Context::named(Some(GROUP)),
            DeletionPolicy::Delete,
        )
        .await
        .expect_err("refused");
    assert_eq!(
        (refused.num_calls(), ingress.num_calls(), egress.num_calls()),
        (1, 1, 1)
    );
    error
}

#[tokio::test]
async fn a_group_still_used_by_an_instance_is_pending() {
    let error = refused_delete(Vec::new(), Vec::new()).await;
    assert_eq!(error.class, ErrorClass::Waiting);
    assert_eq!(error.code.as_deref(), Some("DependencyViolation"));
    assert_eq!(
        error.message,
        "resource sg-0123456789abcdef0 has a dependent object"
    );
}

#[tokio::test]
async fn delete_first_revokes_the_rules_that_name_other_groups() {
    // In: ssh from a range, postgres from another group, and from the group itself.
    // Out: everything to anywhere, https to another group.
    let aws = group(
        vec![
            permission("tcp", Some(22), Some(22), "10.0.0.0/8"),
            tcp(5432, PEER).to_permission(),
            tcp(5432, GROUP).to_permission(),
        ],
        vec![
            permission("-1", None, None, "0.0.0.0/0"),
            tcp(443, OTHER_PEER).to_permission(),
        ],
    );
    let describe = by_id(GROUP, vec![aws]);
    let revoke_in = mock!(aws_sdk_ec2::Client::revoke_security_group_ingress)
        .match_requests(|request| {
            request.group_id() == Some(GROUP)
                && carried(request.ip_permissions()) == [tcp(5432, PEER)]
        })
        .then_output(|| RevokeSecurityGroupIngressOutput::builder().build());
    let revoke_out = mock!(aws_sdk_ec2::Client::revoke_security_group_egress)
        .match_requests(|request| {
            request.group_id() == Some(GROUP)
                && carried(request.ip_permissions()) == [tcp(443, OTHER_PEER)]
        })
        .then_output(|| RevokeSecurityGroupEgressOutput::builder().build());
    let delete = mock!(aws_sdk_ec2::Client::delete_security_group)
        .match_requests(|request| request.group_id() == Some(GROUP))
        .then_output(|| DeleteSecurityGroupOutput::builder().build());
    let client = in_order(&[&describe, &revoke_in, &revoke_out, &delete]);
    assert_eq!(
        client
            .delete(
                &object(),
                Context::named(Some(GROUP)),
                DeletionPolicy::Delete
            )
            .await,
        Ok(None)
    );
    assert_eq!(
        (
            revoke_in.num_calls(),
            revoke_out.num_calls(),
            delete.num_calls()
        ),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn delete_revokes_from_the_read_its_observe_made_and_reads_no_more() {
    let describe = by_id(GROUP, vec![group(declared_ingress(), all_out())]);
    let delete = mock!(aws_sdk_ec2::Client::delete_security_group)
        .then_output(|| DeleteSecurityGroupOutput::builder().build());
    let client = client(&[&describe, &delete]);
    let object = object();
    let context = Context::named(Some(GROUP));
    exists(client.observe(&object, context).await.unwrap());
    assert_eq!(
        client
            .delete(&object, context, DeletionPolicy::Delete)
            .await,
        Ok(None)
    );
    assert_eq!(
        (describe.num_calls(), delete.num_calls()),
        (1, 1),
        "no rule names another group, so nothing is revoked"
    );
}

#[tokio::test]
async fn a_group_another_groups_rule_names_waits_backed_off_and_says_which() {
    // PEER admits this group; OTHER_PEER's egress reaches it. The filter's answer is
    // read, not trusted: UNRELATED names neither.
    let error = refused_delete(
        vec![
            other_group(PEER, vec![tcp(5432, GROUP).to_permission()], all_out()),
            other_group(UNRELATED, declared_ingress(), all_out()),
        ],
        vec![other_group(
            OTHER_PEER,
            Vec::new(),
            vec![tcp(5432, GROUP).to_permission()],
        )],
    )
    .await;
    assert_eq!(
        error.class,
        ErrorClass::Transient,
        "backed off, not a hot retry"
    );
    assert_eq!(error.code.as_deref(), Some("DependencyViolation"));
    assert_eq!(
        error.message,
        format!(
            "security group {GROUP} is still named by rules of {PEER}, {OTHER_PEER}, and AWS \
             keeps a group that another group's rule names: tether deletes it once those rules \
             or groups are gone"
        )
    );
}

#[tokio::test]
async fn without_an_external_name_delete_calls_nothing() {
    let delete = mock!(aws_sdk_ec2::Client::delete_security_group)
        .then_output(|| DeleteSecurityGroupOutput::builder().build());
    let client = client(&[&delete]);
    assert_eq!(
        client
            .delete(&object(), Context::named(None), DeletionPolicy::Delete)
            .await,
        Ok(None)
    );
    assert_eq!(delete.num_calls(), 0);
}

const PEER: &str = "sg-0aaaaaaaaaaaaaaaa";
const OTHER_PEER: &str = "sg-0bbbbbbbbbbbbbbbb";
const UNRELATED: &str = "sg-0cccccccccccccccc";
const INGRESS_NAMING: &str = "ip-permission.group-id";
const EGRESS_NAMING: &str = "egress.ip-permission.group-id";

fn dependency_violation() -> DeleteSecurityGroupError {
    DeleteSecurityGroupError::generic(error(
        "DependencyViolation",
        "resource sg-0123456789abcdef0 has a dependent object",
    ))
}

/// A DescribeSecurityGroups of the groups whose rules `filter` finds naming [`GROUP`],
/// answering `groups`.
fn naming(filter: &'static str, groups: Vec<Ec2Group>) -> Rule {
    mock!(aws_sdk_ec2::Client::describe_security_groups)
        .match_requests(move |request| {
            request
                .filters()
                .iter()
                .any(|f| f.name() == Some(filter) && f.values() == [GROUP])
        })
        .then_output(move || described(groups.clone()))
}

/// Another group `id` with these rules.
fn other_group(id: &str, ingress: Vec<IpPermission>, egress: Vec<IpPermission>) -> Ec2Group {
    Ec2Group::builder()
        .group_id(id)
        .set_ip_permissions(Some(ingress))
        .set_ip_permissions_egress(Some(egress))
        .build()
}
