//! Whether a claim may have its resource, beyond its own choices and its namespace
//! (the class's selector, matched by `tether_api::provider_config::namespace_selected`):
//! the class's per-namespace limits. Pure: decided from the claims the controller's
//! cache holds and the grants this process made.
//!
//! Limits admit claims in a fixed order, the same whichever claim is reconciled
//! first: claims that already have their resource, then the others oldest first. So
//! two claims reconciled at once can never both take the last place.
//!
//! Growth needs no order (whichever claim grows first gets the room), but it needs
//! fresh figures. A grant is recorded in the claim's status, which the cache shows
//! only once the write comes back through the watch; decided from the cache alone,
//! two claims grown at once each fit next to the other's old size. [`Grants`] closes
//! that gap: every decision of a claim kind is made under one lock, records what it
//! granted before the lock is released, and counts every claim at the larger of its
//! cached record and its grant here. The grant reaches the claim's status before its
//! resource is made or grown, so a restarted process (or the replica that leads next)
//! finds it in its first list of the claims and needs no grants of its own.
//!
//! The simplest design that holds: counting every claim at what it asks for would
//! refuse both growths; reading the claims from the API server instead of the cache
//! would cost a list per decision and a lock held across it and the status write.
//! There is one lock per claim kind, not one per class and namespace: a decision is a
//! few comparisons over the cache, and nothing is awaited while the lock is held.

use std::collections::HashMap;

use k8s_openapi::jiff::Timestamp;

/// A claim of the class in the namespace, as the limits see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holding {
    /// Its UID (what [`Grants`] knows it by).
    pub uid: String,
    /// Whether its resource exists (it keeps its place whatever the limits say now).
    pub admitted: bool,
    /// When it was created.
    pub created: Option<Timestamp>,
    /// Its name (orders claims created in the same second).
    pub name: String,
    /// The storage it holds or asks for, in GiB.
    pub storage_gib: u64,
}

impl Holding {
    /// Where the claim stands in the order of admission.
    fn place(&self) -> (bool, Option<Timestamp>, &str) {
        (!self.admitted, self.created, &self.name)
    }
}

/// The class's per-namespace limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// At most this many claims.
    pub claims: Option<u32>,
    /// At most this much storage, in GiB.
    pub storage_gib: Option<u64>,
}

/// Why `claim` exceeds `limits` given the `others` in its namespace (claims of the
/// same class that are not refused for another reason), or `None` when it fits.
///
/// A claim without its resource fits when it, the admitted claims and the waiting
/// claims before it fit. An admitted claim is only held to the storage limit, and only
/// when it grows (`grows`): a limit lowered later takes nothing away.
pub fn exceeded(
    claim: &Holding,
    grows: bool,
    others: &[Holding],
    limits: Limits,
) -> Option<String> {
    let ahead: Vec<&Holding> = others
        .iter()
        .filter(|other| {
            if claim.admitted {
                other.admitted
            } else {
                other.place() < claim.place()
            }
        })
        .collect();
    if !claim.admitted
        && let Some(most) = limits.claims
        && ahead.len() + 1 > most as usize
    {
        return Some(format!(
            "the namespace already has {} claims of the class ahead of this one; the class allows {most} per namespace",
            ahead.len()
        ));
    }
    if (!claim.admitted || grows)
        && let Some(most) = limits.storage_gib
    {
        let taken: u64 = ahead.iter().map(|other| other.storage_gib).sum();
        if taken + claim.storage_gib > most {
            return Some(format!(
                "{} GiB would bring the namespace's storage in the class to {} GiB; the class allows {most} GiB per namespace ({taken} GiB taken)",
                claim.storage_gib,
                taken + claim.storage_gib
            ));
        }
    }
    None
}

/// The storage (GiB) this process granted to claims, by claim UID: newer than the
/// cache, which shows a grant only once the claim's status write comes back.
#[derive(Debug, Default)]
pub struct Grants(HashMap<String, u64>);

impl Grants {
    /// Decides `claim` as [`exceeded`] does, with every claim counted at the larger of
    /// its cached record and its grant here (a claim granted here holds its place as
    /// if its resource existed), and records the grant when it fits.
    pub fn admit(
        &mut self,
        claim: &Holding,
        grows: bool,
        others: &[Holding],
        limits: Limits,
    ) -> Option<String> {
        let granted = self.0.get(&claim.uid).copied();
        let me = Holding {
            admitted: claim.admitted || granted.is_some(),
            ..claim.clone()
        };
        let grows = grows && granted.is_none_or(|granted| claim.storage_gib > granted);
        let others: Vec<Holding> = others.iter().map(|other| self.counted(other)).collect();
        let refusal = exceeded(&me, grows, &others, limits);
        if refusal.is_none() {
            self.0.insert(claim.uid.clone(), claim.storage_gib);
        }
        refusal
    }

    /// Forgets a claim that is gone.
    pub fn forget(&mut self, uid: &str) {
        self.0.remove(uid);
    }

    /// `other` as the limits count it: its cached record, or its grant here when that
    /// is newer.
    fn counted(&self, other: &Holding) -> Holding {
        match self.0.get(&other.uid) {
            None => other.clone(),
            Some(&granted) => Holding {
                admitted: true,
                // A claim waiting in the cache is counted at what it asks for, which
                // its grant replaces.
                storage_gib: if other.admitted {
                    granted.max(other.storage_gib)
                } else {
                    granted
                },
                ..other.clone()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holding(name: &str, admitted: bool, created_second: i64, storage_gib: u64) -> Holding {
        Holding {
            uid: format!("uid-{name}"),
            admitted,
            created: Some(Timestamp::from_second(created_second).unwrap()),
            name: name.to_owned(),
            storage_gib,
        }
    }

    const TWO_CLAIMS: Limits = Limits {
        claims: Some(2),
        storage_gib: None,
    };

    #[test]
    fn claims_are_admitted_oldest_first_whichever_is_looked_at_first() {
        let claims = [
            holding("a", false, 1, 20),
            holding("b", false, 2, 20),
            holding("c", false, 3, 20),
        ];
        let verdicts: Vec<bool> = claims
            .iter()
            .map(|claim| {
                let others: Vec<Holding> = claims.iter().filter(|o| *o != claim).cloned().collect();
                exceeded(claim, false, &others, TWO_CLAIMS).is_none()
            })
            .collect();
        assert_eq!(verdicts, [true, true, false]);
    }

    #[test]
    fn an_admitted_claim_keeps_its_place_before_older_waiting_ones() {
        let admitted = [holding("new", true, 9, 20), holding("newer", true, 10, 20)];
        let old = holding("old", false, 1, 20);
        let refusal = exceeded(&old, false, &admitted, TWO_CLAIMS).expect("no place left");
        assert_eq!(
            refusal,
            "the namespace already has 2 claims of the class ahead of this one; the class allows 2 per namespace"
        );
        assert_eq!(
            exceeded(&admitted[0], false, &[admitted[1].clone(), old], TWO_CLAIMS),
            None
        );
    }

    #[test]
    fn storage_counts_against_its_own_limit_and_only_growth_is_refused_later() {
        let limits = Limits {
            claims: None,
            storage_gib: Some(100),
        };
        let held = [holding("a", true, 1, 80)];
        let asking = holding("b", false, 2, 30);
        assert_eq!(
            exceeded(&asking, false, &held, limits).as_deref(),
            Some(
                "30 GiB would bring the namespace's storage in the class to 110 GiB; the class allows 100 GiB per namespace (80 GiB taken)"
            )
        );
        let lowered = Limits {
            claims: None,
            storage_gib: Some(50),
        };
        assert_eq!(exceeded(&held[0], false, &[], lowered), None);
        assert!(exceeded(&held[0], true, &[], lowered).is_some());
    }

    const HUNDRED_GIB: Limits = Limits {
        claims: None,
        storage_gib: Some(100),
    };

    #[test]
    fn of_two_growths_that_together_pass_the_limit_the_second_is_refused() {
        let mut grants = Grants::default();
        // The cache: both hold 40 GiB and ask for 60; neither status shows a grant yet.
        let left = holding("left", true, 1, 60);
        let right = holding("right", true, 2, 60);
        let cached = |claim: &Holding| Holding {
            storage_gib: 40,
            ..claim.clone()
        };
        assert_eq!(
            grants.admit(&right, true, &[cached(&left)], HUNDRED_GIB),
            None
        );
        // From the cache alone the second fits too: that is the race.
        assert_eq!(exceeded(&left, true, &[cached(&right)], HUNDRED_GIB), None);
        assert_eq!(
            grants
                .admit(&left, true, &[cached(&right)], HUNDRED_GIB)
                .as_deref(),
            Some(
                "60 GiB would bring the namespace's storage in the class to 120 GiB; the class allows 100 GiB per namespace (60 GiB taken)"
            )
        );
        // The refused claim keeps 40 GiB, and is refused again while the grant is
        // newer than the cache, and after.
        assert!(
            grants
                .admit(&left, true, &[cached(&right)], HUNDRED_GIB)
                .is_some()
        );
        assert!(grants.admit(&left, true, &[right], HUNDRED_GIB).is_some());
    }

    #[test]
    fn a_claim_granted_here_holds_its_place_until_it_is_forgotten() {
        let mut grants = Grants::default();
        let held = holding("held", true, 5, 20);
        let newest = holding("newest", false, 9, 20);
        let others = [held.clone(), newest.clone()];
        assert_eq!(grants.admit(&newest, false, &others[..1], TWO_CLAIMS), None);
        // An older claim that waits finds both places taken, though the cache does not
        // show the second one's resource yet.
        let older = holding("older", false, 1, 20);
        assert!(exceeded(&older, false, &others, TWO_CLAIMS).is_none());
        assert!(grants.admit(&older, false, &others, TWO_CLAIMS).is_some());
        // The granted claim, looked at again before its resource exists, keeps its
        // place; within its grant it is not held to the storage limit again.
        let both = [held.clone(), older.clone()];
        assert_eq!(grants.admit(&newest, false, &both, TWO_CLAIMS), None);
        let lowered = Limits {
            claims: Some(2),
            storage_gib: Some(30),
        };
        assert_eq!(grants.admit(&newest, true, &both[..1], lowered), None);
        // Forgotten (its claim is gone), it counts as the cache shows it: waiting,
        // behind the older claim.
        grants.forget(&newest.uid);
        assert_eq!(grants.admit(&older, false, &others, TWO_CLAIMS), None);
    }
}
