//! The connection Secret of a managed object: rendered from the provider's connection
//! details, owned by the object (so it goes when the object goes, unless the cloud
//! resource is kept: then it is orphaned first), and never written over a Secret that
//! tether does not own, not even one created between tether's read and its write.

use std::collections::BTreeMap;

use k8s_openapi::{ByteString, api::core::v1::Secret};
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PostParams},
    core::ObjectMeta,
};
use tether_api::{external::ConnectionDetails, managed::LocalSecretReference};

use crate::{FIELD_MANAGER, secret_watch::SecretNames};

/// The `type` of every connection Secret.
pub const SECRET_TYPE: &str = "tether.dev/connection";
/// Label key marking the Secrets tether manages.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY_VALUE: &str = "tether";
/// Annotation set while the Secret holds credentials written ahead of the cloud call
/// that applies them (see `ExternalClient::prepare`).
pub const PENDING_ANNOTATION: &str = "tether.dev/pending-credentials";
/// Annotation on a Secret left behind when its object was deleted and its cloud
/// resource kept: `<Kind>/<external name>` of that resource. An object that adopts
/// the same resource takes the Secret over, credentials and all.
pub const RETAINED_FROM_ANNOTATION: &str = "tether.dev/retained-from";

/// Why a connection Secret may not be written.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "Secret {namespace}/{name} exists and is not owned by this object; tether will not overwrite it"
    )]
    NotOwned { namespace: String, name: String },
    #[error("the object has no UID yet, so it cannot own a Secret")]
    NoUid,
    #[error("reading or writing Secret {name}: {source}")]
    Kube {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// The connection Secret of one object: what it holds now, and the way to change it.
/// Loading it checks ownership, so nothing is created in the cloud for an object whose
/// Secret name is taken by someone else.
pub struct Publisher {
    api: Api<Secret>,
    name: Option<String>,
    /// The Secret's resourceVersion as read (or last written); `None` when it does not
    /// exist. Every write is conditional on it.
    resource_version: Option<String>,
    published: ConnectionDetails,
    pending: bool,
    /// The Secret's annotations as read (or last written).
    annotations: BTreeMap<String, String>,
    /// Whether the Secret is one left behind for the resource `owner` adopts, to be
    /// taken over by the next write.
    taking_over: bool,
}

impl Publisher {
    /// Reads the connection Secret `target` of `owner` (none when `target` is `None`).
    /// `adopted` is `<Kind>/<external name>` when a user adopted the cloud resource: a
    /// Secret left behind for that resource (see [`orphan`]) may then be taken over.
    /// `cached` is the cache of the Secrets in scope: a Secret it has never seen (once
    /// it has listed) is not read. A Secret made since and not cached yet is
    /// safe: it is created, not overwritten, and that create fails.
    pub async fn load<K>(
        kube: &kube::Client,
        owner: &K,
        target: Option<&LocalSecretReference>,
        adopted: Option<&str>,
        cached: &SecretNames,
    ) -> Result<Self, Error>
    where
        K: Resource<DynamicType = ()>,
    {
        let api = Api::namespaced(kube.clone(), &owner.namespace().unwrap_or_default());
        let Some(target) = target else {
            return Ok(Self {
                api,
                name: None,
                resource_version: None,
                published: ConnectionDetails::default(),
                pending: false,
                annotations: BTreeMap::new(),
                taking_over: false,
            });
        };
        let namespace = owner.namespace().unwrap_or_default();
        let existing = if cached.known_absent(&namespace, &target.name) {
            None
        } else {
            api.get_opt(&target.name)
                .await
                .map_err(|source| Error::Kube {
                    name: target.name.clone(),
                    source,
                })?
        };
        let taking_over = match check_ownership(owner, existing.as_ref()) {
            Ok(()) => false,
            Err(refused) => {
                let retained_for = existing
                    .as_ref()
                    .and_then(|secret| secret.annotations().get(RETAINED_FROM_ANNOTATION));
                if adopted.is_none() || retained_for.map(String::as_str) != adopted {
                    return Err(refused);
                }
                true
            }
        };
        let published = ConnectionDetails(
            existing
                .as_ref()
                .and_then(|secret| secret.data.clone())
                .unwrap_or_default()
                .into_iter()
                .map(|(key, value)| (key, value.0))
                .collect(),
        );
        let pending = existing.as_ref().is_some_and(|secret| {
            secret
                .annotations()
                .get(PENDING_ANNOTATION)
                .is_some_and(|value| value == "true")
        });
        let annotations = existing
            .as_ref()
            .map(|secret| secret.annotations().clone())
            .unwrap_or_default();
        Ok(Self {
            api,
            name: Some(target.name.clone()),
            resource_version: existing.and_then(|secret| secret.metadata.resource_version),
            published,
            pending,
            annotations,
            taking_over,
        })
    }

    /// What the Secret holds now.
    pub fn published(&self) -> &ConnectionDetails {
        &self.published
    }

    /// Whether the Secret holds credentials that no cloud call has applied yet.
    pub fn credentials_pending(&self) -> bool {
        self.pending
    }

    /// The Secret's annotations, as read or last written.
    pub fn annotations(&self) -> &BTreeMap<String, String> {
        &self.annotations
    }

    /// Writes `details` (merged over what is published) into the Secret, marked
    /// `pending` or not; does nothing when that is what it already holds, or when the
    /// object has no connection Secret. Returns whether it wrote.
    pub async fn publish<K>(
        &mut self,
        owner: &K,
        details: &ConnectionDetails,
        pending: bool,
    ) -> Result<bool, Error>
    where
        K: Resource<DynamicType = ()>,
    {
        self.publish_recorded(owner, details, pending, &BTreeMap::new())
            .await
    }

    /// Writes `details` as [`Publisher::publish`] does, with the `recorded` annotations set in the
    /// same write (a `None` removes one): a record that changes together with the
    /// credentials, such as when a login was rotated.
    pub async fn publish_recorded<K>(
        &mut self,
        owner: &K,
        details: &ConnectionDetails,
        pending: bool,
        recorded: &BTreeMap<String, Option<String>>,
    ) -> Result<bool, Error>
    where
        K: Resource<DynamicType = ()>,
    {
        let Some(name) = &self.name else {
            return Ok(false);
        };
        let mut merged = self.published.clone();
        merged
            .0
            .extend(details.0.iter().map(|(k, v)| (k.clone(), v.clone())));
        let mut annotations = self.annotations.clone();
        for (key, value) in recorded {
            match value {
                Some(value) => annotations.insert(key.clone(), value.clone()),
                None => annotations.remove(key),
            };
        }
        if pending {
            annotations.insert(PENDING_ANNOTATION.to_owned(), "true".to_owned());
        } else {
            annotations.remove(PENDING_ANNOTATION);
        }
        if merged == self.published
            && pending == self.pending
            && annotations == self.annotations
            && !self.taking_over
        {
            return Ok(false);
        }
        let mut secret = render(owner, name, &merged)?;
        let mut patched_annotations: BTreeMap<String, Option<String>> = recorded.clone();
        patched_annotations.insert(
            PENDING_ANNOTATION.to_owned(),
            pending.then(|| "true".to_owned()),
        );
        let set: BTreeMap<String, String> = patched_annotations
            .iter()
            .filter_map(|(key, value)| Some((key.clone(), value.clone()?)))
            .collect();
        if !set.is_empty() {
            secret.metadata.annotations = Some(set);
        }
        let kube_error = |source| Error::Kube {
            name: name.clone(),
            source,
        };
        let written = match &self.resource_version {
            // Created, not applied: a Secret someone made since it was read is never
            // taken over (the create fails, and the next reconcile reads it).
            None => self
                .api
                .create(
                    &PostParams {
                        field_manager: Some(FIELD_MANAGER.to_owned()),
                        ..PostParams::default()
                    },
                    &secret,
                )
                .await
                .map_err(kube_error)?,
            // Patched on condition that it is still the Secret that was read. A merge
            // patch, not an apply: it can remove the pending mark that the create set.
            Some(version) => {
                let mut patch = serde_json::json!({
                    "metadata": {
                        "resourceVersion": version,
                        "labels": secret.metadata.labels,
                        "annotations": patched_annotations,
                    },
                    "data": secret.data,
                });
                if self.taking_over {
                    patch["metadata"]["ownerReferences"] =
                        serde_json::json!(secret.metadata.owner_references);
                    patch["metadata"]["annotations"][RETAINED_FROM_ANNOTATION] =
                        serde_json::Value::Null;
                }
                self.api
                    .patch(name, &crate::patch_params(), &Patch::Merge(&patch))
                    .await
                    .map_err(kube_error)?
            }
        };
        self.resource_version = written.metadata.resource_version;
        self.annotations = written.metadata.annotations.unwrap_or_default();
        self.published = merged;
        self.pending = pending;
        self.taking_over = false;
        Ok(true)
    }
}

/// Drops `owner`'s owner reference from its connection Secret `name`, so that the
/// garbage collector keeps the Secret when `owner` goes, and marks it as left behind
/// for the cloud resource `retained_from` (`<Kind>/<external name>`); returns the name
/// when the Secret exists and `owner` no longer owns it. A Secret of someone else is
/// left as it is. The write is conditional on the Secret not having changed since it
/// was read.
pub async fn orphan<K>(
    kube: &kube::Client,
    owner: &K,
    name: &str,
    retained_from: &str,
) -> Result<Option<String>, Error>
where
    K: Resource<DynamicType = ()>,
{
    let api = Api::<Secret>::namespaced(kube.clone(), &owner.namespace().unwrap_or_default());
    let kube_error = |source| Error::Kube {
        name: name.to_owned(),
        source,
    };
    let Some(secret) = api.get_opt(name).await.map_err(kube_error)? else {
        return Ok(None);
    };
    let owner_uid = owner.uid().ok_or(Error::NoUid)?;
    let references = secret.owner_references();
    let remaining: Vec<_> = references
        .iter()
        .filter(|reference| reference.uid != owner_uid)
        .collect();
    if remaining.len() == references.len() {
        let owned_by_tether =
            secret.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY_VALUE);
        return Ok(owned_by_tether.then(|| name.to_owned()));
    }
    let metadata = serde_json::json!({
        "resourceVersion": secret.metadata.resource_version,
        "ownerReferences": remaining,
        "annotations": {RETAINED_FROM_ANNOTATION: retained_from},
    });
    crate::merge_metadata(&api, name, metadata)
        .await
        .map_err(kube_error)?;
    Ok(Some(name.to_owned()))
}

/// The connection Secret `name` for `owner`, in the owner's namespace, holding
/// `details`, with a controller owner reference to `owner`.
pub fn render<K>(owner: &K, name: &str, details: &ConnectionDetails) -> Result<Secret, Error>
where
    K: Resource<DynamicType = ()>,
{
    let owner_reference = owner.controller_owner_ref(&()).ok_or(Error::NoUid)?;
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: owner.namespace(),
            labels: Some([(MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned())].into()),
            owner_references: Some(vec![owner_reference]),
            ..ObjectMeta::default()
        },
        type_: Some(SECRET_TYPE.to_owned()),
        data: Some(
            details
                .0
                .iter()
                .map(|(key, value)| (key.clone(), ByteString(value.clone())))
                .collect(),
        ),
        ..Secret::default()
    })
}

/// Checks that `existing` (the Secret already at the target name, if any) may be
/// written for `owner`: only a Secret whose controller is `owner` may.
pub fn check_ownership<K>(owner: &K, existing: Option<&Secret>) -> Result<(), Error>
where
    K: Resource<DynamicType = ()>,
{
    let Some(existing) = existing else {
        return Ok(());
    };
    let owner_uid = owner.uid().ok_or(Error::NoUid)?;
    let controlled_by_owner = existing
        .owner_references()
        .iter()
        .any(|reference| reference.controller == Some(true) && reference.uid == owner_uid);
    if controlled_by_owner {
        Ok(())
    } else {
        Err(Error::NotOwned {
            namespace: existing.namespace().unwrap_or_default(),
            name: existing.name_any(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::api::core::v1::ConfigMap;

    use super::*;

    fn owner() -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some("orders".into()),
                namespace: Some("shop".into()),
                uid: Some("6b1c6a2e-0000-4000-8000-000000000001".into()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    fn details() -> ConnectionDetails {
        ConnectionDetails(BTreeMap::from([
            ("host".to_owned(), b"db.example".to_vec()),
            ("password".to_owned(), b"canary".to_vec()),
        ]))
    }

    #[test]
    fn the_secret_is_typed_labelled_and_owned_in_the_owners_namespace() {
        let secret = render(&owner(), "orders-connection", &details()).unwrap();
        assert_eq!(secret.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(secret.type_.as_deref(), Some(SECRET_TYPE));
        assert_eq!(
            secret.labels().get(MANAGED_BY_LABEL).map(String::as_str),
            Some("tether")
        );
        let reference = &secret.owner_references()[0];
        assert_eq!(reference.uid, owner().uid().unwrap());
        assert_eq!(reference.controller, Some(true));
        let data = secret.data.unwrap();
        assert_eq!(data["host"].0, b"db.example");
        assert_eq!(data["password"].0, b"canary");
    }

    #[test]
    fn only_a_secret_controlled_by_the_owner_may_be_written() {
        let owner = owner();
        assert!(check_ownership(&owner, None).is_ok());
        let ours = render(&owner, "orders-connection", &details()).unwrap();
        assert!(check_ownership(&owner, Some(&ours)).is_ok());

        let mut foreign = ours.clone();
        foreign.metadata.owner_references = None;
        assert!(matches!(
            check_ownership(&owner, Some(&foreign)),
            Err(Error::NotOwned { namespace, name }) if namespace == "shop" && name == "orders-connection"
        ));

        let mut owned_by_another = ours;
        owned_by_another.metadata.owner_references.as_mut().unwrap()[0].uid = "someone-else".into();
        assert!(check_ownership(&owner, Some(&owned_by_another)).is_err());
    }

    #[test]
    fn an_object_without_a_uid_cannot_own_a_secret() {
        let mut owner = owner();
        owner.metadata.uid = None;
        assert!(matches!(render(&owner, "x", &details()), Err(Error::NoUid)));
    }
}
