//! The grade report: one JSON document per submission (`report.json`), the single source from
//! which `report.md`, `junit.xml` and the class table are rendered, so they can never disagree.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The workshop steps in the order the workshop teaches them; `network` is optional.
pub const STEPS: [&str; 6] = [
    "process",
    "namespaces",
    "rootfs",
    "cgroups",
    "volumes",
    "network",
];

/// Steps a submission must pass for the grade to succeed.
pub const REQUIRED_STEPS: [&str; 5] = ["process", "namespaces", "rootfs", "cgroups", "volumes"];

/// Outcome of a check, a step or an extra.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Pass,
    Fail,
    /// None of the step's traces exist: the student has not reached this step yet.
    NotAttempted,
}

impl Status {
    /// The spelling used in every report (`pass`, `fail`, `not-attempted`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::NotAttempted => "not-attempted",
        }
    }
}

/// One observation: what the workshop step asks, what was seen, and how to fix it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub expected: String,
    pub seen: String,
    /// Empty when the check passed.
    #[serde(default)]
    pub hint: String,
}

#[cfg(test)]
impl Check {
    /// A check for tests, its texts made from its name.
    pub fn named(name: &str, status: Status) -> Check {
        Check {
            name: name.into(),
            status,
            expected: format!("{name} expected"),
            seen: format!("{name} seen"),
            hint: format!("{name} hint"),
        }
    }
}

/// A workshop step: its checks and the status they add up to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub status: Status,
    pub required: bool,
    pub checks: Vec<Check>,
}

impl Step {
    /// A step passes when every check passes, is not attempted when no check found a trace of
    /// it, and fails otherwise.
    pub fn from_checks(name: &str, checks: Vec<Check>) -> Step {
        let status = if checks.iter().all(|c| c.status == Status::Pass) && !checks.is_empty() {
            Status::Pass
        } else if checks.iter().all(|c| c.status == Status::NotAttempted) {
            Status::NotAttempted
        } else {
            Status::Fail
        };
        Step {
            status,
            required: REQUIRED_STEPS.contains(&name),
            checks,
        }
    }

    /// The first check that did not pass: what a teacher reads first.
    pub fn first_problem(&self) -> Option<&Check> {
        self.checks.iter().find(|c| c.status != Status::Pass)
    }
}

/// Everything known about one submission's grading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub submission: String,
    /// Steps graded, keyed by the names in [`STEPS`]; steps not asked for are absent.
    pub steps: BTreeMap<String, Step>,
    /// Reported, never counted against a step (exit-code propagation, cleanup niceties...).
    #[serde(default)]
    pub extras: BTreeMap<String, Check>,
    /// Wall-clock seconds the grading took (guest boot included when graded in the VM).
    #[serde(default)]
    pub seconds: f64,
    /// Set when grading itself could not complete (build failure, guest hang...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Report {
    /// The report of `submission` before any step is graded.
    pub fn empty(submission: &str) -> Report {
        Report {
            submission: submission.into(),
            steps: Default::default(),
            extras: Default::default(),
            seconds: 0.0,
            error: None,
        }
    }

    /// True iff grading completed and every required step that was graded passed; when only
    /// optional steps were graded (`STEPS=network`), they must pass.
    pub fn passed(&self) -> bool {
        let any_required = self.steps.values().any(|s| s.required);
        self.error.is_none()
            && !self.steps.is_empty()
            && self
                .steps
                .values()
                .filter(|s| s.required || !any_required)
                .all(|s| s.status == Status::Pass)
    }

    /// Steps in workshop order (unknown names last), for every rendering.
    pub fn ordered_steps(&self) -> Vec<(&str, &Step)> {
        let rank = |n: &str| STEPS.iter().position(|s| *s == n).unwrap_or(STEPS.len());
        let mut steps: Vec<(&str, &Step)> =
            self.steps.iter().map(|(n, s)| (n.as_str(), s)).collect();
        steps.sort_by_key(|(n, _)| (rank(n), n.to_string()));
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(steps: &[(&str, Status)]) -> Report {
        let check = |status| Check {
            name: "c".into(),
            status,
            expected: String::new(),
            seen: String::new(),
            hint: String::new(),
        };
        Report {
            submission: "s".into(),
            steps: steps
                .iter()
                .map(|(n, st)| (n.to_string(), Step::from_checks(n, vec![check(*st)])))
                .collect(),
            extras: Default::default(),
            seconds: 0.0,
            error: None,
        }
    }

    #[test]
    fn the_optional_step_counts_only_when_it_is_all_that_was_graded() {
        use Status::*;
        assert!(report(&[("process", Pass), ("network", Fail)]).passed());
        assert!(!report(&[("process", Pass), ("cgroups", NotAttempted)]).passed());
        assert!(!report(&[("network", NotAttempted)]).passed());
        assert!(report(&[("network", Pass)]).passed());
        assert!(!report(&[]).passed());
        let mut failed = report(&[("process", Pass)]);
        failed.error = Some("guest hung".into());
        assert!(!failed.passed());
    }
}
