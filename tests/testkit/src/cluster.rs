//! Working with the test cluster the way a user would: install the CRDs, apply YAML
//! manifests, and wait for conditions.

use std::{path::Path, time::Duration};

use k8s_openapi::{
    api::{
        authentication::v1::{TokenRequest, TokenRequestSpec},
        authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec},
        core::v1::{Namespace, ServiceAccount},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams},
    config::Kubeconfig,
    core::ObjectMeta,
    discovery::{self, Scope},
    runtime::wait::{Condition, await_condition, conditions},
};

use crate::ControlPlane;

/// Field manager of everything the tests apply.
pub const FIELD_MANAGER: &str = "tether-tests";

/// A namespace of its own for one test, on the shared control plane.
pub struct TestNamespace {
    /// A client for the test's runtime.
    pub client: kube::Client,
    /// The namespace's name.
    pub name: String,
}

impl TestNamespace {
    /// Creates a fresh namespace (`t-` and a random suffix) on the shared control plane.
    pub async fn new() -> TestNamespace {
        Self::new_on(ControlPlane::shared()).await
    }

    /// Creates a fresh namespace on `control_plane` (one of the test's own).
    pub async fn new_on(control_plane: &ControlPlane) -> TestNamespace {
        let client = control_plane.client().await;
        let namespace = Api::<Namespace>::all(client.clone())
            .create(
                &PostParams::default(),
                &Namespace {
                    metadata: ObjectMeta {
                        generate_name: Some("t-".into()),
                        ..ObjectMeta::default()
                    },
                    ..Namespace::default()
                },
            )
            .await
            .expect("creating a test namespace");
        TestNamespace {
            client,
            name: namespace.name_any(),
        }
    }

    /// An `Api` for a namespaced kind in this namespace.
    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }

    /// Server-side applies every document of `yaml`; namespaced objects without a
    /// namespace land in this one. Returns the objects as the API server stored them,
    /// or the API server's first refusal.
    pub async fn apply(&self, yaml: &str) -> Result<Vec<DynamicObject>, kube::Error> {
        apply(&self.client, Some(&self.name), yaml).await
    }

    /// Dry-runs `yaml` until the API server's admission refuses it (up to 60 s: an
    /// admission policy whose parameter kind is a new CRD takes effect only once the
    /// API server has discovered that CRD, kubernetes#124237), and returns its message;
    /// fails naming `what` when it is still admitted then.
    pub async fn refusal_at_admission(&self, yaml: &str, what: &str) -> String {
        for _ in 0..60 {
            match dry_run(&self.client, Some(&self.name), yaml).await {
                Err(kube::Error::Api(status)) => return status.message,
                Err(other) => panic!("dry-running {what}: {other}"),
                Ok(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
        panic!("{what} was still admitted after 60 s");
    }

    /// Applies `yaml`, which the API server must refuse, and returns its message;
    /// fails naming `what` when the apply succeeds or fails for another reason.
    pub async fn refusal(&self, yaml: &str, what: &str) -> String {
        match self.apply(yaml).await {
            Err(kube::Error::Api(status)) => status.message,
            other => panic!("{what} was not refused: {other:?}"),
        }
    }

    /// Deletes the namespace (a test calls this once it passed; a failed test leaves
    /// its namespace behind to look at).
    pub async fn delete(self) {
        Api::<Namespace>::all(self.client)
            .delete(&self.name, &DeleteParams::default())
            .await
            .expect("deleting the test namespace");
    }
}

/// Server-side applies every document of `yaml`, putting namespaced objects without
/// a namespace into `namespace`.
pub async fn apply(
    client: &kube::Client,
    namespace: Option<&str>,
    yaml: &str,
) -> Result<Vec<DynamicObject>, kube::Error> {
    apply_with(
        client,
        namespace,
        yaml,
        PatchParams::apply(FIELD_MANAGER).force(),
    )
    .await
}

/// [`apply`] as a server-side dry run: the API server validates and admits (or
/// refuses) every document, and stores nothing.
pub async fn dry_run(
    client: &kube::Client,
    namespace: Option<&str>,
    yaml: &str,
) -> Result<Vec<DynamicObject>, kube::Error> {
    apply_with(
        client,
        namespace,
        yaml,
        PatchParams::apply(FIELD_MANAGER).force().dry_run(),
    )
    .await
}

async fn apply_with(
    client: &kube::Client,
    namespace: Option<&str>,
    yaml: &str,
    params: PatchParams,
) -> Result<Vec<DynamicObject>, kube::Error> {
    let documents: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(yaml).expect("the test's YAML parses");
    let mut applied = Vec::new();
    for document in documents.into_iter().filter(|d| !d.is_null()) {
        let mut object: DynamicObject =
            serde_json::from_value(document).expect("every document is a Kubernetes object");
        let types = object
            .types
            .clone()
            .expect("every document has apiVersion and kind");
        let gvk = GroupVersionKind::try_from(&types).expect("a valid apiVersion");
        let (resource, capabilities) = discovery::pinned_kind(client, &gvk).await?;
        let api: Api<DynamicObject> = match capabilities.scope {
            Scope::Cluster => Api::all_with(client.clone(), &resource),
            Scope::Namespaced => {
                let namespace = object
                    .metadata
                    .namespace
                    .clone()
                    .or(namespace.map(str::to_owned))
                    .expect("a namespace for a namespaced object");
                object.metadata.namespace = Some(namespace.clone());
                Api::namespaced_with(client.clone(), &namespace, &resource)
            }
        };
        let name = object.name_any();
        applied.push(api.patch(&name, &params, &Patch::Apply(&object)).await?);
    }
    Ok(applied)
}

/// Applies every file of the repository's `crds/` and waits until each is Established.
pub async fn install_crds(client: &kube::Client) {
    let dir = crate::repo_root().join("crds");
    install_crds_from(client, &dir).await;
}

/// Applies every YAML file of `dir`: the CRDs first, waiting until each is
/// Established, then the rest (the admission policies, whose parameters are CRDs).
pub async fn install_crds_from(client: &kube::Client, dir: &Path) {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("reading {}: {error}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    let (crds, others): (Vec<_>, Vec<_>) = files
        .into_iter()
        .map(|file| {
            let yaml = std::fs::read_to_string(&file).expect("reading a CRD file");
            (file, yaml)
        })
        .partition(|(_, yaml)| yaml.contains("\nkind: CustomResourceDefinition\n"));
    let mut names = Vec::new();
    for (file, yaml) in &crds {
        for object in apply(client, None, yaml)
            .await
            .unwrap_or_else(|error| panic!("applying {}: {error}", file.display()))
        {
            names.push(object.name_any());
        }
    }
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in names {
        wait_for(&api, &name, conditions::is_crd_established(), "Established").await;
    }
    for (file, yaml) in &others {
        apply(client, None, yaml)
            .await
            .unwrap_or_else(|error| panic!("applying {}: {error}", file.display()));
    }
}

/// Waits up to 60 s for `condition` on the object `name`, panicking with `what` if it
/// does not hold by then.
pub async fn wait_for<K>(api: &Api<K>, name: &str, condition: impl Condition<K>, what: &str) -> K
where
    K: Clone + std::fmt::Debug + Send + serde::de::DeserializeOwned + kube::Resource + 'static,
{
    let waited = tokio::time::timeout(
        Duration::from_secs(60),
        await_condition(api.clone(), name, condition),
    )
    .await;
    match waited {
        Ok(Ok(Some(object))) => object,
        Ok(Ok(None)) => panic!("{name} was deleted while waiting for {what}"),
        Ok(Err(error)) => panic!("watching {name} for {what}: {error}"),
        Err(_) => panic!("{name} was not {what} within 60 s"),
    }
}

/// Writes to `path` a kubeconfig for the cluster of `admin_kubeconfig` that acts as the
/// ServiceAccount `namespace/name`, with a token from the TokenRequest API (valid for
/// an hour), as a pod of that ServiceAccount authenticates: every request made with it
/// is authorized by the ServiceAccount's RBAC alone.
pub async fn service_account_kubeconfig(
    client: &kube::Client,
    admin_kubeconfig: &Path,
    namespace: &str,
    name: &str,
    path: &Path,
) {
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let token = Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|error| {
            panic!("requesting a token of ServiceAccount {namespace}/{name}: {error}")
        })
        .status
        .expect("a TokenRequest answer has a status")
        .token;
    let admin = Kubeconfig::read_from(admin_kubeconfig).expect("reading the admin kubeconfig");
    let cluster_name = admin
        .contexts
        .iter()
        .find(|context| Some(&context.name) == admin.current_context.as_ref())
        .or(admin.contexts.first())
        .and_then(|context| context.context.as_ref())
        .map(|context| context.cluster.clone())
        .expect("the admin kubeconfig has a context");
    let cluster = admin
        .clusters
        .iter()
        .find(|cluster| cluster.name == cluster_name)
        .expect("the admin kubeconfig names its context's cluster");
    let user = format!("system:serviceaccount:{namespace}:{name}");
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": cluster_name, "user": user, "namespace": namespace}}],
        "current-context": user,
    });
    std::fs::write(path, kubeconfig.to_string())
        .unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
}

/// Whether the API server's RBAC lets the ServiceAccount `(namespace, name)` do `verb`
/// on `resource` (`group/resource` or `group/resource/subresource`, the group empty
/// for the core group) named `object` in `in_namespace`, as `kubectl auth can-i --as`
/// asks it: a SubjectAccessReview.
pub async fn service_account_may(
    client: &kube::Client,
    (namespace, name): (&str, &str),
    verb: &str,
    resource: &str,
    in_namespace: Option<&str>,
    object: Option<&str>,
) -> bool {
    let mut parts = resource.splitn(3, '/');
    let group = parts.next().unwrap_or_default();
    let plural = parts.next().expect("group/resource");
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(format!("system:serviceaccount:{namespace}:{name}")),
            groups: Some(vec![
                "system:serviceaccounts".to_owned(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".to_owned(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                verb: Some(verb.to_owned()),
                group: Some(group.to_owned()),
                resource: Some(plural.to_owned()),
                subresource: parts.next().map(str::to_owned),
                namespace: in_namespace.map(str::to_owned),
                name: object.map(str::to_owned),
                ..ResourceAttributes::default()
            }),
            ..SubjectAccessReviewSpec::default()
        },
        ..SubjectAccessReview::default()
    };
    Api::<SubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("a SubjectAccessReview")
        .status
        .expect("a review has a status")
        .allowed
}
