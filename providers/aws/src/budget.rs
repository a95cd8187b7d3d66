//! The AWS budget of one ProviderConfig in one region: every client built for it shares
//! one retry partition (the SDK's retry quota), and the calls of each service go at
//! that service's [`Pace`]: unlimited until AWS throttles one, then at a rate learned
//! from what AWS accepted (see `pace`). AWS meters each service of an account and
//! region on its own, so each service has a pace of its own, kept for the life of the
//! process (every generation of the ProviderConfig shares it).
//!
//! Every attempt of every call waits for its turn in the HTTP client the SDK sends it
//! through ([`paced`]), and a refusal reaches the pace through an interceptor
//! ([`pace_feed`]). A create, which the SDK must not send again blindly, is still
//! retried when AWS throttled it ([`OnlyThrottlingRetried`]): the retry waits for the
//! pace, where a failed reconcile would observe and create all over again.

pub mod pace;

use std::{
    collections::HashMap,
    sync::{Arc, LazyLock, Mutex},
    time::Instant,
};

use aws_sdk_rds::config::retry::RetryPartition;
use aws_smithy_runtime_api::{
    box_error::BoxError,
    client::{
        http::{
            HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings,
            SharedHttpClient, SharedHttpConnector,
        },
        interceptors::{
            Intercept, SharedInterceptor,
            context::{FinalizerInterceptorContextRef, InterceptorContext},
        },
        orchestrator::HttpRequest,
        retries::classifiers::{ClassifyRetry, RetryAction, RetryClassifierPriority, RetryReason},
        runtime_components::{RuntimeComponents, RuntimeComponentsBuilder},
        stalled_stream_protection::StalledStreamProtectionConfig,
    },
};
use aws_smithy_types::{config_bag::ConfigBag, retry::ErrorKind};
use tether_api::telemetry::CallOutcome;

pub use self::pace::Pace;
use crate::call_metrics::outcome_of;

/// The paces of every budget's services, by `<budget>/<service>`.
static PACES: LazyLock<Mutex<HashMap<String, Arc<Pace>>>> = LazyLock::new(Mutex::default);

/// The budget of one ProviderConfig in one region.
#[derive(Clone, Debug)]
pub struct Budget {
    name: String,
}

impl Budget {
    /// The budget of ProviderConfig `provider_config` in `region`, named
    /// `tether/<providerconfig>/<region>`. The SDK keeps one retry quota per name, and
    /// this module one pace per name and service, for the life of the process, so the
    /// clients of every generation of the ProviderConfig share them.
    pub fn of(provider_config: &str, region: &str) -> Self {
        Self {
            name: format!("tether/{provider_config}/{region}"),
        }
    }

    /// The retry partition every client of the budget is built with.
    pub fn partition(&self) -> RetryPartition {
        RetryPartition::new(self.name.clone())
    }

    /// The pace of `service`'s calls under this budget.
    pub fn pace(&self, service: &str) -> Arc<Pace> {
        PACES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(format!("{}/{service}", self.name))
            .or_default()
            .clone()
    }
}

/// The HTTPS client the SDK would use when the configuration names none: rustls with
/// aws-lc, proxies from the environment (`HTTPS_PROXY`, `NO_PROXY`, …). aws-smithy-runtime
/// builds the same in its crate-private `default_https_client`; wrapping it (see
/// [`paced`]) needs it by name.
pub fn default_https_client() -> SharedHttpClient {
    use aws_smithy_http_client::{Builder, ConnectorBuilder, proxy::ProxyConfig, tls};
    Builder::new().build_with_connector_fn(|settings, runtime_components| {
        let mut connector = ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ));
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = runtime_components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

/// The SDK's stalled-stream protection for downloads only: a paced request's body is
/// not read while it waits for its turn (see [`paced`]), which the upload check would
/// take for a stall. The requests' bodies are small forms, sent at once.
pub fn uploads_unwatched() -> StalledStreamProtectionConfig {
    StalledStreamProtectionConfig::enabled()
        .upload_enabled(false)
        .build()
}

/// `http`, with every request waiting for its turn at `pace` first.
pub fn paced(http: SharedHttpClient, pace: Arc<Pace>) -> SharedHttpClient {
    SharedHttpClient::new(PacedClient { http, pace })
}

/// The interceptor that tells `pace` how each attempt was answered.
pub fn pace_feed(pace: Arc<Pace>) -> SharedInterceptor {
    SharedInterceptor::new(PaceFeed(pace))
}

#[derive(Debug)]
struct PacedClient {
    http: SharedHttpClient,
    pace: Arc<Pace>,
}

impl HttpClient for PacedClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(PacedConnector {
            connector: self.http.http_connector(settings, components),
            pace: self.pace.clone(),
        })
    }

    fn validate_base_client_config(
        &self,
        runtime_components: &RuntimeComponentsBuilder,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.http
            .validate_base_client_config(runtime_components, cfg)
    }

    fn validate_final_config(
        &self,
        runtime_components: &RuntimeComponents,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.http.validate_final_config(runtime_components, cfg)
    }
}

#[derive(Debug)]
struct PacedConnector {
    connector: SharedHttpConnector,
    pace: Arc<Pace>,
}

impl HttpConnector for PacedConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let (connector, pace) = (self.connector.clone(), self.pace.clone());
        HttpConnectorFuture::new(async move {
            pace.wait().await;
            connector.call(request).await
        })
    }
}

/// Lets the SDK retry a call only when AWS refused it with a throttling error: for a
/// create, whose blind retry could make a second resource when an answer was lost.
/// A throttled call is safe to send again (AWS refused it before doing anything), and
/// its retry waits for the service's pace, where a failed reconcile would observe and
/// create all over again.
#[derive(Debug)]
pub struct OnlyThrottlingRetried;

impl ClassifyRetry for OnlyThrottlingRetried {
    fn classify_retry(&self, _context: &InterceptorContext) -> RetryAction {
        RetryAction::RetryForbidden
    }

    fn classify_retry_v2(
        &self,
        _context: &InterceptorContext,
        previous: &RetryAction,
    ) -> RetryAction {
        only_throttling(previous)
    }

    fn name(&self) -> &'static str {
        "tether-only-throttling-retried"
    }

    // After the SDK's classifiers, whose verdict it reads.
    fn priority(&self) -> RetryClassifierPriority {
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
    }
}

/// What the SDK's classifiers' verdict `previous` becomes when only throttling errors
/// may be retried.
fn only_throttling(previous: &RetryAction) -> RetryAction {
    match previous {
        RetryAction::RetryIndicated(RetryReason::RetryableError {
            kind: ErrorKind::ThrottlingError,
            ..
        }) => RetryAction::NoActionIndicated,
        _ => RetryAction::RetryForbidden,
    }
}

/// Tells a [`Pace`] how each attempt was answered.
#[derive(Debug)]
struct PaceFeed(Arc<Pace>);

impl Intercept for PaceFeed {
    fn name(&self) -> &'static str {
        "tether-pace-feed"
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if outcome_of(context) == CallOutcome::Throttled {
            self.0.refused(Instant::now());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_budget_per_provider_config_and_region() {
        assert_eq!(
            Budget::of("default", "us-east-1").partition(),
            Budget::of("default", "us-east-1").partition()
        );
        assert_ne!(
            Budget::of("default", "us-east-1").partition(),
            Budget::of("default", "eu-west-1").partition()
        );
        assert_eq!(
            Budget::of("prod", "us-east-1").partition().to_string(),
            "tether/prod/us-east-1"
        );
    }

    #[test]
    fn only_a_throttling_error_is_retried() {
        assert_eq!(
            only_throttling(&RetryAction::throttling_error()),
            RetryAction::NoActionIndicated
        );
        for other in [
            RetryAction::transient_error(),
            RetryAction::server_error(),
            RetryAction::NoActionIndicated,
        ] {
            assert_eq!(only_throttling(&other), RetryAction::RetryForbidden);
        }
    }

    #[test]
    fn each_service_of_a_budget_has_one_pace_for_the_life_of_the_process() {
        let budget = Budget::of("pace-test", "us-east-1");
        assert!(Arc::ptr_eq(
            &budget.pace("ec2"),
            &Budget::of("pace-test", "us-east-1").pace("ec2")
        ));
        assert!(!Arc::ptr_eq(&budget.pace("ec2"), &budget.pace("rds")));
        assert!(!Arc::ptr_eq(
            &budget.pace("ec2"),
            &Budget::of("pace-test", "eu-west-1").pace("ec2")
        ));
    }
}
