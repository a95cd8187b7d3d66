//! What one reconcile does next, decided from what is known before any cloud call:
//! pure, so that the order lives in one short place and is tested in a table.
//!
//! The order of one reconcile (the first step that applies is taken):
//!
//! 1. Let go: the object is being deleted, with tether's finalizer, and so is its
//!    CustomResourceDefinition (uninstalling): the cloud resource stays, the connection
//!    Secret loses its owner reference, the finalizer goes.
//! 2. Unreadable: tether's annotations cannot be read: `Synced=False` says why.
//! 3. Paused: `tether.dev/paused` is "true": `Synced=False` says so, nothing else.
//! 4. Throttled: the cloud throttles the object's ProviderConfig: look again when the
//!    pause ends.
//! 5. Delete: the object is being deleted, with the finalizer: resolve references →
//!    connect → observe → delete per policy what is this object's → remove the
//!    finalizer once the cloud reports the resource gone (or it is kept).
//! 6. Released: the object is being deleted, without the finalizer: nothing to do.
//! 7. Await the finalizer's event: this process added the finalizer and the cache does
//!    not show it yet: that event brings the object back.
//! 8. Add the finalizer: a new object: observe as in 9, with no cloud write (a create
//!    or update waits for the next reconcile), then add the finalizer: with a create's
//!    marks in one patch when the resource is missing (the next reconcile sends that
//!    create), on its own otherwise.
//! 9. Observe: resolve references → connect → load the connection Secret → read the
//!    Secret keys the spec names → observe → missing: create (or wait for a create
//!    already sent) | exists: refuse what is not this object's, else update the delta
//!    (unless ObserveOnly) or nothing → publish the connection Secret → write status →
//!    requeue after the poll interval (the wait interval while anything is on its way),
//!    with jitter. Credentials a create or update needs are published first, and that
//!    reconcile ends there.

use std::time::Duration;

/// What is known of an object before its reconcile makes any cloud call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Known {
    /// The object is being deleted (it has a deletion timestamp).
    pub deleting: bool,
    /// The object carries tether's finalizer.
    pub has_finalizer: bool,
    /// The object's CustomResourceDefinition is being deleted (asked only of an object
    /// being deleted with the finalizer: `false` otherwise).
    pub crd_deleting: bool,
    /// Whether `tether.dev/paused` is "true"; `None` when tether's annotations cannot
    /// be read.
    pub paused: Option<bool>,
    /// How long the cloud still throttles the object's ProviderConfig.
    pub throttled_for: Option<Duration>,
    /// This process added the finalizer lately, and the cache does not show it yet.
    pub finalizer_in_flight: bool,
}

/// The next step of one reconcile, in the order of this module's list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// 1. Leave the cloud resource, keep the Secret, remove the finalizer.
    LetGo,
    /// 2. Say why tether's annotations cannot be read.
    Unreadable,
    /// 3. Say the object is paused (`deleting`: its deletion waits).
    Paused { deleting: bool },
    /// 4. Look again after `wait`.
    Throttled { wait: Duration },
    /// 5. Delete per policy, then remove the finalizer.
    Delete,
    /// 6. Nothing to do.
    Released,
    /// 7. Wait for the finalizer's watch event.
    AwaitFinalizer,
    /// 8. Observe without cloud writes, then add the finalizer.
    AddFinalizer,
    /// 9. Observe, then create, update or nothing.
    Observe,
}

/// The next step for an object of which `known` is known.
pub(super) fn next_step(known: &Known) -> Step {
    let Known {
        deleting,
        has_finalizer,
        crd_deleting,
        paused,
        throttled_for,
        finalizer_in_flight,
    } = *known;
    match paused {
        _ if deleting && has_finalizer && crd_deleting => Step::LetGo,
        None => Step::Unreadable,
        Some(true) => Step::Paused { deleting },
        Some(false) => match throttled_for {
            Some(wait) => Step::Throttled { wait },
            None if deleting && has_finalizer => Step::Delete,
            None if deleting => Step::Released,
            None if has_finalizer => Step::Observe,
            None if finalizer_in_flight => Step::AwaitFinalizer,
            None => Step::AddFinalizer,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAUSE: Duration = Duration::from_secs(10);
    const Y: bool = true;
    const N: bool = false;

    /// What is known: being deleted, has the finalizer, CRD being deleted, paused
    /// (`None`: annotations unreadable), throttled, finalizer in flight.
    fn known(
        deleting: bool,
        has_finalizer: bool,
        crd_deleting: bool,
        paused: Option<bool>,
        throttled: bool,
        finalizer_in_flight: bool,
    ) -> Known {
        Known {
            deleting,
            has_finalizer,
            crd_deleting,
            paused,
            throttled_for: throttled.then_some(PAUSE),
            finalizer_in_flight,
        }
    }

    #[test]
    fn each_case_takes_the_step_the_order_gives_it() {
        use Step::*;
        let readable = Some(N);
        let paused = Some(Y);
        let throttled = Throttled { wait: PAUSE };
        #[rustfmt::skip]
        let rows = [
            // deleting, finalizer, CRD going, paused, throttled, finalizer in flight
            (known(N, Y, N, readable, N, N), Observe, "a settled object is observed"),
            (known(N, N, N, readable, N, N), AddFinalizer, "a new object gets its finalizer"),
            (known(N, N, N, readable, N, Y), AwaitFinalizer, "a finalizer on its way is awaited"),
            (known(N, Y, N, readable, N, Y), Observe, "a finalizer the cache shows is not awaited"),
            (known(Y, Y, N, readable, N, N), Delete, "being deleted with the finalizer: delete"),
            (known(Y, N, N, readable, N, N), Released, "being deleted without it: released"),
            (known(Y, N, N, readable, N, Y), Released, "a finalizer in flight changes nothing"),
            (known(Y, Y, Y, readable, N, N), LetGo, "going with the CRD: let go"),
            (known(Y, N, Y, readable, N, N), Released, "going with the CRD, finalizer gone"),
            (known(Y, Y, Y, paused, N, N), LetGo, "going with the CRD, even when paused"),
            (known(Y, Y, Y, None, N, N), LetGo, "going with the CRD, even when unreadable"),
            (known(Y, Y, Y, readable, Y, N), LetGo, "going with the CRD, even when throttled"),
            (known(N, Y, N, None, Y, N), Unreadable, "unreadable before paused and throttled"),
            (known(Y, Y, N, None, N, N), Unreadable, "unreadable stops a deletion too"),
            (known(N, Y, N, paused, N, N), Paused { deleting: N }, "a paused object is paused"),
            (known(Y, Y, N, paused, N, N), Paused { deleting: Y }, "a paused deletion waits"),
            (known(N, N, N, paused, N, N), Paused { deleting: N }, "paused: no finalizer added"),
            (known(N, Y, N, paused, Y, N), Paused { deleting: N }, "paused before throttled"),
            (known(N, Y, N, readable, Y, N), throttled, "a throttled object waits"),
            (known(Y, Y, N, readable, Y, N), throttled, "a throttled deletion waits"),
            (known(N, N, N, readable, Y, N), throttled, "throttled: no finalizer added yet"),
            (known(N, Y, Y, readable, N, N), Observe, "the CRD counts only in a deletion"),
        ];
        for (known, step, case) in rows {
            assert_eq!(next_step(&known), step, "{case}");
        }
    }

    /// Every combination of what is known, against the promises the order makes.
    #[test]
    fn no_combination_breaks_the_promises() {
        let flags = |bits: u32, at: u32| bits & (1 << at) != 0;
        for bits in 0..(1 << 7) {
            let known = known(
                flags(bits, 0),
                flags(bits, 1),
                flags(bits, 2),
                (!flags(bits, 3)).then_some(flags(bits, 4)),
                flags(bits, 5),
                flags(bits, 6),
            );
            let step = next_step(&known);
            // A cloud write (create, update, delete) happens only in Delete and
            // Observe, and only with the finalizer on: nothing is made or deleted that
            // the object could lose track of.
            if matches!(step, Step::Delete | Step::Observe) {
                assert!(known.has_finalizer, "{known:?} → {step:?}");
                assert_eq!(known.paused, Some(false), "{known:?} → {step:?}");
                assert_eq!(known.throttled_for, None, "{known:?} → {step:?}");
            }
            // A deletion is never observed as if the object stayed, nor given a
            // finalizer.
            if known.deleting {
                assert!(
                    !matches!(
                        step,
                        Step::Observe | Step::AddFinalizer | Step::AwaitFinalizer
                    ),
                    "{known:?} → {step:?}"
                );
            } else {
                assert!(
                    !matches!(step, Step::Delete | Step::Released | Step::LetGo),
                    "{known:?} → {step:?}"
                );
            }
        }
    }

    /// `reconciler/mod.rs` summarises the order with this module's list, word for word.
    #[test]
    fn the_controllers_summary_lists_the_same_steps() {
        let list = |source: &str| -> Vec<String> {
            source
                .lines()
                .map_while(|line| line.strip_prefix("//!"))
                .map(str::trim)
                .skip_while(|line| !line.starts_with("1. "))
                .take_while(|line| !line.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let here = list(include_str!("decision.rs"));
        assert_eq!(here.first().map(|line| &line[..3]), Some("1. "));
        assert!(here.iter().any(|line| line.starts_with("9. ")));
        assert_eq!(list(include_str!("mod.rs")), here);
    }
}
