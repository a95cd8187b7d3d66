//! Test helpers shared by the kinds' tests: SDK clients whose calls the SDK's own mocks
//! (`aws-smithy-mocks`) answer.

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
