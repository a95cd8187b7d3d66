//! What providers report for the runtime's metrics: every call to the cloud, by
//! service, operation and outcome.

/// How one call to the cloud ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallOutcome {
    /// The cloud answered with success.
    Ok,
    /// The cloud refused the call for its rate (throttling).
    Throttled,
    /// Any other failure: an error answer, or no answer.
    Error,
}

impl CallOutcome {
    /// The label value: `ok`, `throttled` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Throttled => "throttled",
            Self::Error => "error",
        }
    }
}

/// Receives a report of every call a provider makes to the cloud (each attempt, so
/// retries count).
pub trait CallObserver: Send + Sync + std::fmt::Debug + 'static {
    /// One call to `operation` of `service` ended with `outcome`.
    fn cloud_call(&self, service: &str, operation: &str, outcome: CallOutcome);
}
