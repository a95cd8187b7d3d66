//! Test helpers shared by the kinds' tests: SDK clients whose calls the SDK's own mocks
//! (`aws-smithy-mocks`) answer, and the fixtures every kind's tests build on (the
//! test object's metadata, AWS errors, observations, tags).

use std::collections::{BTreeMap, BTreeSet};

use aws_smithy_types::error::ErrorMetadata;
use kube::core::ObjectMeta;
use tether_api::external::{ConnectionDetails, Observation, Observed, Readiness};

use crate::tags::UID_TAG;

/// A client of the SDK crate `$sdk` (`aws_sdk_ec2`, `aws_sdk_rds`, …) whose calls the
/// mock `rules` answer, in `RuleMode` `$mode` (default `Sequential`).
///
/// `aws_smithy_mocks::mock_client!` does the same through the SDK's
/// `with_test_defaults_v2`, which only exists with the SDK crate's `test-util` feature;
/// a feature that only the tests enable gives `cargo test` a build of the SDK crates
/// of its own, apart from `cargo build`'s (see the root `Cargo.toml`).
macro_rules! mock_client {
    ($sdk:ident, $rules:expr) => {
        $crate::testing::mock_client!($sdk, ::aws_smithy_mocks::RuleMode::Sequential, $rules)
    };
    ($sdk:ident, $mode:expr, $rules:expr) => {{
        let mut interceptor = ::aws_smithy_mocks::MockResponseInterceptor::new().rule_mode($mode);
        for rule in $rules {
            interceptor = interceptor.with_rule(rule);
        }
        $sdk::Client::from_conf(
            $sdk::Config::builder()
                .behavior_version($sdk::config::BehaviorVersion::latest())
                .region($sdk::config::Region::new("us-east-1"))
                .credentials_provider($sdk::config::Credentials::new(
                    "test", "test", None, None, "mock",
                ))
                .http_client(::aws_smithy_mocks::create_mock_http_client())
                .interceptor(interceptor)
                .build(),
        )
    }};
}

pub(crate) use mock_client;

/// The UID of the kinds' test objects.
pub(crate) const UID: &str = "0c9f3a1e-5b7d-4e2a-9c1f-2d3e4f5a6b7c";

/// The metadata of a kind's test object: `shop/<name>`, with [`UID`].
pub(crate) fn metadata(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some("shop".into()),
        uid: Some(UID.into()),
        ..ObjectMeta::default()
    }
}

/// The metadata of an AWS error with `code` and `message`.
pub(crate) fn error(code: &str, message: &str) -> ErrorMetadata {
    ErrorMetadata::builder().code(code).message(message).build()
}

/// What an observation that must find the resource found.
pub(crate) fn exists<A, D>(observation: Observation<A, D>) -> Observed<A, D> {
    match observation {
        Observation::Exists(observed) => observed,
        Observation::Missing => panic!("the resource is observed"),
    }
}

/// A Ready resource of the object with [`UID`] as its client observes it: named
/// `external_name` (when known), with `at_provider`, differing by `delta`, and no
/// connection details.
pub(crate) fn observed<A, D>(
    external_name: Option<&str>,
    delta: D,
    at_provider: A,
) -> Observed<A, D> {
    Observed {
        external_name: external_name.map(str::to_owned),
        owner_uid: Some(UID.into()),
        delta,
        readiness: Readiness::Ready,
        at_provider,
        connection: ConnectionDetails::default(),
    }
}

/// The tags on a resource of the object with `uid` after its spec dropped `env`: the
/// UID tag, `env` (tether applied it before) and `cost-center` (someone else's); and
/// the record of the tags tether applied, `env`. The kinds' diff tests share it.
pub(crate) fn a_dropped_tag(uid: &str) -> (BTreeMap<String, String>, BTreeSet<String>) {
    let on_resource = BTreeMap::from([
        (UID_TAG.to_owned(), uid.to_owned()),
        ("env".to_owned(), "dev".to_owned()),
        ("cost-center".to_owned(), "42".to_owned()),
    ]);
    (on_resource, BTreeSet::from(["env".to_owned()]))
}
