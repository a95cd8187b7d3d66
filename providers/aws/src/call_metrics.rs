//! The SDK configuration of one ProviderConfig as the kinds' clients are built from it:
//! every client of the ProviderConfig shares one AWS budget ([`Budget`]: a retry quota,
//! and a pace per service), and carries an interceptor that reports every AWS call
//! (each attempt) and its outcome to the runtime's metrics.

use std::sync::Arc;

use aws_config::SdkConfig;
use aws_runtime::retries::classifiers::THROTTLING_ERRORS;
use aws_smithy_runtime_api::{
    box_error::BoxError,
    client::{
        interceptors::{Intercept, SharedInterceptor, context::FinalizerInterceptorContextRef},
        orchestrator::Metadata,
        runtime_components::RuntimeComponents,
    },
};
use aws_smithy_types::config_bag::ConfigBag;
use tether_api::telemetry::{CallObserver, CallOutcome};

use crate::budget::{self, Budget};

/// An SDK configuration, the budget its clients share and, when metrics are on, the
/// interceptor every client built from it carries.
#[derive(Clone, Debug)]
pub struct AwsConfig {
    /// The SDK's configuration: region, endpoint, credentials, retries.
    pub sdk: SdkConfig,
    /// The budget every client shares, if not the SDK's own per service and region.
    budget: Option<Budget>,
    interceptor: Option<SharedInterceptor>,
}

impl From<SdkConfig> for AwsConfig {
    /// A configuration whose clients report nothing and keep the SDK's budget per
    /// service and region.
    fn from(sdk: SdkConfig) -> Self {
        Self {
            sdk,
            budget: None,
            interceptor: None,
        }
    }
}

/// A client of the SDK crate `$sdk` (`aws_sdk_ec2`, …) for AWS service `$service`,
/// built from the [`AwsConfig`] `$config`: its calls go at the service's pace in the
/// config's budget, and it carries the config's interceptor. Every service's config
/// builder has the same methods, but no trait names them.
macro_rules! client_of {
    ($sdk:ident, $service:literal, $config:expr) => {{
        let aws: &AwsConfig = $config;
        let mut config = $sdk::config::Builder::from(&aws.sdk);
        if let Some(budget) = &aws.budget {
            config.set_retry_partition(Some(budget.partition()));
            let pace = budget.pace($service);
            let http = aws
                .sdk
                .http_client()
                .unwrap_or_else(budget::default_https_client);
            config.set_http_client(Some(budget::paced(http, pace.clone())));
            // A request waiting for its turn has not started to upload: the SDK would
            // take the wait for a stalled upload and fail the call.
            config.set_stalled_stream_protection(Some(budget::uploads_unwatched()));
            config.push_interceptor(budget::pace_feed(pace));
        }
        if let Some(interceptor) = &aws.interceptor {
            config.push_interceptor(interceptor.clone());
        }
        $sdk::Client::from_conf(config.build())
    }};
}

impl AwsConfig {
    /// The configuration of ProviderConfig `provider_config`, loaded as `sdk`: its
    /// clients share the ProviderConfig's [`Budget`] in its region, and report every
    /// call to `observer`, if given.
    pub fn for_provider_config(
        sdk: SdkConfig,
        provider_config: &str,
        observer: Option<Arc<dyn CallObserver>>,
    ) -> Self {
        let region = sdk.region().map(|region| region.as_ref()).unwrap_or("none");
        Self {
            budget: Some(Budget::of(provider_config, region)),
            interceptor: observer.map(|observer| SharedInterceptor::new(CallReporter { observer })),
            sdk,
        }
    }

    /// An EC2 client.
    pub fn ec2(&self) -> aws_sdk_ec2::Client {
        client_of!(aws_sdk_ec2, "ec2", self)
    }

    /// An RDS client.
    pub fn rds(&self) -> aws_sdk_rds::Client {
        client_of!(aws_sdk_rds, "rds", self)
    }

    /// A Secrets Manager client.
    pub fn secrets_manager(&self) -> aws_sdk_secretsmanager::Client {
        client_of!(aws_sdk_secretsmanager, "secretsmanager", self)
    }
}

/// Reports each attempt of each operation after it ends.
#[derive(Debug)]
struct CallReporter {
    observer: Arc<dyn CallObserver>,
}

impl Intercept for CallReporter {
    fn name(&self) -> &'static str {
        "tether-call-reporter"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (service, operation) = cfg
            .load::<Metadata>()
            .map_or(("unknown", "unknown"), |metadata| {
                (metadata.service(), metadata.name())
            });
        self.observer
            .cloud_call(service, operation, outcome_of(context));
        Ok(())
    }
}

/// How an attempt ended: answered, refused by a throttle (HTTP 429, or one of the
/// SDK's throttling error codes in the answer), or failed otherwise.
pub(crate) fn outcome_of(context: &FinalizerInterceptorContextRef<'_>) -> CallOutcome {
    if let Some(Ok(_)) = context.output_or_error() {
        return CallOutcome::Ok;
    }
    let response = context.response();
    let status = response.map(|response| response.status().as_u16());
    let body = response
        .and_then(|response| response.body().bytes())
        .map(String::from_utf8_lossy);
    if status == Some(429) || body.is_some_and(|body| names_throttling(&body)) {
        CallOutcome::Throttled
    } else {
        CallOutcome::Error
    }
}

/// Whether an error answer's body names one of the SDK's throttling error codes (as
/// `<Code>…</Code>` in the query protocols of EC2 and RDS, or `"__type"` in JSON).
fn names_throttling(body: &str) -> bool {
    THROTTLING_ERRORS.iter().any(|code| {
        body.contains(&format!("<Code>{code}</Code>")) || body.contains(&format!("\"{code}\""))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_is_read_from_query_and_json_error_bodies() {
        assert!(names_throttling(
            "<ErrorResponse><Error><Code>Throttling</Code><Message>Rate exceeded</Message></Error></ErrorResponse>"
        ));
        assert!(names_throttling(
            "<Response><Errors><Error><Code>RequestLimitExceeded</Code></Error></Errors></Response>"
        ));
        assert!(names_throttling(
            r#"{"__type":"ThrottlingException","message":"slow down"}"#
        ));
        assert!(!names_throttling(
            "<Error><Code>DBInstanceNotFound</Code><Message>Throttling is not this</Message></Error>"
        ));
    }
}
