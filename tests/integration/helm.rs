//! The Helm chart (`charts/tether`) as helm renders it, without a cluster: it lints
//! (default values and `watchNamespaces`); the Deployment, Service, budget and
//! ServiceMonitor are as the README documents; and its RBAC grants exactly the
//! README's table, nothing with a wildcard. `helm_install.rs` installs it.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use tether_testkit::Helm;

/// What tether may do in each namespace it reconciles (all, or each watched one):
/// `(API group, resource, verbs)`, as the README's RBAC table lists them.
pub(crate) const NAMESPACED: &[(&str, &str, &str)] = &[
    ("rds.tether.dev", "dbsubnetgroups", "get list watch patch"),
    ("ec2.tether.dev", "securitygroups", "get list watch patch"),
    (
        "rds.tether.dev",
        "dbinstances",
        "get list watch create patch delete",
    ),
    (
        "ec2.tether.dev",
        "instances",
        "get list watch create patch delete",
    ),
    ("rds.tether.dev", "dbsubnetgroups/status", "patch"),
    ("rds.tether.dev", "dbinstances/status", "patch"),
    ("ec2.tether.dev", "securitygroups/status", "patch"),
    ("ec2.tether.dev", "instances/status", "patch"),
    ("tether.dev", "databaseclaims", "list watch patch"),
    ("tether.dev", "instanceclaims", "list watch patch"),
    ("tether.dev", "databaseclaims/status", "patch"),
    ("tether.dev", "instanceclaims/status", "patch"),
    ("rds.tether.dev", "dbinstances/finalizers", "update"),
    ("ec2.tether.dev", "instances/finalizers", "update"),
    ("tether.dev", "databaseclaims/finalizers", "update"),
    ("tether.dev", "instanceclaims/finalizers", "update"),
    ("", "secrets", "get list watch create patch"),
    ("events.k8s.io", "events", "create patch"),
];

/// What tether may do with cluster-scoped kinds (besides reading its own CRDs, by
/// name, and namespaces, which `cluster_grants` adds).
const CLUSTER: &[(&str, &str, &str)] = &[
    ("tether.dev", "providerconfigs", "get list watch patch"),
    ("tether.dev", "providerconfigs/status", "patch"),
    ("tether.dev", "databaseclasses", "get list watch patch"),
    ("tether.dev", "instanceclasses", "get list watch patch"),
];

/// The verbs tether needs on Secrets: never `delete` (the garbage collector deletes a
/// connection Secret with its owner) nor `update`.
const SECRET_VERBS: &str = "get list watch create patch";

/// One permission: `verb group/resource`, with `:name` when a rule names its objects.
fn grant(verb: &str, group: &str, resource: &str, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("{verb} {group}/{resource}:{name}"),
        None => format!("{verb} {group}/{resource}"),
    }
}

/// The permissions a table of `(group, resource, verbs)` lists.
fn table(rows: &[(&str, &str, &str)]) -> BTreeSet<String> {
    rows.iter()
        .flat_map(|(group, resource, verbs)| {
            verbs
                .split(' ')
                .map(move |verb| grant(verb, group, resource, None))
        })
        .collect()
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|items| items.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The permissions the `rules` of a Role or ClusterRole grant, one per verb, group,
/// resource and (when the rule names them) object.
pub(crate) fn grants(rules: &Value) -> BTreeSet<String> {
    let mut grants = BTreeSet::new();
    for rule in rules.as_array().expect("rules is a list") {
        let names = strings(&rule["resourceNames"]);
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    if names.is_empty() {
                        grants.insert(grant(verb, group, resource, None));
                    }
                    for name in &names {
                        grants.insert(grant(verb, group, resource, Some(name)));
                    }
                }
            }
        }
    }
    grants
}

/// The cluster-scoped permissions: [`CLUSTER`], `get` on each of tether's CRDs by
/// name, and `get`, `list` and `watch` on namespaces (by name when tether watches only
/// `watched`).
fn cluster_grants(watched: &[&str]) -> BTreeSet<String> {
    let mut grants = table(CLUSTER);
    for crd in tether::crds::all() {
        let name = crd.metadata.name.expect("a CRD has a name");
        grants.insert(grant(
            "get",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            Some(&name),
        ));
    }
    for verb in ["get", "list", "watch"] {
        if watched.is_empty() {
            grants.insert(grant(verb, "", "namespaces", None));
        }
        for namespace in watched {
            grants.insert(grant(verb, "", "namespaces", Some(namespace)));
        }
    }
    grants
}

/// The leader lease's permissions: create any (a create names no object), the rest on
/// `lease` only.
fn lease_grants(lease: &str) -> BTreeSet<String> {
    let mut grants = BTreeSet::from([grant("create", "coordination.k8s.io", "leases", None)]);
    for verb in ["get", "list", "watch", "patch"] {
        grants.insert(grant(verb, "coordination.k8s.io", "leases", Some(lease)));
    }
    grants
}

/// The document of `kind` named `name` (in `namespace`, if given).
pub(crate) fn find<'a>(
    documents: &'a [Value],
    kind: &str,
    name: &str,
    namespace: Option<&str>,
) -> &'a Value {
    documents
        .iter()
        .find(|document| {
            document["kind"] == kind
                && document["metadata"]["name"] == name
                && namespace.is_none_or(|namespace| document["metadata"]["namespace"] == namespace)
        })
        .unwrap_or_else(|| panic!("the chart renders no {kind} {name} in {namespace:?}"))
}

fn kinds(documents: &[Value]) -> BTreeSet<String> {
    documents
        .iter()
        .map(|document| document["kind"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Every string anywhere in `value`.
fn every_string(value: &Value) -> Vec<&str> {
    match value {
        Value::String(string) => vec![string],
        Value::Array(items) => items.iter().flat_map(every_string).collect(),
        Value::Object(fields) => fields.values().flat_map(every_string).collect(),
        _ => Vec::new(),
    }
}

/// The Roles and ClusterRoles of `documents`, as `(kind, namespace, name, rules)`.
fn roles(documents: &[Value]) -> Vec<(&str, &str, &str, &Value)> {
    documents
        .iter()
        .filter(|document| document["kind"] == "Role" || document["kind"] == "ClusterRole")
        .map(|document| {
            (
                document["kind"].as_str().unwrap(),
                document["metadata"]["namespace"].as_str().unwrap_or(""),
                document["metadata"]["name"].as_str().unwrap(),
                &document["rules"],
            )
        })
        .collect()
}

/// No rule of any role holds `*`, and the Secret verbs are exactly [`SECRET_VERBS`].
fn assert_no_wildcard_and_secret_verbs(documents: &[Value]) {
    for (kind, namespace, name, rules) in roles(documents) {
        assert!(
            every_string(rules).iter().all(|value| !value.contains('*')),
            "{kind} {namespace}/{name} holds a wildcard: {rules:#}"
        );
        for rule in rules.as_array().unwrap() {
            if strings(&rule["resources"]).contains(&"secrets") {
                let verbs = strings(&rule["verbs"]).join(" ");
                assert!(
                    verbs == SECRET_VERBS || (verbs == "get" && name.ends_with("-credentials")),
                    "{kind} {namespace}/{name} grants {verbs} on Secrets"
                );
            }
        }
    }
}

/// Each binding binds its role, of the same name, to the chart's ServiceAccount only.
fn assert_bindings(documents: &[Value], service_account: &str, namespace: &str) {
    let bindings: Vec<&Value> = documents
        .iter()
        .filter(|document| {
            document["kind"] == "RoleBinding" || document["kind"] == "ClusterRoleBinding"
        })
        .collect();
    assert_eq!(
        bindings.len(),
        roles(documents).len(),
        "one binding per role"
    );
    for binding in bindings {
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}]),
        );
        let role = find(
            documents,
            binding["roleRef"]["kind"].as_str().unwrap(),
            binding["roleRef"]["name"].as_str().unwrap(),
            binding["metadata"]["namespace"].as_str(),
        );
        assert_eq!(role["metadata"]["name"], binding["metadata"]["name"]);
    }
}

#[tokio::test]
async fn the_chart_lints_with_default_values_and_with_watch_namespaces() {
    let helm = Helm::new();
    let chart = Helm::chart();
    let chart = chart.to_str().unwrap();
    for values in [
        "replicas=2",
        "watchNamespaces={shop,web}",
        "replicas=1,leaderElection.enabled=false,metrics.serviceMonitor.enabled=true",
    ] {
        helm.run(&["lint", "--strict", chart, "--set", values])
            .await
            .unwrap_or_else(|error| panic!("{error}"));
    }
    let misspelt = helm
        .run(&["lint", chart, "--set", "watchNamespace={shop}"])
        .await
        .expect_err("values.schema.json refuses an unknown value");
    assert!(misspelt.contains("watchNamespace"), "{misspelt}");
}

#[tokio::test]
async fn the_chart_renders_the_deployment_service_and_budget_as_documented() {
    let helm = Helm::new();
    let documents = helm.template("tether", "tether-system", &[]).await;
    let deployment = find(&documents, "Deployment", "tether", Some("tether-system"));
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"];
    let spec = &pod["spec"];
    assert_eq!(spec["serviceAccountName"], "tether");
    assert_eq!(
        spec["securityContext"],
        json!({"runAsNonRoot": true, "runAsUser": 65532, "runAsGroup": 65532, "seccompProfile": {"type": "RuntimeDefault"}})
    );
    let container = &spec["containers"][0];
    assert_eq!(
        container["image"],
        format!("tether:{}", env!("CARGO_PKG_VERSION")),
        "the image tag defaults to the chart's appVersion, which is tether's version"
    );
    assert_eq!(
        container["args"],
        json!([
            "run",
            "--admin-addr=0.0.0.0:8080",
            "--log-format=json",
            "--leader-elect",
            "--lease-name=tether"
        ])
    );
    assert_eq!(
        container["env"],
        json!([
            {"name": "TETHER_LOG", "value": "info"},
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        ])
    );
    assert_eq!(
        container["ports"],
        json!([{"name": "admin", "containerPort": 8080, "protocol": "TCP"}])
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "admin"})
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "admin"})
    );
    for bound in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                container["resources"][bound][resource].is_string(),
                "no {bound}.{resource}: {:#}",
                container["resources"]
            );
        }
    }
    assert_eq!(
        container["securityContext"],
        json!({
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "readOnlyRootFilesystem": true,
            "allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        })
    );
    let pod_labels = &pod["metadata"]["labels"];
    let service = find(
        &documents,
        "Service",
        "tether-metrics",
        Some("tether-system"),
    );
    assert_eq!(service["spec"]["selector"], *pod_labels);
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "metrics", "port": 8080, "targetPort": "admin", "protocol": "TCP"}])
    );
    let budget = find(&documents, "PodDisruptionBudget", "tether", None);
    assert_eq!(budget["spec"]["minAvailable"], 1);
    assert_eq!(budget["spec"]["selector"]["matchLabels"], *pod_labels);
    assert!(!kinds(&documents).contains("ServiceMonitor"));
    assert!(kinds(&documents).contains("ValidatingAdmissionPolicy"));
    assert!(
        !kinds(&documents).contains("CustomResourceDefinition"),
        "CRDs are in the chart's crds/, which `helm template` leaves out"
    );

    // One replica: no budget (it could never be met), still leader election.
    let single = helm
        .template("tether", "tether-system", &["--set", "replicas=1"])
        .await;
    assert!(!kinds(&single).contains("PodDisruptionBudget"));
    let deployment = find(&single, "Deployment", "tether", None);
    assert!(
        strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"])
            .contains(&"--leader-elect")
    );

    // Everything a value changes.
    let values = "watchNamespaces={shop,web},logFormat=text,logLevel=debug,pollInterval=1m,\
                  metrics.serviceMonitor.enabled=true,leaderElection.enabled=false,admissionPolicies.enabled=false";
    let custom = helm
        .template(
            "orders",
            "platform",
            &[
                "--set",
                values,
                "--set",
                r"serviceAccount.annotations.eks\.amazonaws\.com/role-arn=arn:aws:iam::123456789012:role/tether",
            ],
        )
        .await;
    let container = &find(&custom, "Deployment", "orders-tether", None)["spec"]["template"]["spec"]
        ["containers"][0];
    assert_eq!(
        container["args"],
        json!([
            "run",
            "--admin-addr=0.0.0.0:8080",
            "--log-format=text",
            "--watch-namespaces=shop,web",
            "--poll-interval=1m"
        ])
    );
    assert_eq!(
        container["env"][0],
        json!({"name": "TETHER_LOG", "value": "debug"})
    );
    assert_eq!(
        find(&custom, "ServiceAccount", "orders-tether", Some("platform"))["metadata"]["annotations"],
        json!({"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/tether"})
    );
    let monitor = find(&custom, "ServiceMonitor", "orders-tether", Some("platform"));
    assert_eq!(
        monitor["spec"]["endpoints"][0]["port"], "metrics",
        "it scrapes the metrics Service's port"
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"],
        find(&custom, "Deployment", "orders-tether", None)["spec"]["selector"]["matchLabels"]
    );
    assert!(!kinds(&custom).contains("ValidatingAdmissionPolicy"));
    assert!(
        !custom
            .iter()
            .any(|document| document["metadata"]["name"] == "orders-tether-leader-election"),
        "no lease permissions without leader election"
    );
}

#[tokio::test]
async fn the_charts_rbac_grants_the_readme_table_and_no_wildcard() {
    let helm = Helm::new();

    // All namespaces: one ClusterRole, and the lease Role.
    let documents = helm.template("tether", "tether-system", &[]).await;
    assert_no_wildcard_and_secret_verbs(&documents);
    assert_bindings(&documents, "tether", "tether-system");
    let mut expected = cluster_grants(&[]);
    expected.extend(table(NAMESPACED));
    assert_eq!(
        grants(&find(&documents, "ClusterRole", "tether", None)["rules"]),
        expected
    );
    assert_eq!(
        grants(
            &find(
                &documents,
                "Role",
                "tether-leader-election",
                Some("tether-system")
            )["rules"]
        ),
        lease_grants("tether")
    );
    assert_eq!(roles(&documents).len(), 2);

    // Watched namespaces: the namespaced kinds in a Role in each, the cluster-scoped
    // ones (namespaces by name) in the ClusterRole, Events about cluster-scoped
    // objects in `default`, ProviderConfig credentials in the release's namespace.
    let documents = helm
        .template(
            "tether",
            "tether-system",
            &["--set", "watchNamespaces={shop,web,shop}"],
        )
        .await;
    assert_no_wildcard_and_secret_verbs(&documents);
    assert_bindings(&documents, "tether", "tether-system");
    assert_eq!(
        grants(&find(&documents, "ClusterRole", "tether", None)["rules"]),
        cluster_grants(&["shop", "web"])
    );
    for namespace in ["shop", "web"] {
        assert_eq!(
            grants(&find(&documents, "Role", "tether", Some(namespace))["rules"]),
            table(NAMESPACED),
            "in {namespace}"
        );
    }
    assert_eq!(
        grants(&find(&documents, "Role", "tether-cluster-events", Some("default"))["rules"]),
        table(&[("events.k8s.io", "events", "create patch")])
    );
    assert_eq!(
        grants(
            &find(
                &documents,
                "Role",
                "tether-credentials",
                Some("tether-system")
            )["rules"]
        ),
        table(&[("", "secrets", "get")])
    );
    assert_eq!(roles(&documents).len(), 6, "{:#?}", roles(&documents));
}
