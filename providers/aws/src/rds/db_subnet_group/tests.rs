//! Edge cases moto cannot show (its ModifyDBSubnetGroup drops the group), with the
//! SDK's own mocks.

use aws_sdk_rds::{
    operation::modify_db_subnet_group::{ModifyDBSubnetGroupError, ModifyDbSubnetGroupOutput},
    types::error::InvalidDbSubnetGroupStateFault,
};
use std::collections::{BTreeMap, BTreeSet};

use crate::testing::{self, UID, metadata, mock_client};
use aws_smithy_mocks::mock;
use tether_api::{
    ErrorClass,
    external::{Context, Delta, ExternalClient, ObservedOf},
    managed::{Managed, ManagedFields},
};

use super::{diff::diff, *};

/// The name derived for `object()`.
const NAME: &str = "shop-orders-0c9f3a1e5b";

fn object() -> DBSubnetGroup {
    DBSubnetGroup {
        metadata: metadata("orders"),
        spec: DBSubnetGroupSpec {
            managed: ManagedFields::default(),
            description: "all zones".into(),
            subnet_ids: vec!["subnet-0a".into(), "subnet-0b".into(), "subnet-0c".into()],
            tags: BTreeMap::new(),
        },
        status: None,
    }
}

fn observed(delta: DBSubnetGroupDelta) -> ObservedOf<DBSubnetGroup> {
    testing::observed(
        None,
        delta,
        DBSubnetGroupObservation {
            arn: Some("arn:aws:rds:us-east-1:123456789012:subgrp:shop-orders".into()),
            ..DBSubnetGroupObservation::default()
        },
    )
}

#[tokio::test]
async fn update_sends_the_desired_description_and_subnets_only() {
    let modify = mock!(aws_sdk_rds::Client::modify_db_subnet_group)
        .match_requests(|request| {
            request.db_subnet_group_name() == Some(NAME)
                && request.db_subnet_group_description() == Some("all zones")
                && request.subnet_ids() == ["subnet-0a", "subnet-0b", "subnet-0c"]
        })
        .then_output(|| ModifyDbSubnetGroupOutput::builder().build());
    let rds = mock_client!(aws_sdk_rds, [&modify]);
    let client = DBSubnetGroupClient::new(rds);
    let object = object();
    let name = object.default_external_name();
    client
        .update(
            &object,
            Context::named(name.as_deref()),
            &observed(DBSubnetGroupDelta {
                description: true,
                subnet_ids: true,
                ..DBSubnetGroupDelta::default()
            }),
        )
        .await
        .expect("the modify call matches");
    assert_eq!(
        modify.num_calls(),
        1,
        "one ModifyDBSubnetGroup, and no tag call"
    );
}

#[tokio::test]
async fn a_subnet_group_in_use_elsewhere_is_pending_not_an_error() {
    let modify = mock!(aws_sdk_rds::Client::modify_db_subnet_group).then_error(|| {
        ModifyDBSubnetGroupError::InvalidDbSubnetGroupStateFault(
            InvalidDbSubnetGroupStateFault::builder()
                .message("the subnet group is being modified")
                .meta(testing::error(
                    "InvalidDBSubnetGroupStateFault",
                    "the subnet group is being modified",
                ))
                .build(),
        )
    });
    let client = DBSubnetGroupClient::new(mock_client!(aws_sdk_rds, [&modify]));
    let object = object();
    let error = client
        .update(
            &object,
            Context::named(Some(NAME)),
            &observed(DBSubnetGroupDelta {
                subnet_ids: true,
                ..DBSubnetGroupDelta::default()
            }),
        )
        .await
        .expect_err("busy");
    assert_eq!(error.class, ErrorClass::Waiting);
    assert_eq!(
        error.code.as_deref(),
        Some("InvalidDBSubnetGroupStateFault")
    );
    assert_eq!(error.message, "the subnet group is being modified");
}

#[test]
fn the_diff_names_what_differs_and_leaves_others_tags_alone() {
    let object = object();
    let subnets: BTreeSet<String> = object.spec.subnet_ids.iter().cloned().collect();
    let ours = BTreeMap::from([
        (crate::tags::UID_TAG.to_owned(), UID.to_owned()),
        ("cost-center".to_owned(), "42".to_owned()),
    ]);
    let context = Context::named(Some(NAME));
    let same = diff(&object, &context, Some("all zones"), &subnets, &ours);
    assert!(same.is_empty(), "{:?}", same.describe());

    let fewer: BTreeSet<String> = subnets.iter().take(2).cloned().collect();
    let changed = diff(&object, &context, Some("old"), &fewer, &BTreeMap::new());
    assert_eq!(changed.describe(), ["description", "subnetIds", "tags"]);
}
