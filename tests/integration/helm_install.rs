//! The chart installed with `helm install` on a real API server, which validates every
//! object it makes, and tether run from what it installed: the real binary, with the
//! Deployment's arguments and environment, authenticated as the chart's
//! ServiceAccount by a TokenRequest token, so every request it makes is authorized by
//! the chart's RBAC alone. A database (and, with watchNamespaces, a claim) becoming
//! Ready with its Secret, with nothing refused in tether's log, proves that RBAC is
//! enough; SubjectAccessReviews show what it refuses.

use std::{path::Path, time::Duration};

use k8s_openapi::{
    api::{
        admissionregistration::v1::ValidatingAdmissionPolicy,
        apps::v1::Deployment,
        coordination::v1::Lease,
        core::v1::{Namespace, Pod, Secret},
        rbac::v1::ClusterRole,
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
    runtime::wait::conditions,
};
use serde_json::json;
use tether_api::conditions::READY;
use tether_aws::{
    rds::DBInstance,
    self_service::{DatabaseClaim, DatabaseClass},
};
use tether_testkit::{
    ControlPlane, Emulator, FaultProxy, Helm, TestNamespace, Tether, cluster,
    emulator::EmulatorKind,
};

use crate::{
    data_plane::connect_with,
    db_instance_controller::{SECRET_KEYS, database, wait_secret},
    world::{DEFAULT_CREDENTIALS, World, provider_config_yaml},
};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");

/// Chart values that make tests quick: tether looks at objects on their way every
/// second and at Ready ones every 10 s, and logs at debug level (where a refused
/// Event would show).
const QUICK: &str = "pollInterval=10s,waitInterval=1s,logLevel=debug";

/// One release of the chart.
struct Release {
    helm: Helm,
    name: String,
    namespace: String,
    /// The name of its objects (Deployment, ServiceAccount, roles, lease).
    fullname: String,
}

impl Release {
    /// `helm install <name> charts/tether --namespace <namespace> --create-namespace
    /// <extra…>` on the cluster of `kubeconfig`; fails with helm's output when the
    /// API server refuses anything.
    async fn install(kubeconfig: &Path, name: &str, namespace: &str, extra: &[&str]) -> Release {
        let helm = Helm::on(kubeconfig);
        let chart = Helm::chart();
        let mut args = vec!["install", name, chart.to_str().unwrap()];
        args.extend(["--namespace", namespace, "--create-namespace"]);
        args.extend(extra);
        helm.run(&args)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        Release {
            helm,
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            fullname: if name.contains("tether") {
                name.to_owned()
            } else {
                format!("{name}-tether")
            },
        }
    }

    async fn uninstall(&self) {
        self.helm
            .run(&["uninstall", &self.name, "--namespace", &self.namespace])
            .await
            .unwrap_or_else(|error| panic!("{error}"));
    }
}

/// The test's world in namespace `ns`: a fault proxy over moto, a ProviderConfig
/// (named after `ns`, with `credentials`) at it, and the real `tether` started as a
/// pod of `release`'s Deployment would run it: its arguments (but with the admin
/// server on 127.0.0.1 and a free port) and environment (`POD_NAME` and
/// `POD_NAMESPACE` as the downward API sets them), plus `env`, authenticated as its
/// ServiceAccount with a token from the TokenRequest API. Returns once tether leads,
/// with the directory of that kubeconfig. The last argument is the cluster's admin
/// kubeconfig and the test's own control plane, if it has one.
async fn start_world(
    release: &Release,
    ns: TestNamespace,
    credentials: &str,
    env: &[(&str, &str)],
    (admin_kubeconfig, control_plane): (&Path, Option<ControlPlane>),
) -> (World, tempfile::TempDir) {
    let client = ns.client.clone();
    let proxy = FaultProxy::start(Emulator::of(EmulatorKind::Moto).endpoint()).await;
    let provider_config = ns.name.clone();
    ns.apply(&provider_config_yaml(&provider_config, &proxy, credentials))
        .await
        .expect("applying the ProviderConfig");
    let deployment = Api::<Deployment>::namespaced(client.clone(), &release.namespace)
        .get(&release.fullname)
        .await
        .expect("reading the release's Deployment");
    let pod = deployment
        .spec
        .and_then(|spec| spec.template.spec)
        .expect("the Deployment has a pod template");
    let container = &pod.containers[0];
    let rendered = container.args.clone().unwrap_or_default();
    assert!(
        rendered.contains(&"--admin-addr=0.0.0.0:8080".to_owned()),
        "the admin server listens on every address in a pod: {rendered:?}"
    );
    let mut args: Vec<String> = rendered
        .into_iter()
        .filter(|arg| !arg.starts_with("--admin-addr="))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let service_account = pod.service_account_name.expect("a ServiceAccount");
    cluster::service_account_kubeconfig(
        &client,
        admin_kubeconfig,
        &release.namespace,
        &service_account,
        &kubeconfig,
    )
    .await;
    args.extend(["--kubeconfig".to_owned(), kubeconfig.display().to_string()]);
    let pod_name = format!("{}-0", release.fullname);
    let mut variables: Vec<(String, String)> = container
        .env
        .iter()
        .flatten()
        .map(|variable| {
            let field = variable
                .value_from
                .as_ref()
                .and_then(|from| from.field_ref.as_ref())
                .map(|field| field.field_path.as_str());
            let value = match (&variable.value, field) {
                (Some(value), None) => value.clone(),
                (None, Some("metadata.name")) => pod_name.clone(),
                (None, Some("metadata.namespace")) => release.namespace.clone(),
                other => panic!("the test cannot set {}: {other:?}", variable.name),
            };
            (variable.name.clone(), value)
        })
        .collect();
    variables.extend(
        env.iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned())),
    );
    let tether =
        tokio::task::spawn_blocking(move || Tether::start_command(TETHER, args, variables))
            .await
            .expect("starting tether run");
    let world = World {
        ns,
        proxy,
        tether,
        provider_config,
        emulator: EmulatorKind::Moto,
        control_plane,
    };
    wait_leader(&client, release, &world).await;
    (world, dir)
}

/// One question to the API server's RBAC: may the release's ServiceAccount do
/// `"verb group/resource[/subresource][:name]"` (`""` for the core group, as the
/// chart tests' grants read) in `namespace`, and the answer expected.
struct Access {
    allowed: bool,
    what: String,
    namespace: Option<String>,
}

/// It may.
fn may(what: impl Into<String>, namespace: Option<&str>) -> Access {
    Access {
        allowed: true,
        what: what.into(),
        namespace: namespace.map(str::to_owned),
    }
}

/// It may not.
fn may_not(what: impl Into<String>, namespace: Option<&str>) -> Access {
    Access {
        allowed: false,
        ..may(what, namespace)
    }
}

/// Asks a SubjectAccessReview for each of `accesses`, as the release's ServiceAccount.
async fn assert_access(client: &kube::Client, release: &Release, accesses: &[Access]) {
    for access in accesses {
        let (verb, target) = access.what.split_once(' ').expect("verb and resource");
        let (resource, name) = match target.split_once(':') {
            Some((resource, name)) => (resource, Some(name)),
            None => (target, None),
        };
        let allowed = cluster::service_account_may(
            client,
            (&release.namespace, &release.fullname),
            verb,
            resource,
            access.namespace.as_deref(),
            name,
        )
        .await;
        assert_eq!(
            allowed,
            access.allowed,
            "the chart's ServiceAccount may{} {} in {:?}",
            if access.allowed { "" } else { " not" },
            access.what,
            access.namespace
        );
    }
}

/// What tether's RBAC refuses wherever it runs (and, as a check of the checks, a few
/// things it allows) for objects in `namespace`.
fn refused_everywhere(release: &Release, namespace: &str) -> Vec<Access> {
    let ns = Some(namespace);
    let own = Some(release.namespace.as_str());
    let crds = "apiextensions.k8s.io/customresourcedefinitions";
    let rbac = "rbac.authorization.k8s.io";
    vec![
        may_not(format!("delete /namespaces:{namespace}"), None),
        may_not("create /namespaces", None),
        may_not(format!("patch /namespaces:{namespace}"), None),
        may_not("delete /secrets:orders-db", ns),
        may_not("update /secrets:orders-db", ns),
        may_not("deletecollection /secrets", ns),
        may_not("list /pods", ns),
        may_not("create /pods", own),
        may_not("get /configmaps:anything", ns),
        may_not(format!("create {rbac}/clusterrolebindings"), None),
        may_not(format!("create {rbac}/rolebindings"), ns),
        may_not(format!("update {crds}:dbinstances.rds.tether.dev"), None),
        may_not(format!("delete {crds}:dbinstances.rds.tether.dev"), None),
        may_not(format!("get {crds}:widgets.example.com"), None),
        may_not(format!("list {crds}"), None),
        may_not("create tether.dev/providerconfigs", None),
        may_not("update tether.dev/providerconfigs:default", None),
        may_not("delete tether.dev/providerconfigs:default", None),
        may("patch tether.dev/providerconfigs:default", None),
        may("patch tether.dev/providerconfigs/status:default", None),
        may_not("delete tether.dev/databaseclasses:small", None),
        may_not("create tether.dev/databaseclaims", ns),
        may_not("delete tether.dev/databaseclaims:orders", ns),
        may_not("delete rds.tether.dev/dbsubnetgroups:orders", ns),
        may_not("update rds.tether.dev/dbinstances:orders", ns),
        may_not("patch coordination.k8s.io/leases:someone-elses", own),
        may_not(
            format!("delete coordination.k8s.io/leases:{}", release.fullname),
            own,
        ),
        may_not("delete events.k8s.io/events:anything", ns),
        may("get /secrets:orders-db", ns),
        may("create rds.tether.dev/dbinstances", ns),
        may("patch tether.dev/databaseclaims/status:orders", ns),
        may(format!("get {crds}:dbinstances.rds.tether.dev"), None),
        may(
            format!("patch coordination.k8s.io/leases:{}", release.fullname),
            own,
        ),
    ]
}

/// Waits until the lease of `release` names the replica of `world` (`<fullname>-0`)
/// as its holder.
async fn wait_leader(client: &kube::Client, release: &Release, world: &World) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), &release.namespace);
    for _ in 0..120 {
        if let Some(lease) = leases.get_opt(&release.fullname).await.unwrap()
            && lease
                .spec
                .as_ref()
                .and_then(|spec| spec.holder_identity.as_deref())
                == Some(format!("{}-0", release.fullname).as_str())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!(
        "tether did not take the lease {}/{}:\n{}",
        release.namespace,
        release.fullname,
        world.log_tail()
    );
}

/// Nothing tether asked for was refused.
fn assert_nothing_forbidden(world: &World) {
    let log = world.tether.log();
    let refused: Vec<&str> = log
        .lines()
        .filter(|line| line.to_lowercase().contains("forbidden"))
        .collect();
    assert!(
        refused.is_empty(),
        "the chart's RBAC refused tether: {refused:#?}"
    );
}

#[tokio::test]
async fn helm_install_on_a_fresh_cluster_then_tether_reconciles_a_database_as_the_charts_service_account()
 {
    let control_plane = tokio::task::spawn_blocking(ControlPlane::start)
        .await
        .expect("starting a control plane");
    let admin_kubeconfig = control_plane.kubeconfig().to_owned();
    let client = control_plane.client().await;
    let release = Release::install(
        &admin_kubeconfig,
        "tether",
        "tether-system",
        &["--set", QUICK],
    )
    .await;

    // Helm installed the CRDs (its crds/) and the admission policies (templates).
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in tether::crds::all() {
        cluster::wait_for(
            &crds,
            &crd.name_any(),
            conditions::is_crd_established(),
            "Established",
        )
        .await;
    }
    let policies = Api::<ValidatingAdmissionPolicy>::all(client.clone());
    for (policy, _) in tether::crds::admission_policies() {
        policies
            .get(&policy.name_any())
            .await
            .expect("the chart installs the admission policies");
    }

    // The pod the Deployment makes passes the restricted Pod Security Standard.
    Api::<Namespace>::all(client.clone())
        .patch(
            &release.namespace,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}})),
        )
        .await
        .unwrap();
    let template = Api::<Deployment>::namespaced(client.clone(), &release.namespace)
        .get(&release.fullname)
        .await
        .unwrap()
        .spec
        .unwrap()
        .template;
    let mut pod = Pod {
        metadata: template.metadata.unwrap_or_default(),
        spec: template.spec,
        ..Pod::default()
    };
    pod.metadata.name = Some(format!("{}-pod-security", release.fullname));
    Api::<Pod>::namespaced(client.clone(), &release.namespace)
        .create(
            &PostParams {
                dry_run: true,
                ..PostParams::default()
            },
            &pod,
        )
        .await
        .expect("the restricted Pod Security Standard admits the chart's pod");

    // tether, as the chart runs it, reconciles a database in another namespace.
    let ns = TestNamespace::new_on(&control_plane).await;
    // The keys the SDK's default chain finds, as IRSA or Pod Identity would give them.
    let keys = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ];
    let (world, _kubeconfig) = start_world(
        &release,
        ns,
        DEFAULT_CREDENTIALS,
        &keys,
        (&admin_kubeconfig, Some(control_plane)),
    )
    .await;
    world.proxy.serve_databases();
    world.apply(&database(&world, "orders", "")).await;
    let api: Api<DBInstance> = world.ns.api();
    world
        .wait_condition(&api, "orders", READY, "True", None)
        .await;
    let data = wait_secret(&world, "orders-db", "complete", |data| {
        SECRET_KEYS.iter().all(|key| data.contains_key(*key))
    })
    .await;
    assert_eq!(connect_with(&world, &data).await, "app orders");
    world.wait_for_event("orders", "Created").await;
    assert_nothing_forbidden(&world);
    let metrics = world
        .tether
        .admin_get("/metrics")
        .expect("the admin port the Service names serves /metrics");
    assert!(
        metrics.lines().any(|line| line == "tether_leader 1"),
        "{metrics}"
    );

    let namespace = world.ns.name.clone();
    let mut accesses = refused_everywhere(&release, &namespace);
    accesses.extend([
        may("list /secrets", None),
        may("get /namespaces:kube-system", None),
        may("watch /namespaces", None),
    ]);
    assert_access(&client, &release, &accesses).await;

    world.finish().await;
}

#[tokio::test]
async fn with_watch_namespaces_tether_reconciles_a_claim_there_and_nothing_elsewhere_as_the_charts_service_account()
 {
    let control_plane = ControlPlane::shared();
    let ns = TestNamespace::new().await;
    let home = TestNamespace::new().await;
    let elsewhere = TestNamespace::new().await;
    let client = ns.client.clone();
    cluster::install_crds(&client).await;
    // The policies come with the CRDs that every test installs, not with this release.
    let values = format!(
        "{QUICK},watchNamespaces={{{}}},admissionPolicies.enabled=false",
        ns.name
    );
    let release = Release::install(
        control_plane.kubeconfig(),
        &home.name,
        &home.name,
        &["--skip-crds", "--set", &values],
    )
    .await;

    // The AWS keys are a Secret in the release's namespace, which tether may read.
    home.apply("apiVersion: v1\nkind: Secret\nmetadata: {name: aws-keys}\nstringData: {aws_access_key_id: testing, aws_secret_access_key: testing}\n")
        .await
        .expect("creating the credentials Secret");
    let credentials = format!(
        "{{source: Secret, secretRef: {{namespace: {}, name: aws-keys}}}}",
        home.name
    );
    let (world, _kubeconfig) = start_world(
        &release,
        ns,
        &credentials,
        &[],
        (control_plane.kubeconfig(), None),
    )
    .await;
    world.proxy.serve_databases();

    // A claim in the watched namespace: tether reads the namespace's labels, keeps the
    // class, makes the DBInstance by server-side apply, and publishes the Secret.
    let namespace = world.ns.name.clone();
    let class = format!("{namespace}-small");
    world
        .apply(&format!(
            "apiVersion: tether.dev/v1alpha1\nkind: DatabaseClass\nmetadata: {{name: {class}}}\nspec:\n  providerConfigRef: {{name: {}}}\n  engine: postgres\n  engineVersion: {{default: '16'}}\n  instanceClass: {{default: db.t3.micro}}\n  storageGiB: {{default: 20, min: 20, max: 100}}\n  deletionPolicy: {{default: Delete}}\n  namespaceSelector:\n    matchLabels: {{kubernetes.io/metadata.name: {namespace}}}\n",
            world.provider_config
        ))
        .await;
    world
        .apply(&format!(
            "apiVersion: tether.dev/v1alpha1\nkind: DatabaseClaim\nmetadata: {{name: orders}}\nspec:\n  className: {class}\n  databaseName: orders\n"
        ))
        .await;
    // A database in a namespace the release does not watch.
    cluster::apply(
        &client,
        Some(&elsewhere.name),
        &database(&world, "orders", ""),
    )
    .await
    .expect("applying a DBInstance elsewhere");

    let claims: Api<DatabaseClaim> = world.ns.api();
    world
        .wait_condition_of(&claims, "orders", READY, "True", None, |claim| {
            claim
                .status
                .as_ref()
                .map_or(&[], |status| status.conditions.as_slice())
        })
        .await;
    let data = wait_secret(&world, "orders", "complete", |data| {
        SECRET_KEYS.iter().all(|key| data.contains_key(*key))
    })
    .await;
    assert_eq!(connect_with(&world, &data).await, "app orders");
    let classes: Api<DatabaseClass> = Api::all(client.clone());
    assert_eq!(
        classes.get(&class).await.unwrap().finalizers(),
        [format!("claims.tether.dev/{namespace}")],
        "the class in use keeps the finalizer of a controller of one namespace"
    );
    let untouched = Api::<DBInstance>::namespaced(client.clone(), &elsewhere.name)
        .get("orders")
        .await
        .unwrap();
    assert!(
        untouched.finalizers().is_empty() && untouched.status.is_none(),
        "tether left a namespace it does not watch alone: {untouched:?}"
    );

    let (home_ns, other) = (Some(home.name.as_str()), Some(elsewhere.name.as_str()));
    let ns = Some(namespace.as_str());
    let mut accesses = refused_everywhere(&release, &namespace);
    accesses.extend([
        // Only the watched namespace, and the credentials in the release's.
        may_not("get /secrets:orders", other),
        may_not("list /secrets", None),
        may_not("list /secrets", home_ns),
        may("get /secrets:aws-keys", home_ns),
        may_not("create /secrets", home_ns),
        may_not("create rds.tether.dev/dbinstances", other),
        may_not("list rds.tether.dev/dbinstances", None),
        may("list rds.tether.dev/dbinstances", ns),
        may_not("patch rds.tether.dev/dbinstances/status:orders", other),
        may_not("create events.k8s.io/events", other),
        may("create events.k8s.io/events", Some("default")),
        may_not(format!("get /namespaces:{}", elsewhere.name), None),
        may(format!("get /namespaces:{namespace}"), None),
        // The namespace watch asks for the watched namespace by name.
        may_not("list /namespaces", None),
        may_not(format!("watch /namespaces:{}", elsewhere.name), None),
        may(format!("watch /namespaces:{namespace}"), None),
    ]);
    assert_access(&client, &release, &accesses).await;

    // Deleting the claim deletes its database (tether may delete DBInstances); then
    // the class, no longer used, goes too (tether releases its finalizer).
    claims
        .delete("orders", &DeleteParams::default())
        .await
        .unwrap();
    world.wait_gone(&claims, "orders").await;
    world
        .wait_gone(&world.ns.api::<DBInstance>(), "orders")
        .await;
    classes
        .delete(&class, &DeleteParams::default())
        .await
        .unwrap();
    world.wait_gone(&classes, &class).await;
    assert_nothing_forbidden(&world);

    // Uninstalling leaves the CRDs (and so every object) in place.
    release.uninstall().await;
    assert!(
        Api::<ClusterRole>::all(client.clone())
            .get_opt(&release.fullname)
            .await
            .unwrap()
            .is_none()
    );
    Api::<CustomResourceDefinition>::all(client.clone())
        .get("dbinstances.rds.tether.dev")
        .await
        .expect("helm uninstall keeps the CRDs");
    Api::<Secret>::namespaced(client.clone(), &home.name)
        .delete("aws-keys", &DeleteParams::default())
        .await
        .unwrap();
    world.finish().await;
    home.delete().await;
    elsewhere.delete().await;
}
