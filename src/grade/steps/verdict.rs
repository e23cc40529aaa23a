//! Checks as every step states them: passed, failed with a hint, not attempted, or failed by
//! what the run left on its host.

use super::SideEffects;
use crate::grade::report::{Check, Status};

/// A passing check.
pub fn pass(name: &str, expected: &str, seen: impl Into<String>) -> Check {
    check(name, Status::Pass, expected, seen, "")
}

/// A failing check with its hint.
pub fn fail(name: &str, expected: &str, seen: impl Into<String>, hint: &str) -> Check {
    check(name, Status::Fail, expected, seen, hint)
}

/// A check with no trace of the step having been tried.
pub fn not_attempted(name: &str, expected: &str, seen: impl Into<String>, hint: &str) -> Check {
    check(name, Status::NotAttempted, expected, seen, hint)
}

fn check(name: &str, status: Status, expected: &str, seen: impl Into<String>, hint: &str) -> Check {
    Check {
        name: name.into(),
        status,
        expected: expected.into(),
        seen: seen.into(),
        hint: hint.into(),
    }
}

/// `check` as it stands, or failed with the run's side effects when there were any: a run
/// that leaked mounts, changed the host's hostname or hung fails the check that made it.
pub fn with_effects(mut check: Check, fx: &SideEffects) -> Check {
    if fx.problems.is_empty() {
        return check;
    }
    check.status = Status::Fail;
    check.seen = format!("{}; {}", check.seen, fx.problems.join("; "));
    // What the run did wrong comes first: it is why the check failed.
    check.hint = if check.hint.is_empty() {
        fx.problems.join("; ")
    } else {
        format!("{}; {}", fx.problems.join("; "), check.hint)
    };
    check
}

/// Status helper: `pass` if `ok`, else `fail` with `hint`.
pub fn verdict(ok: bool, name: &str, expected: &str, seen: impl Into<String>, hint: &str) -> Check {
    if ok {
        pass(name, expected, seen)
    } else {
        fail(name, expected, seen, hint)
    }
}
