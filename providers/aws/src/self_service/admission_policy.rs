//! The `ValidatingAdmissionPolicy` per claim kind (with `paramKind` the class kind)
//! that makes the API server refuse, at `kubectl apply`, a claim outside its class's
//! bounds or from a namespace the class does not serve, with a message naming the
//! bound. The controller repeats each check before it makes anything.
//!
//! A binding cannot take its parameter's name from the object under review, so each
//! binding selects every class and each rule passes for classes other than the
//! claim's own (`variables.ours`). An unknown class matches none and is left to the
//! controller (`ClassNotFound`).
//!
//! `failurePolicy: Ignore`: the policy gives early, clear refusals; the controller
//! enforces. The API server resolves a CRD parameter kind through discovery, which
//! lags up to 30 s behind a new CRD and can fail after a restart (kubernetes#124237,
//! #122658); with `Fail`, every claim would be refused meanwhile with "failed to
//! configure policy", where with `Ignore` the controller refuses the bad ones.

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use serde_json::{Value, json};

/// A CEL rule and the message it gives when it fails.
struct Rule {
    expression: String,
    message: String,
}

/// A rule that the claim's `field`, when set, is the class's default or one of its
/// `allowed` values.
fn allowed_choice(field: &str) -> Rule {
    Rule {
        expression: format!(
            "!variables.ours || !has(object.spec.{field}) || {}",
            offered(field)
        ),
        message: format!(
            "'{field} ' + string(object.spec.{field}) + ' is not allowed by class ' + params.metadata.name + '; it allows ' + {}",
            offer(field)
        ),
    }
}

/// The same rule for a choice the class may leave out, offering only `fallback`.
fn allowed_choice_or(field: &str, fallback: &str) -> Rule {
    Rule {
        expression: format!(
            "!variables.ours || !has(object.spec.{field}) || (has(params.spec.{field}) ? {} : object.spec.{field} == '{fallback}')",
            offered(field)
        ),
        message: format!(
            "'{field} ' + string(object.spec.{field}) + ' is not allowed by class ' + params.metadata.name + '; it allows ' + (has(params.spec.{field}) ? {} : '{fallback}')",
            offer(field)
        ),
    }
}

/// CEL: the claim's `field` is the class's default or among its allowed values.
fn offered(field: &str) -> String {
    format!(
        "(object.spec.{field} == params.spec.{field}.default || (has(params.spec.{field}.allowed) && object.spec.{field} in params.spec.{field}.allowed))"
    )
}

/// CEL: the values the class offers for `field`, as text.
fn offer(field: &str) -> String {
    format!(
        "(string(params.spec.{field}.default) + (has(params.spec.{field}.allowed) ? ', ' + params.spec.{field}.allowed.map(v, string(v)).join(', ') : ''))"
    )
}

/// A rule that the claim's namespace has the labels the class's `namespaceSelector`
/// asks for (`matchLabels` and every `matchExpressions` operator).
fn namespace_selected() -> Rule {
    let selector = "params.spec.namespaceSelector";
    Rule {
        expression: format!(
            "!variables.ours || !has({selector}) || (
  (!has({selector}.matchLabels) || {selector}.matchLabels.all(k, k in variables.labels && variables.labels[k] == {selector}.matchLabels[k])) &&
  (!has({selector}.matchExpressions) || {selector}.matchExpressions.all(e,
    e.operator == 'In' ? (e.key in variables.labels && has(e.values) && variables.labels[e.key] in e.values) :
    e.operator == 'NotIn' ? (!(e.key in variables.labels) || !has(e.values) || !(variables.labels[e.key] in e.values)) :
    e.operator == 'Exists' ? e.key in variables.labels :
    !(e.key in variables.labels))))"
        ),
        message: "'namespace ' + namespaceObject.metadata.name + ' may not use class ' + params.metadata.name + ': its labels do not match the class namespaceSelector'".to_owned(),
    }
}

/// A rule that the claim's `storageGiB`, when set, lies within the class's bounds.
fn storage_within_bounds() -> Rule {
    Rule {
        expression: "!variables.ours || !has(object.spec.storageGiB) || (object.spec.storageGiB >= params.spec.storageGiB.min && object.spec.storageGiB <= params.spec.storageGiB.max)".to_owned(),
        message: "'storageGiB ' + string(object.spec.storageGiB) + ' is outside class ' + params.metadata.name + \"'s bounds of \" + string(params.spec.storageGiB.min) + ' to ' + string(params.spec.storageGiB.max) + ' GiB'".to_owned(),
    }
}

/// The policy for claims of `plural` (in `tether.dev`) against `class_kind`.
fn policy(plural: &str, class_kind: &str, rules: Vec<Rule>) -> ValidatingAdmissionPolicy {
    let validations: Vec<Value> = rules
        .into_iter()
        .map(|rule| {
            json!({
                "expression": rule.expression,
                "messageExpression": rule.message,
                "reason": "Invalid",
            })
        })
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": format!("{plural}.tether.dev")},
        "spec": {
            "failurePolicy": "Ignore",
            "paramKind": {"apiVersion": "tether.dev/v1alpha1", "kind": class_kind},
            "matchConstraints": {"resourceRules": [{
                "apiGroups": ["tether.dev"],
                "apiVersions": ["v1alpha1"],
                "operations": ["CREATE", "UPDATE"],
                "resources": [plural],
            }]},
            "variables": [
                {"name": "ours", "expression": "params.metadata.name == object.spec.className"},
                {"name": "labels", "expression": "has(namespaceObject.metadata.labels) ? namespaceObject.metadata.labels : {}"},
            ],
            "validations": validations,
        },
    }))
    .expect("a well-formed ValidatingAdmissionPolicy")
}

/// The binding that applies the policy for `plural` with every class as parameter.
fn binding(plural: &str) -> ValidatingAdmissionPolicyBinding {
    serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": format!("{plural}.tether.dev")},
        "spec": {
            "policyName": format!("{plural}.tether.dev"),
            "validationActions": ["Deny"],
            "paramRef": {"selector": {}, "parameterNotFoundAction": "Allow"},
        },
    }))
    .expect("a well-formed ValidatingAdmissionPolicyBinding")
}

/// The admission policies of every claim kind.
pub fn admission_policies() -> Vec<ValidatingAdmissionPolicy> {
    vec![
        policy(
            "databaseclaims",
            "DatabaseClass",
            vec![
                namespace_selected(),
                allowed_choice("engineVersion"),
                allowed_choice("instanceClass"),
                storage_within_bounds(),
                allowed_choice_or("deletionPolicy", "Snapshot"),
            ],
        ),
        policy(
            "instanceclaims",
            "InstanceClass",
            vec![
                namespace_selected(),
                allowed_choice("imageId"),
                allowed_choice("instanceType"),
            ],
        ),
    ]
}

/// The bindings of [`admission_policies`].
pub fn admission_policy_bindings() -> Vec<ValidatingAdmissionPolicyBinding> {
    vec![binding("databaseclaims"), binding("instanceclaims")]
}
