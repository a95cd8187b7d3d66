//! The controller's Prometheus metrics (prometheus-client), served as OpenMetrics text
//! on the admin server's `/metrics`: reconciles by kind and result with their
//! duration, AWS calls by service, operation and outcome, managed objects by kind and
//! Ready state, the time from creation to first Ready, and whether this replica leads.

use std::{
    collections::HashMap,
    fmt,
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use prometheus_client::{
    encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use tether_api::{
    ErrorClass,
    telemetry::{CallObserver, CallOutcome},
};

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `kind` and `result` (`ok`, `error`), and for an error its class as `reason`: an
/// `ok` series has no `reason`, so the label set stays as small as the classes.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct ReconcileLabels {
    kind: String,
    failure: Option<ErrorClass>,
}

impl EncodeLabelSet for ReconcileLabels {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> fmt::Result {
        ("kind", self.kind.as_str()).encode(encoder.encode_label())?;
        match self.failure {
            None => ("result", "ok").encode(encoder.encode_label()),
            Some(class) => {
                ("result", "error").encode(encoder.encode_label())?;
                ("reason", class.as_str()).encode(encoder.encode_label())
            }
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RotationLabels {
    kind: String,
    step: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    service: String,
    operation: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ObjectLabels {
    kind: String,
    ready: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    verb: String,
    resource: String,
    metadata_only: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Every metric of the process, and the registry that renders them.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ReconcileLabels, Counter>,
    reconcile_seconds: HistogramFamily<KindLabels>,
    aws_calls: Family<CallLabels, Counter>,
    objects: Family<ObjectLabels, Gauge>,
    time_to_ready_seconds: HistogramFamily<KindLabels>,
    leader: Gauge,
    kube_requests: Family<RequestLabels, Counter>,
    password_rotations: Family<RotationLabels, Counter>,
    /// The last known Ready state of each object (kind, UID), counted into `objects`.
    readiness: Mutex<HashMap<(String, String), bool>>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Buckets of reconcile durations: 5 ms to about 80 s.
fn reconcile_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// Buckets of the time to first Ready: 1 s to about 2.3 h.
fn ready_buckets() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 14))
}

impl Metrics {
    /// Every metric at zero, registered under the `tether` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tether");
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles of managed objects, by kind and result (ok, error), with the class of an error as reason",
            reconciles.clone(),
        );
        let reconcile_seconds: HistogramFamily<KindLabels> =
            Family::new_with_constructor(reconcile_buckets);
        registry.register(
            "reconcile_duration_seconds",
            "How long one reconcile of a managed object took, by kind",
            reconcile_seconds.clone(),
        );
        let aws_calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "aws_calls",
            "Calls to AWS (every attempt), by service, operation and outcome (ok, throttled, error)",
            aws_calls.clone(),
        );
        let objects = Family::<ObjectLabels, Gauge>::default();
        registry.register(
            "managed_objects",
            "Managed objects this replica reconciles, by kind and Ready state",
            objects.clone(),
        );
        let time_to_ready_seconds: HistogramFamily<KindLabels> =
            Family::new_with_constructor(ready_buckets);
        registry.register(
            "time_to_ready_seconds",
            "Time from an object's creation to its resource's first Ready, by kind",
            time_to_ready_seconds.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica holds the leader lease (or runs without leader election)",
            leader.clone(),
        );
        let kube_requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "kube_requests",
            "Requests made to the Kubernetes API server, by verb, resource (plural, and /subresource) and whether they asked for metadata only",
            kube_requests.clone(),
        );
        let password_rotations = Family::<RotationLabels, Counter>::default();
        registry.register(
            "password_rotations",
            "Steps of password rotations, by kind, step (switch: the connection Secret got a new login; retire: the previous login's password was changed to one nobody knows) and result (ok, error)",
            password_rotations.clone(),
        );
        Self {
            registry,
            kube_requests,
            password_rotations,
            reconciles,
            reconcile_seconds,
            aws_calls,
            objects,
            time_to_ready_seconds,
            leader,
            readiness: Mutex::default(),
        }
    }

    /// One reconcile of a `kind` object took `took` and ended well, or with a failure
    /// of class `failure`.
    pub fn reconciled(&self, kind: &str, failure: Option<ErrorClass>, took: Duration) {
        self.reconciles
            .get_or_create(&ReconcileLabels {
                kind: kind.to_owned(),
                failure,
            })
            .inc();
        self.reconcile_seconds
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// A `step` (`switch` or `retire`) of a `kind` object's password rotation ended
    /// well or not.
    pub fn rotation_step(&self, kind: &str, step: &str, ok: bool) {
        self.password_rotations
            .get_or_create(&RotationLabels {
                kind: kind.to_owned(),
                step: step.to_owned(),
                result: if ok { "ok" } else { "error" }.to_owned(),
            })
            .inc();
    }

    /// The `kind` object `uid` is (or is not) Ready; `None` once it is gone.
    pub fn object_ready(&self, kind: &str, uid: &str, ready: Option<bool>) {
        let mut readiness = self.readiness();
        let key = (kind.to_owned(), uid.to_owned());
        match ready {
            Some(ready) => readiness.insert(key, ready),
            None => readiness.remove(&key),
        };
        for state in [true, false] {
            let count = readiness
                .iter()
                .filter(|((of, _), ready)| of == kind && **ready == state)
                .count();
            self.objects
                .get_or_create(&ObjectLabels {
                    kind: kind.to_owned(),
                    ready: state.to_string(),
                })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// A `kind` object's resource was Ready for the first time, `after` its creation.
    pub fn first_ready(&self, kind: &str, after: Duration) {
        self.time_to_ready_seconds
            .get_or_create(&KindLabels {
                kind: kind.to_owned(),
            })
            .observe(after.as_secs_f64());
    }

    /// A request to the API server was made: `verb` on `resource` (its plural, with a
    /// subresource after a slash), for its metadata only or not.
    pub fn kube_request(&self, verb: &str, resource: &str, metadata_only: bool) {
        self.kube_requests
            .get_or_create(&RequestLabels {
                verb: verb.to_owned(),
                resource: resource.to_owned(),
                metadata_only: metadata_only.to_string(),
            })
            .inc();
    }

    /// Whether this replica leads.
    pub fn set_leader(&self, leads: bool) {
        self.leader.set(i64::from(leads));
    }

    /// Every metric as OpenMetrics text.
    pub fn render(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }

    fn readiness(&self) -> MutexGuard<'_, HashMap<(String, String), bool>> {
        self.readiness
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl CallObserver for Metrics {
    fn cloud_call(&self, service: &str, operation: &str, outcome: CallOutcome) {
        self.aws_calls
            .get_or_create(&CallLabels {
                service: service.to_owned(),
                operation: operation.to_owned(),
                outcome: outcome.as_str().to_owned(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_names_every_metric_with_its_labels() {
        let metrics = Metrics::new();
        metrics.reconciled("DBInstance", None, Duration::from_millis(30));
        metrics.reconciled(
            "DBInstance",
            Some(ErrorClass::Throttled),
            Duration::from_millis(30),
        );
        metrics.cloud_call("rds", "CreateDBInstance", CallOutcome::Ok);
        metrics.cloud_call("ec2", "RunInstances", CallOutcome::Throttled);
        metrics.object_ready("DBInstance", "u1", Some(true));
        metrics.object_ready("DBInstance", "u2", Some(false));
        metrics.first_ready("DBInstance", Duration::from_secs(5));
        metrics.set_leader(true);
        metrics.kube_request("patch", "dbinstances/status", false);
        let text = metrics.render();
        for line in [
            r#"tether_reconciles_total{kind="DBInstance",result="ok"} 1"#,
            r#"tether_reconciles_total{kind="DBInstance",result="error",reason="Throttled"} 1"#,
            r#"tether_reconcile_duration_seconds_count{kind="DBInstance"} 2"#,
            r#"tether_aws_calls_total{service="rds",operation="CreateDBInstance",outcome="ok"} 1"#,
            r#"tether_aws_calls_total{service="ec2",operation="RunInstances",outcome="throttled"} 1"#,
            r#"tether_managed_objects{kind="DBInstance",ready="true"} 1"#,
            r#"tether_managed_objects{kind="DBInstance",ready="false"} 1"#,
            r#"tether_time_to_ready_seconds_count{kind="DBInstance"} 1"#,
            "tether_leader 1",
            r#"tether_kube_requests_total{verb="patch",resource="dbinstances/status",metadata_only="false"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn an_object_that_goes_leaves_the_counts() {
        let metrics = Metrics::new();
        metrics.object_ready("Instance", "u1", Some(false));
        metrics.object_ready("Instance", "u1", Some(true));
        metrics.object_ready("Instance", "u2", Some(true));
        metrics.object_ready("Instance", "u1", None);
        let text = metrics.render();
        assert!(text.contains(r#"tether_managed_objects{kind="Instance",ready="true"} 1"#));
        assert!(text.contains(r#"tether_managed_objects{kind="Instance",ready="false"} 0"#));
    }
}
