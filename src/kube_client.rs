//! The layers tether puts on the Kubernetes client's service stack, so that every
//! request passes them: a client-side rate limit (a token bucket: `qps` a second on
//! average, up to `burst` at once, like client-go's `--kube-api-qps`/`-burst`), and a
//! count of watch requests by resource (`tether_kube_watches`).
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

use crate::metrics::Metrics;

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

/// Limits every request of the service it wraps to a shared [`Bucket`].
#[derive(Clone, Debug)]
pub struct RateLimitLayer {
    bucket: Arc<Mutex<Bucket>>,
}

impl RateLimitLayer {
    /// `qps` requests a second on average, `burst` at once.
    pub fn new(qps: f64, burst: u32) -> Self {
        Self {
            bucket: Arc::new(Mutex::new(Bucket::new(qps, burst, Instant::now()))),
        }
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
    bucket: Arc<Mutex<Bucket>>,
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
                    let now = Instant::now();
                    let at = self
                        .bucket
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

/// Counts the watch requests of the service it wraps in [`Metrics`].
#[derive(Clone, Debug)]
pub struct WatchCountLayer {
    metrics: Arc<Metrics>,
}

impl WatchCountLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for WatchCountLayer {
    type Service = WatchCounted<S>;

    fn layer(&self, inner: S) -> Self::Service {
        WatchCounted {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// A service that counts its watch requests.
pub struct WatchCounted<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B> Service<http::Request<B>> for WatchCounted<S>
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
        if let Some((resource, metadata_only)) = watch_of(&request) {
            self.metrics.kube_watch(resource, metadata_only);
        }
        self.inner.call(request)
    }
}

/// The resource (plural) a watch request is for, and whether it asks for metadata
/// only; `None` for any other request.
fn watch_of<B>(request: &http::Request<B>) -> Option<(&str, bool)> {
    let watching = request
        .uri()
        .query()?
        .split('&')
        .any(|pair| pair == "watch=true" || pair == "watch=1");
    if !watching {
        return None;
    }
    let resource = request.uri().path().rsplit('/').next()?;
    let metadata_only = request
        .headers()
        .get_all(http::header::ACCEPT)
        .iter()
        .any(|value| {
            value
                .to_str()
                .is_ok_and(|value| value.contains("as=PartialObjectMetadata"))
        });
    Some((resource, metadata_only))
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

    #[test]
    fn watches_are_told_apart_by_resource_and_accept_header() {
        let watch =
            http::Request::get("/api/v1/namespaces/shop/secrets?watch=true&resourceVersion=5")
                .header(
                    http::header::ACCEPT,
                    "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
                )
                .body(())
                .unwrap();
        assert_eq!(watch_of(&watch), Some(("secrets", true)));
        let full = http::Request::get("/apis/rds.tether.dev/v1alpha1/dbinstances?watch=1")
            .body(())
            .unwrap();
        assert_eq!(watch_of(&full), Some(("dbinstances", false)));
        let list = http::Request::get("/api/v1/secrets?limit=500")
            .body(())
            .unwrap();
        assert_eq!(watch_of(&list), None);
    }
}
