//! The shared AWS budget of a ProviderConfig: with the fault proxy throttling every
//! service like AWS (a token bucket per service) at about a seventh of the rate the
//! work wants, every object still converges, few calls are refused, and the calls stay
//! close to an unthrottled run's. Everything asserted is a count from the proxy;
//! times only bound how long the test waits.

use std::{
    collections::BTreeMap,
    fmt,
    time::{Duration, Instant},
};

use kube::{Api, api::ListParams};
use tether_api::{
    conditions::{self, READY},
    managed::Managed,
};
use tether_aws::{ec2::Instance, rds::DBInstance};
use tether_testkit::{Extra, fault_proxy::Call};

use crate::{
    bench::{databases, instances},
    world::World,
};

/// Databases and instances in each run: small, so that the test stays short.
const DATABASES: usize = 8;
const INSTANCES: usize = 8;
/// How long a run may take to converge before the test fails (generous: on a slow
/// machine the throttled run takes minutes).
const DEADLINE: Duration = Duration::from_secs(300);

/// What one run cost, as the proxy counted it.
struct Cost {
    /// Every call that reached the proxy, refused or not.
    calls: usize,
    /// Calls the proxy refused with a throttling error.
    throttled: usize,
    /// Calls per service signing name.
    by_service: BTreeMap<String, usize>,
    /// Calls and refused calls per operation.
    by_operation: BTreeMap<String, (usize, usize)>,
    /// Seconds until every object was Ready (to pick the throttled rate; never asserted).
    seconds: f64,
    /// Every call, in order.
    calls_made: Vec<Call>,
    /// When the run applied its objects.
    started: Instant,
}

impl Cost {
    fn of(world: &World, started: Instant) -> Cost {
        let calls = world.proxy.calls();
        let mut by_service = BTreeMap::new();
        let mut by_operation = BTreeMap::<String, (usize, usize)>::new();
        for call in &calls {
            *by_service.entry(call.service.clone()).or_default() += 1;
            let (made, refused) = by_operation.entry(call.operation.clone()).or_default();
            *made += 1;
            *refused += usize::from(call.throttled);
        }
        Cost {
            calls: calls.len(),
            throttled: world.proxy.throttled_count(),
            by_service,
            by_operation,
            seconds: started.elapsed().as_secs_f64(),
            calls_made: calls,
            started,
        }
    }

    /// The calls of each service as a timeline, to tell where refusals come from: a
    /// first wave, an SDK retry (`#2`, …) refused again, or a new call later.
    fn timeline(&self) -> String {
        let mut by_service = BTreeMap::<&str, Vec<String>>::new();
        for call in &self.calls_made {
            let at = call
                .at
                .saturating_duration_since(self.started)
                .as_secs_f64();
            by_service.entry(&call.service).or_default().push(format!(
                "{at:6.1} s {}{}{}",
                call.operation,
                if call.attempt > 1 {
                    format!(" #{}", call.attempt)
                } else {
                    String::new()
                },
                if call.throttled { " REFUSED" } else { "" }
            ));
        }
        by_service
            .into_iter()
            .map(|(service, lines)| format!("{service}:\n  {}", lines.join("\n  ")))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The calls per second of the busiest service.
    fn busiest_rate(&self) -> f64 {
        let busiest = self.by_service.values().copied().max().unwrap_or_default();
        busiest as f64 / self.seconds.max(1.0)
    }
}

impl fmt::Display for Cost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} calls, {} refused, in {:.0} s; by service {:?}; (calls, refused) by operation {:?}",
            self.calls, self.throttled, self.seconds, self.by_service, self.by_operation
        )
    }
}

/// How many objects of kind `M` in the test's namespace are Ready.
async fn ready<M: Managed>(world: &World) -> usize {
    let api: Api<M> = world.ns.api();
    api.list(&ListParams::default())
        .await
        .expect("listing objects")
        .items
        .iter()
        .filter(|object| conditions::is_true(object.conditions(), READY))
        .count()
}

/// Applies the work (databases and instances) and waits until all of it is Ready;
/// returns what that cost. Fails with the counts when it does not converge in time.
async fn converge(world: &World) -> Cost {
    let started = Instant::now();
    world.apply(&databases(world, "db", DATABASES)).await;
    world.apply(&instances(world, "vm", INSTANCES)).await;
    loop {
        let (databases_ready, instances_ready) = (
            ready::<DBInstance>(world).await,
            ready::<Instance>(world).await,
        );
        if databases_ready == DATABASES && instances_ready == INSTANCES {
            return Cost::of(world, started);
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{databases_ready}/{DATABASES} databases and {instances_ready}/{INSTANCES} \
             instances Ready after {DEADLINE:?}: {}\n{}\n{}",
            Cost::of(world, started),
            Cost::of(world, started).timeline(),
            world.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The sum of `/metrics`' `tether_aws_calls_total` samples with `outcome`.
fn reported_outcome(metrics: &str, outcome: &str) -> u64 {
    metrics
        .lines()
        .filter(|line| line.starts_with("tether_aws_calls_total{"))
        .filter(|line| line.contains(&format!("outcome=\"{outcome}\"")))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<u64>().ok())
        .sum()
}

/// `tether run` at its default intervals (the harness re-checks unsettled objects every
/// second): what AWS sees of a longer, throttled run is then what production makes,
/// not a second-by-second poll that a slower run multiplies.
fn at_production_intervals(_namespace: &str) -> Extra {
    Extra {
        args: ["--wait-interval", "15s", "--poll-interval", "10m"]
            .map(str::to_owned)
            .to_vec(),
        env: Vec::new(),
    }
}

#[tokio::test]
async fn a_shared_budget_keeps_tether_under_the_throttling_limit() {
    let unthrottled = World::start_with(at_production_intervals).await;
    let baseline = converge(&unthrottled).await;
    unthrottled.finish().await;
    assert_eq!(baseline.throttled, 0, "{baseline}");

    // AWS's bucket per service, at about a seventh of what the work wants.
    let per_second = baseline.busiest_rate() / 7.0;
    eprintln!("unthrottled: {baseline}; now {per_second:.2} calls/s per service");
    let world = World::start_with(at_production_intervals).await;
    // AWS's buckets hold several seconds of refill: EC2's documented request buckets
    // hold 5 s (non-mutating actions: 100, refilled at 20/s) to 10 s (mutating: 50, at
    // 5/s). This one holds the shorter, and at least an observe and a create of each
    // kind (a bucket that cannot hold both would refuse every create after its observe:
    // no AWS bucket is that small).
    world
        .proxy
        .limit_rate(per_second, (5.0 * per_second).max(5.0));
    let throttled = converge(&world).await;
    eprintln!("timeline of the throttled run:\n{}", throttled.timeline());
    let refused = throttled.throttled as f64 / throttled.calls as f64;
    let growth = throttled.calls as f64 / baseline.calls as f64;
    eprintln!(
        "limited to {per_second:.2} calls/s per service: {throttled}, {:.0}% refused, {growth:.2}× the unthrottled calls",
        refused * 100.0
    );
    assert!(
        refused <= 0.20,
        "at most 20% of calls refused: {:.0}% ({throttled})",
        refused * 100.0
    );
    assert!(
        growth <= 1.5,
        "at most 1.5× the unthrottled run's {} calls: {} ({throttled})",
        baseline.calls,
        throttled.calls
    );

    // The metrics count the refusals the proxy made (calls may still be on their way).
    let mut reported = 0;
    for _ in 0..40 {
        let metrics = world
            .tether
            .admin_get("/metrics")
            .expect("scraping /metrics");
        reported = reported_outcome(&metrics, "throttled");
        if reported as usize == world.proxy.throttled_count() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        reported as usize,
        world.proxy.throttled_count(),
        "/metrics' throttled calls"
    );
    // A reconcile may be waiting for the budget (the SDK's rate limiter sleeps before
    // a throttled call's retry); tether gives running reconciles 20 s to finish.
    world.finish_within(Duration::from_secs(30)).await;
}
