//! The host's side of a guest run: rebuild the report from the `DEVOXX-GRADE` lines of the
//! console. Steps the guest never finished are failed with the reason, so a submission that
//! hangs or takes the guest down still gets a report.

use std::collections::BTreeMap;

use super::check::{Event, LINE_PREFIX};
use super::report::{Check, Report, Status, Step};

/// The report of `submission` from the console `text`, for the `requested` steps.
pub fn collect(
    text: &str,
    submission: &str,
    requested: &[String],
    guest_problem: Option<&str>,
) -> Report {
    let mut checks: BTreeMap<String, Vec<Check>> = BTreeMap::new();
    let mut extras = BTreeMap::new();
    let mut started: Vec<String> = Vec::new();
    let mut done = None;
    for line in text.lines() {
        let Some(json) = line
            .trim_end_matches('\r')
            .split_once(LINE_PREFIX)
            .map(|(_, j)| j)
        else {
            continue;
        };
        match serde_json::from_str::<Event>(json) {
            Ok(Event::Step { step }) => {
                checks.entry(step.clone()).or_default();
                started.push(step);
            }
            Ok(Event::Check { step, check }) => checks.entry(step).or_default().push(check),
            Ok(Event::Extra { check }) => {
                extras.insert(check.name.clone(), check);
            }
            Ok(Event::Done { seconds }) => done = Some(seconds),
            Err(_) => {} // a line garbled by kernel output: the step it belonged to shows it
        }
    }
    let stopped = guest_problem.unwrap_or("the guest stopped");
    let mut steps = BTreeMap::new();
    for step in requested {
        let mut list = checks.remove(step).unwrap_or_default();
        let last_started = started.last() == Some(step);
        if done.is_none() && (last_started || !started.contains(step)) {
            let (name, seen) = if started.contains(step) {
                ("step-finished", format!("{stopped} during this step"))
            } else {
                ("step-reached", format!("{stopped} before this step"))
            };
            list.push(Check {
                name: name.into(),
                status: Status::Fail,
                expected: "the step's checks complete".into(),
                seen,
                hint: "a hang, a fork bomb or a crash of the guest: run the step's commands by hand in `make vm-shell`".into(),
            });
        }
        steps.insert(step.clone(), Step::from_checks(step, list));
    }
    Report {
        submission: submission.into(),
        steps,
        extras,
        seconds: done.unwrap_or_default(),
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grade::report::Status;

    fn check(name: &str, status: Status) -> Check {
        Check {
            name: name.into(),
            status,
            expected: "e".into(),
            seen: "s".into(),
            hint: String::new(),
        }
    }

    fn lines(events: &[Event]) -> String {
        events
            .iter()
            .map(|e| format!("[  1.0] noise\n{}\r\n", e.line()))
            .collect()
    }

    fn steps(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_complete_console_gives_back_every_check_and_extra() {
        let events = [
            Event::Step {
                step: "process".into(),
            },
            Event::Check {
                step: "process".into(),
                check: check("a", Status::Pass),
            },
            Event::Step {
                step: "cgroups".into(),
            },
            Event::Check {
                step: "cgroups".into(),
                check: check("b", Status::NotAttempted),
            },
            Event::Extra {
                check: check("x", Status::Fail),
            },
            Event::Done { seconds: 12.5 },
        ];
        let r = collect(
            &lines(&events),
            "sub",
            &steps(&["process", "cgroups"]),
            None,
        );
        assert_eq!(r.steps["process"].status, Status::Pass);
        assert_eq!(r.steps["cgroups"].status, Status::NotAttempted);
        assert_eq!(r.extras["x"].status, Status::Fail);
        assert_eq!(r.seconds, 12.5);
        assert!(!r.passed(), "a required step not attempted fails the grade");
    }

    #[test]
    fn a_guest_that_died_mid_step_fails_that_step_and_the_ones_not_reached() {
        let events = [
            Event::Step {
                step: "process".into(),
            },
            Event::Check {
                step: "process".into(),
                check: check("a", Status::Pass),
            },
            Event::Step {
                step: "cgroups".into(),
            },
        ];
        let r = collect(
            &lines(&events),
            "sub",
            &steps(&["process", "cgroups", "volumes"]),
            Some("the guest hung (timeout)"),
        );
        assert_eq!(r.steps["process"].status, Status::Pass);
        let cg = &r.steps["cgroups"];
        assert_eq!(cg.status, Status::Fail);
        assert!(
            cg.checks[0]
                .seen
                .contains("hung (timeout) during this step"),
            "{:?}",
            cg.checks
        );
        assert!(r.steps["volumes"].checks[0]
            .seen
            .contains("before this step"));
    }

    #[test]
    fn an_empty_console_fails_every_requested_step() {
        let r = collect("kernel panic\n", "sub", &steps(&["process"]), None);
        assert_eq!(r.steps["process"].status, Status::Fail);
    }
}
