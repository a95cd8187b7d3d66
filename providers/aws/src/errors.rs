//! Turns AWS SDK errors into provider errors of the right class, using the SDK's own
//! lists of throttling and transient error codes.

use aws_runtime::retries::classifiers::{THROTTLING_ERRORS, TRANSIENT_ERRORS};
use aws_sdk_rds::{
    config::http::HttpResponse,
    error::{DisplayErrorContext, ProvideErrorMetadata, SdkError},
};
use tether_api::{ErrorClass, external::ProviderError};

/// Error codes that mean the resource is busy (creating, modifying, backing up):
/// come back later, nothing is wrong.
const BUSY_ERRORS: &[&str] = &[
    "InvalidDBInstanceState",
    "InvalidDBInstanceStateFault",
    "InvalidDBSubnetGroupStateFault",
    "IncorrectState",
    "IncorrectInstanceState",
    // A security group still used by an instance that is shutting down. (One that
    // another group's rule names is told apart where groups are deleted.)
    "DependencyViolation",
    // A launch repeated with the token of an earlier one whose parameters differ (the
    // spec changed in between): the earlier launch made an instance, which the next
    // observe finds by its UID tag once EC2 shows it.
    "IdempotentParameterMismatch",
];

/// The provider error for a failed SDK call.
pub fn provider_error<E>(error: SdkError<E, HttpResponse>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = error.code().map(str::to_owned);
    let class = match &error {
        SdkError::ConstructionFailure(_) => ErrorClass::Terminal,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            ErrorClass::Transient
        }
        SdkError::ServiceError(context) if context.raw().status().is_server_error() => {
            match class_of_code(code.as_deref()) {
                ErrorClass::Terminal => ErrorClass::Transient,
                class => class,
            }
        }
        SdkError::ServiceError(_) => class_of_code(code.as_deref()),
        _ => ErrorClass::Transient,
    };
    let message = match error.message() {
        Some(message) => message.to_owned(),
        None => DisplayErrorContext(&error).to_string(),
    };
    ProviderError::new(class, message).with_optional_code(code.as_deref())
}

/// `result` with a failure `is_missing` recognizes as "no such resource" turned into
/// `Ok(None)`, and any other failure into a provider error.
pub(crate) fn absent_if<T, E>(
    result: Result<T, SdkError<E, HttpResponse>>,
    is_missing: impl FnOnce(&E) -> bool,
) -> Result<Option<T>, ProviderError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match result {
        Ok(output) => Ok(Some(output)),
        Err(error) if error.as_service_error().is_some_and(is_missing) => Ok(None),
        Err(error) => Err(provider_error(error)),
    }
}

/// The class of an AWS error code.
pub fn class_of_code(code: Option<&str>) -> ErrorClass {
    match code {
        Some(code) if THROTTLING_ERRORS.contains(&code) => ErrorClass::Throttled,
        Some(code) if TRANSIENT_ERRORS.contains(&code) => ErrorClass::Transient,
        Some(code) if BUSY_ERRORS.contains(&code) => ErrorClass::Waiting,
        Some(code) if code.starts_with("InternalFailure") || code == "ServiceUnavailable" => {
            ErrorClass::Transient
        }
        _ => ErrorClass::Terminal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_classes() {
        for (code, class) in [
            (Some("Throttling"), ErrorClass::Throttled),
            (Some("RequestLimitExceeded"), ErrorClass::Throttled),
            (Some("InvalidDBInstanceState"), ErrorClass::Waiting),
            (Some("InternalFailure"), ErrorClass::Transient),
            (Some("InvalidParameterValue"), ErrorClass::Terminal),
            // An earlier launch with the same token made an instance.
            (Some("IdempotentParameterMismatch"), ErrorClass::Waiting),
            (None, ErrorClass::Terminal),
        ] {
            assert_eq!(class_of_code(code), class, "{code:?}");
        }
    }
}
