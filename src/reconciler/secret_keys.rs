//! Reads the Secret keys a managed object's spec names ([`Managed::secret_key_refs`])
//! in the object's namespace, for the provider's `Context::secrets`: a provider never
//! reads Kubernetes itself. Each Secret is read once per reconcile, however many of
//! its keys the spec names.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};
use tether_api::{
    ErrorClass,
    external::{SecretValue, SecretValues},
    managed::Managed,
};

/// Why a Secret key the spec names has no usable value. No variant carries a value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server did not answer: tried again.
    #[error("reading Secret {namespace}/{name} ({field}): {source}")]
    Read {
        namespace: String,
        name: String,
        field: String,
        #[source]
        source: kube::Error,
    },
    #[error("Secret {namespace}/{name}, named by {field}, does not exist")]
    NoSecret {
        namespace: String,
        name: String,
        field: String,
    },
    #[error("Secret {namespace}/{name} has no key {key} ({field})")]
    NoKey {
        namespace: String,
        name: String,
        key: String,
        field: String,
    },
    #[error("key {key} of Secret {namespace}/{name} ({field}) is not UTF-8 text")]
    NotText {
        namespace: String,
        name: String,
        key: String,
        field: String,
    },
    #[error("key {key} of Secret {namespace}/{name} ({field}) is empty")]
    Empty {
        namespace: String,
        name: String,
        key: String,
        field: String,
    },
}

impl Error {
    /// A failed read is passing; anything else waits for the user to mend the Secret
    /// or the spec (either change reconciles the object).
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Read { .. } => ErrorClass::Transient,
            _ => ErrorClass::Terminal,
        }
    }
}

/// The values of every Secret key `object`'s spec names, by the field that names it,
/// read in the object's namespace through `kube`.
pub async fn read<M: Managed>(kube: &kube::Client, object: &M) -> Result<SecretValues, Error> {
    let wanted = object.secret_key_refs();
    if wanted.is_empty() {
        return Ok(SecretValues::new());
    }
    let namespace = object.namespace().unwrap_or_default();
    let api = Api::<Secret>::namespaced(kube.clone(), &namespace);
    let mut secrets: BTreeMap<String, Secret> = BTreeMap::new();
    let mut values = SecretValues::new();
    for reference in wanted {
        let (name, key, field) = (reference.name, reference.key, reference.field);
        let secret = match secrets.get(&name) {
            Some(secret) => secret,
            None => {
                let read = api.get_opt(&name).await.map_err(|source| Error::Read {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    field: field.clone(),
                    source,
                })?;
                let Some(secret) = read else {
                    return Err(Error::NoSecret {
                        namespace,
                        name,
                        field,
                    });
                };
                secrets.entry(name.clone()).or_insert(secret)
            }
        };
        let Some(bytes) = secret.data.as_ref().and_then(|data| data.get(&key)) else {
            return Err(Error::NoKey {
                namespace,
                name,
                key,
                field,
            });
        };
        let Ok(text) = String::from_utf8(bytes.0.clone()) else {
            return Err(Error::NotText {
                namespace,
                name,
                key,
                field,
            });
        };
        if text.is_empty() {
            return Err(Error::Empty {
                namespace,
                name,
                key,
                field,
            });
        }
        values.insert(field, SecretValue::from(text));
    }
    Ok(values)
}
