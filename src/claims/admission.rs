//! Whether a claim may have its resource, beyond its own choices and its namespace
//! (the class's selector, matched by `tether_api::provider_config::namespace_selected`):
//! the class's per-namespace limits. Pure: decided from the claims the controller's
//! cache holds.
//!
//! Limits admit claims in a fixed order, the same whichever claim is reconciled
//! first: claims that already have their resource, then the others oldest first. So
//! two claims reconciled at once can never both take the last place.

use k8s_openapi::jiff::Timestamp;

/// A claim of the class in the namespace, as the limits see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holding {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn holding(name: &str, admitted: bool, created_second: i64, storage_gib: u64) -> Holding {
        Holding {
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
}
