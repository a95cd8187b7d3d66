//! The AWS budget of one ProviderConfig: every SDK client built for it, whatever its
//! service, shares one retry partition, so the SDK's adaptive client rate limiter and
//! retry token bucket are one budget per account and region. Once AWS throttles a
//! call of any kind, the limiter paces the calls of every kind of that ProviderConfig
//! (it lowers its rate on each throttle and raises it again while calls succeed).
//!
//! The SDK only consults the limiter in its adaptive retry mode; a call whose retries
//! are switched off (a create that must not be repeated blindly) has the standard
//! mode, and would pass by it. [`EveryCallOnTheBudget`] keeps those calls' retries as
//! they are and puts them on the budget too.

use aws_config::retry::{RetryConfig, RetryMode};
use aws_sdk_rds::config::retry::RetryPartition;
use aws_smithy_runtime_api::{
    box_error::BoxError,
    client::{
        interceptors::{
            Intercept, SharedInterceptor, context::BeforeTransmitInterceptorContextMut,
        },
        runtime_components::RuntimeComponents,
    },
};
use aws_smithy_types::config_bag::{ConfigBag, Layer};

/// The budget of one ProviderConfig in one region.
#[derive(Clone, Debug)]
pub struct Budget {
    partition: RetryPartition,
}

impl Budget {
    /// The budget of ProviderConfig `provider_config` in `region`, named
    /// `tether/<providerconfig>/<region>`. The SDK keeps one rate limiter and one retry
    /// token bucket per name for the life of the process, so the clients of every
    /// service and of every generation of the ProviderConfig share them.
    pub fn of(provider_config: &str, region: &str) -> Self {
        Self {
            partition: RetryPartition::new(format!("tether/{provider_config}/{region}")),
        }
    }

    /// The retry partition every client of the budget is built with.
    pub fn partition(&self) -> RetryPartition {
        self.partition.clone()
    }

    /// The interceptor that puts every call on the budget, retried or not.
    pub fn interceptor(&self) -> SharedInterceptor {
        SharedInterceptor::new(EveryCallOnTheBudget)
    }
}

/// Switches a call whose retry configuration is not adaptive (such as a create with
/// retries switched off) to the adaptive mode with the same attempts and backoff, so
/// that it waits for the shared rate limiter like every other call and still is not
/// retried.
#[derive(Debug)]
struct EveryCallOnTheBudget;

impl Intercept for EveryCallOnTheBudget {
    fn name(&self) -> &'static str {
        "tether-every-call-on-the-budget"
    }

    // Runs just before the SDK asks its retry strategy (and so the rate limiter)
    // whether the first attempt may be sent.
    fn modify_before_retry_loop(
        &self,
        _context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(adaptive) = on_the_budget(cfg.load::<RetryConfig>()) {
            let mut layer = Layer::new("tether-budget");
            layer.store_put(adaptive);
            cfg.push_layer(layer);
        }
        Ok(())
    }
}

/// The adaptive version of `retry`, when it is not adaptive already.
fn on_the_budget(retry: Option<&RetryConfig>) -> Option<RetryConfig> {
    retry
        .filter(|retry| retry.mode() != RetryMode::Adaptive)
        .map(|retry| retry.clone().with_retry_mode(RetryMode::Adaptive))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_without_retries_waits_for_the_budget_and_still_makes_one_attempt() {
        let adaptive = on_the_budget(Some(&RetryConfig::disabled())).expect("switched");
        assert_eq!(adaptive.mode(), RetryMode::Adaptive);
        assert_eq!(adaptive.max_attempts(), 1);
        assert!(on_the_budget(Some(&RetryConfig::adaptive())).is_none());
        assert!(on_the_budget(None).is_none());
    }

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
}
