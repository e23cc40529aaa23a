//! The host's side of a guest run: rebuild the report from the `DEVOXX-GRADE` lines of the
//! console. Only lines signed by the grader count (the submission is root in the same guest and
//! could print its own). Steps the guest never finished are failed with the reason, so a
//! submission that hangs or takes the guest down still gets a report.

use std::collections::BTreeMap;

use super::check::{mac, Event, LINE_PREFIX};
use super::report::{Check, Report, Status, Step};

/// The events of the console `text` that carry a valid MAC under `key` with increasing
/// numbers, and how many lines claimed to be grader lines without being so.
pub fn verified_events(text: &str, key: &[u8]) -> (Vec<Event>, usize) {
    let (mut events, mut forged, mut last) = (Vec::new(), 0, 0u64);
    for line in text.lines() {
        let Some((_, rest)) = line.trim_end_matches('\r').split_once(LINE_PREFIX) else {
            continue;
        };
        let mut parts = rest.splitn(3, ' ');
        let tag = parts.next().unwrap_or_default();
        let seq = parts
            .next()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        let json = parts.next().unwrap_or_default();
        let event = (seq > last && mac(key, seq, json) == tag)
            .then(|| serde_json::from_str::<Event>(json).ok())
            .flatten();
        match event {
            Some(e) => {
                last = seq;
                events.push(e);
            }
            None => forged += 1,
        }
    }
    (events, forged)
}

/// The report of `submission` from verified console events, for the `requested` steps.
pub fn collect(
    events: Vec<Event>,
    submission: &str,
    requested: &[String],
    guest_problem: Option<&str>,
) -> Report {
    let mut checks: BTreeMap<String, Vec<Check>> = BTreeMap::new();
    let mut extras = BTreeMap::new();
    let mut started: Vec<String> = Vec::new();
    let mut done = None;
    for event in events {
        match event {
            Event::Step { step } => {
                checks.entry(step.clone()).or_default();
                started.push(step);
            }
            Event::Check { step, check } => checks.entry(step).or_default().push(check),
            Event::Extra { check } => {
                extras.insert(check.name.clone(), check);
            }
            Event::Done { seconds } => done = Some(seconds),
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
    use crate::grade::check::Signer;
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

    const KEY: &[u8] = b"per-boot secret";

    fn lines(events: &[Event]) -> String {
        let mut signer = Signer::new(KEY.to_vec());
        events
            .iter()
            .map(|e| format!("[  1.0] noise\n{}\r\n", signer.line(e)))
            .collect()
    }

    fn collect_text(text: &str, steps: &[String], problem: Option<&str>) -> Report {
        let (events, forged) = verified_events(text, KEY);
        assert_eq!(forged, 0);
        collect(events, "sub", steps, problem)
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
        let r = collect_text(&lines(&events), &steps(&["process", "cgroups"]), None);
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
        let r = collect_text(
            &lines(&events),
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
        let r = collect_text("kernel panic\n", &steps(&["process"]), None);
        assert_eq!(r.steps["process"].status, Status::Fail);
    }

    #[test]
    fn lines_a_submission_prints_on_the_console_are_refused_and_counted() {
        let genuine = lines(&[
            Event::Step {
                step: "cgroups".into(),
            },
            Event::Check {
                step: "cgroups".into(),
                check: check("b", Status::Fail),
            },
        ]);
        let pass = serde_json::to_string(&Event::Check {
            step: "cgroups".into(),
            check: check("b", Status::Pass),
        })
        .unwrap();
        let replayed = genuine
            .lines()
            .find(|l| l.contains("\"step\""))
            .unwrap()
            .to_owned();
        let text =
            format!("{genuine}DEVOXX-GRADE {pass}\nDEVOXX-GRADE 00ff 3 {pass}\n{replayed}\n");
        let (events, forged) = verified_events(&text, KEY);
        assert_eq!(forged, 3, "unsigned, wrongly signed and replayed lines");
        assert_eq!(events.len(), 2);
        let (_, none) = verified_events(&genuine, b"another boot's secret");
        assert_eq!(none, 2);
    }
}
