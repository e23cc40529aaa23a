//! The host's side of a guest run: rebuild the report from the `DEVOXX-GRADE` lines of the
//! console. Only lines signed by the grader count (the submission is root in the same guest and
//! could print its own). Steps the guest never finished are failed with the reason, so a
//! submission that hangs or takes the guest down still gets a report.

use std::collections::BTreeMap;

use super::check::{mac, Event, LINE_PREFIX};
use super::report::{Check, Report, Status, Step};

/// What the console holds, once checked.
#[derive(Debug, Default)]
pub struct Verified {
    /// The grader's events, in order.
    pub events: Vec<Event>,
    /// Lines that claimed to be the grader's without its signature, or replayed one of its.
    pub forged: usize,
    /// What is wrong with the sequence of the grader's own lines (a gap, a final line whose
    /// count or verdict does not match), if anything.
    pub broken: Option<String>,
}

impl Verified {
    /// Why the results cannot be trusted, if they cannot: one line for the report.
    pub fn void_reason(&self) -> Option<String> {
        if self.forged > 0 {
            return Some(format!("{} console line(s) claimed to be grading results without the grader's signature: the submission wrote to the console; results are void", self.forged));
        }
        self.broken
            .as_ref()
            .map(|b| format!("the grader's console lines are not whole ({b}): results are void"))
    }
}

/// The events of the console `text` that carry a valid MAC under `key`, numbered exactly 1, 2,
/// 3…: a line out of that sequence is forged (replayed), a number skipped breaks it, and the
/// final line's count must match what came before it.
pub fn verified_events(text: &str, key: &[u8]) -> Verified {
    let mut v = Verified::default();
    let mut last = 0u64;
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
        let Some(event) = event else {
            v.forged += 1;
            continue;
        };
        if seq != last + 1 && v.broken.is_none() {
            v.broken = Some(format!("lines {} to {} missing", last + 1, seq - 1));
        }
        if let Event::Done { lines, .. } = &event {
            if *lines != v.events.len() as u64 && v.broken.is_none() {
                v.broken = Some(format!(
                    "the last line counts {lines} before it, {} arrived",
                    v.events.len()
                ));
            }
        }
        last = seq;
        v.events.push(event);
    }
    v
}

/// The report of a grading that could not start (a refused `devoxx-grade.toml`, a failed build):
/// every `requested` step failed with `why` — never blamed on a guest that did not run.
pub fn not_graded(submission: &str, requested: &[String], why: &str) -> Report {
    let steps = requested
        .iter()
        .map(|step| {
            let check = Check {
                name: "step-graded".into(),
                status: Status::Fail,
                expected: "the step graded".into(),
                seen: "not graded".into(),
                hint: format!("the grading could not start: {why}"),
            };
            (step.clone(), Step::from_checks(step, vec![check]))
        })
        .collect();
    Report {
        submission: submission.into(),
        steps,
        extras: BTreeMap::new(),
        seconds: 0.0,
        error: Some(why.into()),
    }
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
            Event::Done { seconds, exit, .. } => done = Some((seconds, exit)),
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
    let mut report = Report {
        submission: submission.into(),
        steps,
        extras,
        seconds: done.map(|d| d.0).unwrap_or_default(),
        error: None,
    };
    // The verdict the grader signed must be the one its lines add up to.
    if let Some((_, exit)) = done {
        if exit != i32::from(!report.passed()) {
            report.error = Some(format!("the grader's signed exit status {exit} does not match its results: results are void"));
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grade::check::Signer;
    use crate::grade::report::Status;

    fn check(name: &str, status: Status) -> Check {
        Check::named(name, status)
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
        let v = verified_events(text, KEY);
        assert_eq!(v.void_reason(), None);
        collect(v.events, "sub", steps, problem)
    }

    fn steps(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_grading_that_could_not_start_says_why_in_every_step_and_never_blames_the_guest() {
        let why = format!(
            "`timeout_s = {}` refused: must be between 1 and 600",
            600 + rand::random::<u16>() as u32
        );
        let r = not_graded("sub", &steps(&["process", "rootfs"]), &why);
        assert_eq!(r.error.as_deref(), Some(why.as_str()));
        for step in ["process", "rootfs"] {
            let c = r.steps[step].first_problem().unwrap();
            assert!(c.hint.contains(&why) && !c.hint.contains("guest"), "{c:?}");
        }
        assert!(!r.passed());
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
            Event::Done {
                seconds: 12.5,
                lines: 5,
                exit: 1,
            },
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
        let v = verified_events(&text, KEY);
        assert_eq!(v.forged, 3, "unsigned, wrongly signed and replayed lines");
        assert_eq!(v.events.len(), 2);
        assert!(v.void_reason().is_some_and(|r| r.contains("void")));
        let other = verified_events(&genuine, b"another boot's secret");
        assert_eq!(other.forged, 2);
    }

    /// A console with the grader's lines 1..=n for `events`, as signed text lines.
    fn signed(events: &[Event]) -> Vec<String> {
        let mut signer = Signer::new(KEY.to_vec());
        events.iter().map(|e| signer.line(e)).collect()
    }

    fn three_steps_and_done(exit: i32, lines: u64) -> Vec<Event> {
        let step = |s: &str| Event::Step { step: s.into() };
        vec![
            step("process"),
            Event::Check {
                step: "process".into(),
                check: check("a", Status::Pass),
            },
            step("rootfs"),
            Event::Done {
                seconds: 1.0,
                lines,
                exit,
            },
        ]
    }

    #[test]
    fn a_missing_grader_line_voids_the_results() {
        let mut text = signed(&three_steps_and_done(0, 3));
        let dropped = text.remove(1 + rand::random::<u32>() as usize % 2);
        let v = verified_events(&text.join("\n"), KEY);
        assert_eq!(v.forged, 0, "every line left is genuine");
        let why = v.void_reason().expect("a gap voids");
        assert!(why.contains("missing"), "{why} (dropped {dropped})");
    }

    #[test]
    fn the_last_line_must_count_the_lines_before_it() {
        let text = signed(&three_steps_and_done(0, 7)).join("\n");
        let v = verified_events(&text, KEY);
        assert!(v.void_reason().is_some_and(|r| r.contains("counts 7")));
        let whole = verified_events(&signed(&three_steps_and_done(0, 3)).join("\n"), KEY);
        assert_eq!(whole.void_reason(), None);
    }

    #[test]
    fn a_signed_verdict_that_contradicts_the_results_voids_them() {
        let steps = steps(&["process", "rootfs"]);
        // rootfs never got a check: not passed, so exit must be 1.
        let lying = verified_events(&signed(&three_steps_and_done(0, 3)).join("\n"), KEY);
        let r = collect(lying.events, "sub", &steps, None);
        assert!(r.error.is_some_and(|e| e.contains("exit status 0")));
        let honest = verified_events(&signed(&three_steps_and_done(1, 3)).join("\n"), KEY);
        assert_eq!(collect(honest.events, "sub", &steps, None).error, None);
    }
}
