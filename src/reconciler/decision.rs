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
//!    or update waits for the next reconcile), then add the finalizer.
//! 9. Observe: resolve references → connect → load the connection Secret → observe →
//!    missing: create (or wait for a create already sent) | exists: refuse what is not
//!    this object's, else update the delta (unless ObserveOnly) or nothing → publish the
//!    connection Secret → write status → requeue after the poll interval (the wait
//!    interval while anything is on its way), with jitter. Credentials a create or
//!    update needs are published first, and that reconcile ends there.

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

    /// An object that is not being deleted, carries the finalizer, is readable, not
    /// paused and not throttled: the usual case, which each row changes.
    fn settled() -> Known {
        Known {
            has_finalizer: true,
            paused: Some(false),
            ..Known::default()
        }
    }

    #[test]
    fn each_case_takes_the_step_the_order_gives_it() {
        let deleting = Known {
            deleting: true,
            ..settled()
        };
        let new = Known {
            has_finalizer: false,
            ..settled()
        };
        let cases: &[(&str, Known, Step)] = &[
            ("a settled object is observed", settled(), Step::Observe),
            ("a new object gets its finalizer", new, Step::AddFinalizer),
            (
                "a new object whose finalizer is on its way waits for its event",
                Known {
                    finalizer_in_flight: true,
                    ..new
                },
                Step::AwaitFinalizer,
            ),
            (
                "a finalizer the cache shows is not awaited",
                Known {
                    finalizer_in_flight: true,
                    ..settled()
                },
                Step::Observe,
            ),
            (
                "an object being deleted with the finalizer is deleted",
                deleting,
                Step::Delete,
            ),
            (
                "an object being deleted without the finalizer is released",
                Known {
                    has_finalizer: false,
                    ..deleting
                },
                Step::Released,
            ),
            (
                "a finalizer in flight changes nothing for an object being deleted",
                Known {
                    has_finalizer: false,
                    finalizer_in_flight: true,
                    ..deleting
                },
                Step::Released,
            ),
            (
                "an object going with its CRD is let go",
                Known {
                    crd_deleting: true,
                    ..deleting
                },
                Step::LetGo,
            ),
            (
                "an object going with its CRD, its finalizer already gone, is released",
                Known {
                    crd_deleting: true,
                    has_finalizer: false,
                    ..deleting
                },
                Step::Released,
            ),
            (
                "an object going with its CRD is let go even when paused",
                Known {
                    crd_deleting: true,
                    paused: Some(true),
                    ..deleting
                },
                Step::LetGo,
            ),
            (
                "an object going with its CRD is let go even with unreadable annotations",
                Known {
                    crd_deleting: true,
                    paused: None,
                    ..deleting
                },
                Step::LetGo,
            ),
            (
                "an object going with its CRD is let go even when throttled",
                Known {
                    crd_deleting: true,
                    throttled_for: Some(PAUSE),
                    ..deleting
                },
                Step::LetGo,
            ),
            (
                "unreadable annotations come before paused and throttled",
                Known {
                    paused: None,
                    throttled_for: Some(PAUSE),
                    ..settled()
                },
                Step::Unreadable,
            ),
            (
                "unreadable annotations stop a deletion too",
                Known {
                    paused: None,
                    ..deleting
                },
                Step::Unreadable,
            ),
            (
                "a paused object is paused",
                Known {
                    paused: Some(true),
                    ..settled()
                },
                Step::Paused { deleting: false },
            ),
            (
                "a paused object being deleted waits to be deleted",
                Known {
                    paused: Some(true),
                    ..deleting
                },
                Step::Paused { deleting: true },
            ),
            (
                "a paused object without its finalizer gets none",
                Known {
                    paused: Some(true),
                    ..new
                },
                Step::Paused { deleting: false },
            ),
            (
                "paused comes before throttled",
                Known {
                    paused: Some(true),
                    throttled_for: Some(PAUSE),
                    ..settled()
                },
                Step::Paused { deleting: false },
            ),
            (
                "a throttled object waits out the pause",
                Known {
                    throttled_for: Some(PAUSE),
                    ..settled()
                },
                Step::Throttled { wait: PAUSE },
            ),
            (
                "a throttled object being deleted waits too",
                Known {
                    throttled_for: Some(PAUSE),
                    ..deleting
                },
                Step::Throttled { wait: PAUSE },
            ),
            (
                "a throttled new object gets no finalizer yet",
                Known {
                    throttled_for: Some(PAUSE),
                    ..new
                },
                Step::Throttled { wait: PAUSE },
            ),
            (
                "the CRD is never asked of an object that is not being deleted",
                Known {
                    crd_deleting: true,
                    ..settled()
                },
                Step::Observe,
            ),
        ];
        for (case, known, step) in cases {
            assert_eq!(next_step(known), *step, "{case}");
        }
    }

    /// Every combination of what is known, against the promises the order makes.
    #[test]
    fn no_combination_breaks_the_promises() {
        let flags = |bits: u32, at: u32| bits & (1 << at) != 0;
        for bits in 0..(1 << 7) {
            let known = Known {
                deleting: flags(bits, 0),
                has_finalizer: flags(bits, 1),
                crd_deleting: flags(bits, 2),
                paused: (!flags(bits, 3)).then_some(flags(bits, 4)),
                throttled_for: flags(bits, 5).then_some(PAUSE),
                finalizer_in_flight: flags(bits, 6),
            };
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
