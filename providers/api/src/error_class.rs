//! The classes an error falls in; each class picks what the reconciler does next.

use std::fmt;

/// What a failure means for the next step of a reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The request or configuration is wrong: record it, and wait for a change.
    Terminal,
    /// A passing fault (network, server error): back off and try again.
    Transient,
    /// The remote API asked us to slow down: back off and slow the shared budget.
    Throttled,
    /// Not a failure: something is on its way (the resource is creating or modifying,
    /// not visible yet, a referenced object is not Ready, another replica leads):
    /// come back after the wait interval.
    Waiting,
}

impl ErrorClass {
    /// A short stable name, for metrics labels, condition reasons and Events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Terminal => "Terminal",
            Self::Transient => "Transient",
            Self::Throttled => "Throttled",
            Self::Waiting => "Waiting",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
