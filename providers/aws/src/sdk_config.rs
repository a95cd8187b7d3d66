//! Turns a `ProviderConfig` into an AWS SDK configuration: region, endpoint and credentials.
//!
//! Nothing here calls AWS: the default chain and the assumed role are resolved lazily,
//! on the first request that needs credentials, so a LocalStack or moto endpoint works.
//! Keys from a Secret are read again every minute, so rotating them needs no restart;
//! whether the last read failed is kept, so that the connector can say so before a
//! call fails for want of credentials.

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime},
};

use aws_config::{
    BehaviorVersion, ConfigLoader, Region, SdkConfig, retry::RetryConfig, sts::AssumeRoleProvider,
};
use aws_credential_types::{
    Credentials,
    provider::{self, ProvideCredentials, error::CredentialsError},
};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use tether_api::{ErrorClass, SecretReference, provider_config::CREDENTIALS_MISSING};

use crate::provider_config::{CredentialsSource, ProviderConfigSpec};

/// Key of the access key id in a credentials Secret.
pub const ACCESS_KEY_ID_KEY: &str = "aws_access_key_id";
/// Key of the secret access key in a credentials Secret.
pub const SECRET_ACCESS_KEY_KEY: &str = "aws_secret_access_key";
/// Key of the optional session token in a credentials Secret.
pub const SESSION_TOKEN_KEY: &str = "aws_session_token";
/// Session name used for `AssumeRole` when the ProviderConfig names none.
pub const DEFAULT_SESSION_NAME: &str = "tether";
/// How long keys read from a credentials Secret are used before the Secret is read
/// again (the SDK's identity cache asks a little before they expire): a rotated Secret
/// is in use within about a minute, for one Secret read a minute per ProviderConfig.
pub const SECRET_KEYS_LIFETIME: Duration = Duration::from_secs(60);

/// Why an SDK configuration could not be built. Messages never hold a credential value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("credentials Secret {secret} does not exist")]
    SecretNotFound { secret: SecretReference },
    #[error("credentials Secret {secret} has no key {key}")]
    SecretKeyMissing {
        secret: SecretReference,
        key: &'static str,
    },
    #[error("key {key} of credentials Secret {secret} is not UTF-8 text")]
    SecretKeyNotText {
        secret: SecretReference,
        key: &'static str,
    },
    #[error("reading credentials Secret {secret}: {source}")]
    SecretRead {
        secret: SecretReference,
        #[source]
        source: kube::Error,
    },
    #[error("credentials source {credentials_source:?} needs {field}")]
    MissingField {
        credentials_source: CredentialsSource,
        field: &'static str,
    },
}

impl Error {
    /// Which class of failure this is.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::SecretRead { .. } => ErrorClass::Transient,
            Self::SecretNotFound { .. }
            | Self::SecretKeyMissing { .. }
            | Self::SecretKeyNotText { .. }
            | Self::MissingField { .. } => ErrorClass::Terminal,
        }
    }

    /// The condition reason for the objects that use the ProviderConfig:
    /// [`CREDENTIALS_MISSING`] when the credentials Secret or one of its keys is
    /// missing (or unreadable as text); `None` for a failure to read it at all.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Self::SecretNotFound { .. }
            | Self::SecretKeyMissing { .. }
            | Self::SecretKeyNotText { .. } => Some(CREDENTIALS_MISSING),
            Self::SecretRead { .. } | Self::MissingField { .. } => None,
        }
    }
}

/// An SDK configuration and, when its keys come from a Secret, that Secret.
#[derive(Debug)]
pub struct Loaded {
    /// The configuration.
    pub sdk: SdkConfig,
    /// The credentials Secret, when the configuration reads one.
    pub secret: Option<SecretKeys>,
}

/// Builds the SDK configuration a `ProviderConfig` describes, reading a credentials
/// Secret through `kube` when it names one.
pub async fn load(spec: &ProviderConfigSpec, kube: &kube::Client) -> Result<SdkConfig, Error> {
    Ok(load_with_secret(spec, kube).await?.sdk)
}

/// [`load`], also handing out the credentials Secret the configuration reads (if any).
pub async fn load_with_secret(
    spec: &ProviderConfigSpec,
    kube: &kube::Client,
) -> Result<Loaded, Error> {
    let credentials = &spec.credentials;
    // The default chain never uses a Secret, even one left in the spec.
    let static_keys = match (&credentials.secret_ref, credentials.source) {
        (Some(secret), CredentialsSource::Secret | CredentialsSource::AssumeRole) => {
            let keys = SecretKeys {
                kube: kube.clone(),
                secret: secret.clone(),
                last_read_failed: Arc::default(),
            };
            // Read once now, so that a missing or malformed Secret is a clear error
            // when the ProviderConfig is used, not a failed signature later.
            keys.read().await?;
            Some(keys)
        }
        _ => None,
    };
    let secret = static_keys.clone();
    let sdk = match credentials.source {
        CredentialsSource::Default => loader(spec).load().await,
        CredentialsSource::Secret => {
            let keys = static_keys.ok_or(Error::MissingField {
                credentials_source: CredentialsSource::Secret,
                field: "secretRef",
            })?;
            loader(spec).credentials_provider(keys).load().await
        }
        CredentialsSource::AssumeRole => {
            let role = credentials
                .assume_role
                .as_ref()
                .ok_or(Error::MissingField {
                    credentials_source: CredentialsSource::AssumeRole,
                    field: "assumeRole.roleArn",
                })?;
            let base = match static_keys {
                Some(keys) => loader(spec).credentials_provider(keys).load().await,
                None => loader(spec).load().await,
            };
            let mut builder = AssumeRoleProvider::builder(&role.role_arn)
                .session_name(role.session_name.as_deref().unwrap_or(DEFAULT_SESSION_NAME))
                .configure(&base);
            if let Some(external_id) = &role.external_id {
                builder = builder.external_id(external_id);
            }
            let assumed = builder.build().await;
            loader(spec).credentials_provider(assumed).load().await
        }
    };
    Ok(Loaded { sdk, secret })
}

/// A loader with the region and endpoint of `spec`, and the SDK's standard retries
/// (backoff with jitter, a retry quota per partition); the pace of the calls is
/// tether's own, per service (see [`crate::budget::Budget`]), not the SDK's adaptive
/// limiter.
fn loader(spec: &ProviderConfigSpec) -> ConfigLoader {
    let loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(spec.region.clone()))
        .retry_config(RetryConfig::standard());
    match &spec.endpoint {
        Some(endpoint) => loader.endpoint_url(endpoint),
        None => loader,
    }
}

/// The keys in a credentials Secret, read again whenever the SDK's identity cache asks:
/// they expire [`SECRET_KEYS_LIFETIME`] after each read. Whether the last read failed
/// is kept (shared by every clone).
#[derive(Clone)]
pub struct SecretKeys {
    kube: kube::Client,
    secret: SecretReference,
    last_read_failed: Arc<AtomicBool>,
}

impl fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKeys")
            .field("secret", &self.secret)
            .finish_non_exhaustive()
    }
}

impl SecretKeys {
    async fn read(&self) -> Result<Credentials, Error> {
        let read = read_static_credentials(
            &self.kube,
            &self.secret,
            SystemTime::now() + SECRET_KEYS_LIFETIME,
        )
        .await;
        self.last_read_failed
            .store(read.is_err(), Ordering::Release);
        read
    }

    /// Fine when the last read of the Secret succeeded; otherwise (it was deleted, say,
    /// after the keys were first read) reads it again and says why it still fails. A
    /// Secret put back is in use from then on.
    pub async fn check(&self) -> Result<(), Error> {
        if self.last_read_failed.load(Ordering::Acquire) {
            self.read().await?;
        }
        Ok(())
    }
}

impl ProvideCredentials for SecretKeys {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(async move {
            self.read().await.map_err(CredentialsError::provider_error)
        })
    }
}

async fn read_static_credentials(
    kube: &kube::Client,
    reference: &SecretReference,
    expiry: SystemTime,
) -> Result<Credentials, Error> {
    let secrets: Api<Secret> = Api::namespaced(kube.clone(), &reference.namespace);
    let secret = secrets
        .get_opt(&reference.name)
        .await
        .map_err(|source| Error::SecretRead {
            secret: reference.clone(),
            source,
        })?
        .ok_or_else(|| Error::SecretNotFound {
            secret: reference.clone(),
        })?;
    let value = |key: &'static str| -> Result<Option<String>, Error> {
        secret
            .data
            .as_ref()
            .and_then(|data| data.get(key))
            .map(|bytes| {
                String::from_utf8(bytes.0.clone()).map_err(|_| Error::SecretKeyNotText {
                    secret: reference.clone(),
                    key,
                })
            })
            .transpose()
    };
    let required = |key: &'static str| -> Result<String, Error> {
        value(key)?.ok_or_else(|| Error::SecretKeyMissing {
            secret: reference.clone(),
            key,
        })
    };
    Ok(Credentials::new(
        required(ACCESS_KEY_ID_KEY)?,
        required(SECRET_ACCESS_KEY_KEY)?,
        value(SESSION_TOKEN_KEY)?,
        Some(expiry),
        "tether-provider-config-secret",
    ))
}
