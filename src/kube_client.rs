//! The layers tether puts on the Kubernetes client's service stack, so that every
//! request passes them: a client-side rate limit when one is asked for (a token
//! bucket: `qps` a second on average, up to `burst` at once, like client-go's
//! `--kube-api-qps`/`-burst`; none by default, see `--kube-qps`), a
//! count of every request by verb and resource (`tether_kube_requests`), and the
//! leader's write gate (with `--leader-elect`, a replica that cannot be sure it leads
//! writes nothing but its lease).
//!
//! The bucket is written here rather than taken from a crate: tower's `RateLimit` has
//! no burst. The bucket's arithmetic is tested on explicit instants; every request of
//! the integration tests passes the service.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, ready},
    time::Duration,
};

use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

use crate::{
    leader::{self, WriteGate},
    metrics::Metrics,
};

/// A token bucket on tokio's clock. Tokens that are not there yet may be reserved:
/// the caller then waits until its token has accrued, so waiting callers queue in
/// order and the long-run rate never exceeds `qps`.
#[derive(Debug)]
pub struct Bucket {
    qps: f64,
    burst: f64,
    /// Tokens at `at`; negative when reserved ahead.
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket of `burst` tokens refilled at `qps` a second (both at least 1).
    pub fn new(qps: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            qps: qps.max(f64::MIN_POSITIVE),
            burst,
            tokens: burst,
            at: now,
        }
    }

    /// Takes one token at `now`: the instant at which it may be used (`now` when one
    /// is there).
    pub fn reserve(&mut self, now: Instant) -> Instant {
        if now > self.at {
            let accrued = now.duration_since(self.at).as_secs_f64() * self.qps;
            self.tokens = (self.tokens + accrued).min(self.burst);
            self.at = now;
        }
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            self.at.max(now)
        } else {
            self.at + Duration::from_secs_f64(-self.tokens / self.qps)
        }
    }
}

/// Limits every request of the service it wraps to a shared [`Bucket`], or lets
/// them through (no bucket).
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    bucket: Option<Arc<Mutex<Bucket>>>,
}

impl RateLimitLayer {
    /// `qps` requests a second on average, `burst` at once.
    pub fn new(qps: f64, burst: u32) -> Self {
        Self {
            bucket: Some(Arc::new(Mutex::new(Bucket::new(
                qps,
                burst,
                Instant::now(),
            )))),
        }
    }

    /// No client-side limit: the API server's own (API Priority and Fairness) applies.
    pub fn unlimited() -> Self {
        Self { bucket: None }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimited {
            inner,
            bucket: self.bucket.clone(),
            state: State::Empty,
        }
    }
}

/// A service whose requests wait for a token of the bucket.
pub struct RateLimited<S> {
    inner: S,
    bucket: Option<Arc<Mutex<Bucket>>>,
    state: State,
}

enum State {
    /// No token taken for the next request.
    Empty,
    /// A token taken that is usable from the sleep's deadline.
    Waiting(Pin<Box<Sleep>>),
    /// A token ready for the next request.
    Ready,
}

impl<S, Request> Service<Request> for RateLimited<S>
where
    S: Service<Request>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        loop {
            match &mut self.state {
                State::Empty => {
                    let Some(bucket) = &self.bucket else {
                        self.state = State::Ready;
                        continue;
                    };
                    let now = Instant::now();
                    let at = bucket
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .reserve(now);
                    self.state = if at <= now {
                        State::Ready
                    } else {
                        State::Waiting(Box::pin(tokio::time::sleep_until(at)))
                    };
                }
                State::Waiting(sleep) => {
                    ready!(sleep.as_mut().poll(cx));
                    self.state = State::Ready;
                }
                State::Ready => return self.inner.poll_ready(cx),
            }
        }
    }

    fn call(&mut self, request: Request) -> Self::Future {
        self.state = State::Empty;
        self.inner.call(request)
    }
}

/// A layer that wraps each service it is given with a clone of its `T`: the one shape
/// of [`RequestCountLayer`] and [`WriteGateLayer`], whose services differ in `call`.
#[derive(Clone, Debug)]
pub struct WrapLayer<T>(T);

impl<T> WrapLayer<T> {
    /// The layer that wraps every service with a clone of `with`.
    pub fn new(with: T) -> Self {
        Self(with)
    }
}

impl<S, T: Clone> Layer<S> for WrapLayer<T> {
    type Service = Wrapped<S, T>;

    fn layer(&self, inner: S) -> Self::Service {
        Wrapped {
            inner,
            with: self.0.clone(),
        }
    }
}

/// A service `inner` wrapped with a `T` by a [`WrapLayer`].
pub struct Wrapped<S, T> {
    inner: S,
    with: T,
}

/// Counts every request of the service it wraps in [`Metrics`], by verb and resource.
pub type RequestCountLayer = WrapLayer<Arc<Metrics>>;

impl<S, B> Service<http::Request<B>> for Wrapped<S, Arc<Metrics>>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let kind = RequestKind::of(&request);
        self.with
            .kube_request(kind.verb, &kind.resource, kind.metadata_only);
        self.inner.call(request)
    }
}

/// Refuses every write to the API server but the lease's own while the [`WriteGate`]
/// is closed: a replica that is not sure it leads changes nothing in the cluster.
pub type WriteGateLayer = WrapLayer<WriteGate>;

/// The resource that leader election itself writes, gate or no gate.
const LEASES: &str = "leases";

impl<S, B> Service<http::Request<B>> for Wrapped<S, WriteGate>
where
    S: Service<http::Request<B>>,
    S::Error: From<leader::Error>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        futures::future::Either<S::Future, futures::future::Ready<Result<S::Response, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let kind = RequestKind::of(&request);
        if kind.writes()
            && kind.resource != LEASES
            && let Err(refused) = self.with.check()
        {
            return futures::future::Either::Right(futures::future::ready(Err(refused.into())));
        }
        futures::future::Either::Left(self.inner.call(request))
    }
}

/// What a request to the API server asks for, in the API server's own terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestKind {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete` or
    /// `deletecollection` (the API server's verbs).
    pub verb: &'static str,
    /// The resource's plural, with its subresource after a slash (`dbinstances/status`);
    /// empty for paths outside the resource APIs (`/version`).
    pub resource: String,
    /// Whether it asks for metadata only (`PartialObjectMetadata`).
    pub metadata_only: bool,
}

impl RequestKind {
    /// Whether the request changes something.
    fn writes(&self) -> bool {
        matches!(
            self.verb,
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
    }

    fn of<B>(request: &http::Request<B>) -> Self {
        let path = request.uri().path();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        // `/api/v1/…` or `/apis/<group>/<version>/…`; then an optional
        // `namespaces/<namespace>/` before a namespaced resource.
        let rest = match segments.as_slice() {
            ["api", _, rest @ ..] | ["apis", _, _, rest @ ..] => rest,
            _ => &[][..],
        };
        let rest = match rest {
            ["namespaces", _, inner @ ..] if !inner.is_empty() => inner,
            _ => rest,
        };
        // A named object, or a path outside the resource APIs (`/version`): one thing.
        let named = rest.len() >= 2 || rest.is_empty();
        let resource = match rest {
            [resource, _, subresource, ..] => format!("{resource}/{subresource}"),
            [resource, ..] => (*resource).to_owned(),
            [] => String::new(),
        };
        let watching = request.uri().query().is_some_and(|query| {
            query
                .split('&')
                .any(|pair| pair == "watch=true" || pair == "watch=1")
        });
        let verb = match *request.method() {
            http::Method::GET if watching => "watch",
            http::Method::GET if named => "get",
            http::Method::GET => "list",
            http::Method::POST => "create",
            http::Method::PUT => "update",
            http::Method::PATCH => "patch",
            http::Method::DELETE if named => "delete",
            http::Method::DELETE => "deletecollection",
            _ => "other",
        };
        let metadata_only = request
            .headers()
            .get_all(http::header::ACCEPT)
            .iter()
            .any(|value| {
                value
                    .to_str()
                    .is_ok_and(|value| value.contains("as=PartialObjectMetadata"))
            });
        Self {
            verb,
            resource,
            metadata_only,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_bucket_lets_a_burst_through_then_spaces_requests_by_the_rate() {
        let start = Instant::now();
        let mut bucket = Bucket::new(10.0, 3, start);
        for _ in 0..3 {
            assert_eq!(bucket.reserve(start), start);
        }
        // Reserved ahead: 100 ms apart.
        assert_eq!(bucket.reserve(start), start + Duration::from_millis(100));
        assert_eq!(bucket.reserve(start), start + Duration::from_millis(200));
        // Once those are through, the bucket refills up to its burst and no further.
        let later = start + Duration::from_secs(10);
        for _ in 0..3 {
            assert_eq!(bucket.reserve(later), later);
        }
        assert_eq!(bucket.reserve(later), later + Duration::from_millis(100));
    }

    #[test]
    fn a_partly_refilled_bucket_counts_fractions_of_a_token() {
        let start = Instant::now();
        let mut bucket = Bucket::new(2.0, 1, start);
        assert_eq!(bucket.reserve(start), start);
        // Half a second gives back exactly one token at 2 qps.
        let half = start + Duration::from_millis(250);
        assert_eq!(bucket.reserve(half), start + Duration::from_millis(500));
    }

    #[tokio::test]
    async fn without_a_limit_every_request_is_ready_at_once_and_with_one_the_bucket_decides() {
        use futures::FutureExt;
        use tower::ServiceExt;
        let ready_now = |layer: &RateLimitLayer| {
            let mut service = layer.layer(tower::service_fn(|_: ()| async {
                Ok::<_, tower::BoxError>(())
            }));
            async move { service.ready().now_or_never().is_some() }
        };
        let unlimited = RateLimitLayer::unlimited();
        for _ in 0..1000 {
            assert!(ready_now(&unlimited).await);
        }
        let limited = RateLimitLayer::new(0.001, 2);
        assert!(ready_now(&limited).await);
        assert!(ready_now(&limited).await);
        assert!(!ready_now(&limited).await, "the burst of 2 is spent");
    }

    #[tokio::test]
    async fn a_closed_write_gate_refuses_every_write_but_the_leases() {
        use tower::ServiceExt;
        let request = |method: &str, uri: &str| {
            http::Request::builder()
                .method(method)
                .uri(uri)
                .body(())
                .unwrap()
        };
        let passes = |gate: &WriteGate, method: &str, uri: &str| {
            let service = WriteGateLayer::new(gate.clone()).layer(tower::service_fn(
                |_: http::Request<()>| async { Ok::<_, tower::BoxError>(()) },
            ));
            let request = request(method, uri);
            async move { service.oneshot(request).await.is_ok() }
        };
        let status = "/apis/rds.tether.dev/v1alpha1/namespaces/shop/dbinstances/db/status";
        let lease = "/apis/coordination.k8s.io/v1/namespaces/tether/leases/tether";
        let closed = WriteGate::elected();
        assert!(!passes(&closed, "PATCH", status).await);
        assert!(!passes(&closed, "POST", "/api/v1/namespaces/shop/events").await);
        assert!(!passes(&closed, "DELETE", "/api/v1/namespaces/shop/secrets/db").await);
        assert!(passes(&closed, "GET", status).await);
        assert!(passes(&closed, "GET", "/api/v1/secrets?watch=true").await);
        assert!(passes(&closed, "PATCH", lease).await);
        let open = WriteGate::default();
        assert!(passes(&open, "PATCH", status).await);
    }

    #[test]
    fn requests_are_told_apart_by_verb_resource_and_accept_header() {
        let kind = |method: &str, uri: &str, accept: Option<&str>| {
            let mut request = http::Request::builder().method(method).uri(uri);
            if let Some(accept) = accept {
                request = request.header(http::header::ACCEPT, accept);
            }
            let kind = RequestKind::of(&request.body(()).unwrap());
            (kind.verb, kind.resource, kind.metadata_only)
        };
        let metadata = Some("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1");
        let secrets = "/api/v1/namespaces/shop/secrets";
        let rds = "/apis/rds.tether.dev/v1alpha1";
        #[rustfmt::skip]
        let cases = [
            // method, URI, Accept → verb, resource, metadata only
            ("GET", format!("{secrets}?watch=true&resourceVersion=5"), metadata, "watch", "secrets", true),
            ("GET", format!("{rds}/dbinstances?watch=1"), None, "watch", "dbinstances", false),
            ("GET", "/api/v1/secrets?limit=500".to_owned(), None, "list", "secrets", false),
            ("GET", format!("{secrets}/db"), None, "get", "secrets", false),
            ("PATCH", format!("{rds}/namespaces/shop/dbinstances/db/status?fieldManager=tether"), None, "patch", "dbinstances/status", false),
            ("POST", "/api/v1/namespaces/shop/events".to_owned(), None, "create", "events", false),
            ("GET", "/api/v1/namespaces/shop".to_owned(), None, "get", "namespaces", false),
            ("GET", "/api/v1/namespaces".to_owned(), None, "list", "namespaces", false),
            ("GET", "/version".to_owned(), None, "get", "", false),
        ];
        for (method, uri, accept, verb, resource, metadata_only) in cases {
            assert_eq!(
                kind(method, &uri, accept),
                (verb, resource.to_owned(), metadata_only),
                "{method} {uri}"
            );
        }
    }
}
