//! Scale at a small N, in `make test`: a restart with objects that exist re-verifies
//! every one of them from one listing per kind, not one read per object (issue 12).
//! The counts come from the fault proxy. `make bench-scale` measures the full size.

use std::time::{Duration, Instant};

use tether_aws::{ec2::Instance, rds::DBInstance};

use crate::{
    bench::{apply_and_time, databases, instances},
    world::World,
};

/// Objects of each kind.
const EACH: usize = 25;

/// How many objects of `kind` the controller has reconciled without an error since it
/// started, as `/metrics` says.
fn reconciled(metrics: &str, kind: &str) -> f64 {
    let name = format!(r#"tether_reconciles_total{{kind="{kind}",result="ok"}} "#);
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&name)?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_re_verifies_every_object_from_one_listing_per_kind() {
    let mut world = World::start().await;
    apply_and_time::<DBInstance>(
        &world,
        &databases(&world, "kept", EACH),
        "kept",
        EACH,
        "host",
    )
    .await;
    apply_and_time::<Instance>(
        &world,
        &instances(&world, "kept", EACH),
        "kept",
        EACH,
        "instance-id",
    )
    .await;

    world.proxy.reset_counts();
    let tether = &mut world.tether;
    tokio::task::block_in_place(|| tether.kill_and_restart());
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let metrics = world.tether.admin_get("/metrics").unwrap_or_default();
        let (databases, instances) = (
            reconciled(&metrics, "DBInstance"),
            reconciled(&metrics, "Instance"),
        );
        if databases >= EACH as f64 && instances >= EACH as f64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the restart, {databases} of {EACH} databases and {instances} of {EACH} \
             instances were reconciled in 120 s:\n{}",
            world.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let counts = world.proxy.counts();
    let calls: usize = counts.values().sum();
    let objects = 2 * EACH;
    println!(
        "restart with {objects} Ready objects: {calls} AWS calls ({:.2} per object): {counts:?}",
        calls as f64 / objects as f64
    );
    for create in ["CreateDBInstance", "RunInstances", "ImportKeyPair"] {
        assert_eq!(world.proxy.count(create), 0, "{create} after a restart");
    }
    assert!(
        calls * 10 <= objects,
        "re-verifying {objects} objects after a restart cost {calls} AWS calls, more than \
         0.1 per object: {counts:?}"
    );
    world.finish().await;
}
