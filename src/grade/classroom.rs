//! What GitHub Classroom's reporter (`classroom-resources/autograding-grading-reporter`) reads:
//! one result per workshop step, in the format `autograding-command-grader` writes
//! (`{"version":1,"status","max_score","tests":[{"name","status","score","message",…}]}`,
//! base64 in `<STEP>_RESULTS`), built from one grading's `report.json`. Each check of a step is
//! one test worth its share of the step's points, so a student who passes four checks of five
//! gets four fifths of the step. The reporter turns the run red when a result's status is
//! `fail` or `error`: an optional step (network) that did not pass says `optional` instead, so
//! it adds points when it passes and never turns a student's run red.

use anyhow::{bail, Context};
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::report::{Check, Report, Status, REQUIRED_STEPS, STEPS};

/// The points of each step when the workflow gives none (the workshop's weights).
pub const DEFAULT_POINTS: &str =
    "process=15,namespaces=20,rootfs=20,cgroups=20,volumes=15,network=10";

/// One step's result, as the reporter reads it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    pub version: u32,
    /// `pass`, `fail`, `error` (the grading could not judge it), or `optional` (an optional
    /// step that did not pass: never red).
    pub status: String,
    pub max_score: u32,
    pub tests: Vec<TestResult>,
}

/// One check of a step, as one of the reporter's tests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    pub name: String,
    /// `pass` or `fail`.
    pub status: String,
    /// The check's share of the step's points when it passed, else 0.
    pub score: u32,
    /// What was expected, what was seen and the hint (empty when it passed).
    pub message: String,
    pub test_code: String,
    pub filename: String,
    pub line_no: u32,
    pub duration: u32,
}

/// Parse `step=points,…` (every step named once, only known steps).
pub fn parse_points(spec: &str) -> anyhow::Result<Vec<(String, u32)>> {
    let mut points = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (step, value) = item
            .split_once('=')
            .with_context(|| format!("{item:?}: expected STEP=POINTS"))?;
        if !STEPS.contains(&step) {
            bail!("{step:?} is not a step (one of {})", STEPS.join(", "));
        }
        if points.iter().any(|(s, _)| s == step) {
            bail!("{step:?} is given twice");
        }
        let value: u32 = value
            .parse()
            .with_context(|| format!("{item:?}: points must be a whole number"))?;
        points.push((step.to_owned(), value));
    }
    if points.is_empty() {
        bail!("no step given points");
    }
    Ok(points)
}

/// The result of each step in `points` from `report` (`None`: the grading wrote no report).
pub fn results(report: Option<&Report>, points: &[(String, u32)]) -> Vec<(String, StepResult)> {
    points
        .iter()
        .map(|(step, max)| (step.clone(), step_result(report, step, *max)))
        .collect()
}

/// One line per step, `<step>=<base64 of its JSON>`, ready for `>> "$GITHUB_OUTPUT"`.
pub fn output_lines(results: &[(String, StepResult)]) -> anyhow::Result<String> {
    let mut out = String::new();
    for (step, result) in results {
        let json = serde_json::to_vec(result)?;
        out.push_str(step);
        out.push('=');
        out.push_str(&base64::engine::general_purpose::STANDARD.encode(json));
        out.push('\n');
    }
    Ok(out)
}

fn step_result(report: Option<&Report>, step: &str, max: u32) -> StepResult {
    let required = REQUIRED_STEPS.contains(&step);
    let not_passed = if required { "fail" } else { "optional" };
    let unjudged = |why: String| StepResult {
        version: 1,
        status: if required { "error" } else { "optional" }.into(),
        max_score: max,
        tests: vec![test(step, false, 0, why)],
    };
    let Some(report) = report else {
        return unjudged("the grading wrote no report (see the job's log)".into());
    };
    if let Some(error) = &report.error {
        return unjudged(format!("not graded: {error}"));
    }
    let Some(graded) = report.steps.get(step) else {
        return unjudged("not graded (not among the steps the workflow asked for)".into());
    };
    let n = graded.checks.len().max(1) as u64;
    let tests = graded
        .checks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            // Whole points, adding up to the step's: the i-th check's share of `max`.
            let share =
                (u64::from(max) * (i as u64 + 1) / n - u64::from(max) * i as u64 / n) as u32;
            let passed = c.status == Status::Pass;
            test(&c.name, passed, if passed { share } else { 0 }, message(c))
        })
        .collect();
    StepResult {
        version: 1,
        status: if graded.status == Status::Pass {
            "pass"
        } else {
            not_passed
        }
        .into(),
        max_score: max,
        tests,
    }
}

fn test(name: &str, passed: bool, score: u32, message: String) -> TestResult {
    TestResult {
        name: name.into(),
        status: if passed { "pass" } else { "fail" }.into(),
        score,
        message: if passed { String::new() } else { message },
        test_code: String::new(),
        filename: String::new(),
        line_no: 0,
        duration: 0,
    }
}

/// A failed check in a line: what it expected, what the grader saw, and the hint.
fn message(c: &Check) -> String {
    let mut text = format!("expected: {}; seen: {}", c.expected, c.seen);
    if !c.hint.is_empty() {
        text.push_str("; hint: ");
        text.push_str(&c.hint);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grade::report::Step;

    fn check(name: &str, status: Status) -> Check {
        Check::named(name, status)
    }

    fn report(steps: &[(&str, &[Status])]) -> Report {
        Report {
            submission: "alice".into(),
            steps: steps
                .iter()
                .map(|(s, statuses)| {
                    let checks = statuses
                        .iter()
                        .enumerate()
                        .map(|(i, st)| check(&format!("{s}-{i}"), *st))
                        .collect();
                    (s.to_string(), Step::from_checks(s, checks))
                })
                .collect(),
            extras: Default::default(),
            seconds: 1.0,
            error: None,
        }
    }

    fn decode(lines: &str) -> Vec<(String, StepResult)> {
        lines
            .lines()
            .map(|l| {
                let (step, b64) = l.split_once('=').unwrap();
                let json = base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap();
                (step.to_owned(), serde_json::from_slice(&json).unwrap())
            })
            .collect()
    }

    #[test]
    fn a_step_missing_one_check_earns_the_other_checks_share_of_its_points() {
        let max = 10 + rand::random::<u32>() % 90;
        let points = parse_points(&format!("cgroups={max}")).unwrap();
        let (p, f) = (Status::Pass, Status::Fail);
        let r = report(&[("cgroups", &[p, p, f, p, p])]);
        let out = decode(&output_lines(&results(Some(&r), &points)).unwrap());
        let (step, result) = &out[0];
        assert_eq!(step, "cgroups");
        assert_eq!((result.status.as_str(), result.max_score), ("fail", max));
        let shares: Vec<u32> = (0..5u32).map(|i| max * (i + 1) / 5 - max * i / 5).collect();
        assert_eq!(shares.iter().sum::<u32>(), max);
        let scores: Vec<u32> = result.tests.iter().map(|t| t.score).collect();
        assert_eq!(scores, [shares[0], shares[1], 0, shares[3], shares[4]]);
        let failed = &result.tests[2];
        assert_eq!(
            (failed.name.as_str(), failed.status.as_str()),
            ("cgroups-2", "fail")
        );
        assert_eq!(
            failed.message,
            "expected: cgroups-2 expected; seen: cgroups-2 seen; hint: cgroups-2 hint"
        );
        assert!(result.tests[0].message.is_empty() && result.tests[0].status == "pass");
    }

    #[test]
    fn an_optional_step_that_fails_is_never_red_and_a_passed_step_earns_all_its_points() {
        let points = parse_points("process=15, network=7").unwrap();
        let r = report(&[
            ("process", &[Status::Pass, Status::Pass, Status::Pass]),
            ("network", &[Status::Fail, Status::NotAttempted]),
        ]);
        let out = results(Some(&r), &points);
        assert_eq!(out[0].1.status, "pass");
        assert_eq!(out[0].1.tests.iter().map(|t| t.score).sum::<u32>(), 15);
        assert_eq!(out[1].1.status, "optional");
        assert_eq!(out[1].1.tests.iter().map(|t| t.score).sum::<u32>(), 0);
        assert!(out
            .iter()
            .all(|(_, r)| r.status != "fail" && r.status != "error"));
    }

    #[test]
    fn a_grading_without_report_or_with_an_error_gives_every_step_zero_and_says_why() {
        let points = parse_points(DEFAULT_POINTS).unwrap();
        let why = format!("make failed {}", rand::random::<u32>());
        let mut r = report(&[]);
        r.error = Some(why.clone());
        for (report, says) in [(None, "wrote no report"), (Some(&r), why.as_str())] {
            let out = results(report, &points);
            assert_eq!(out.len(), STEPS.len());
            for (step, result) in out {
                assert_eq!(result.tests.len(), 1);
                assert_eq!(result.tests[0].score, 0);
                assert!(result.tests[0].message.contains(says), "{step}: {result:?}");
                let want = if step == "network" {
                    "optional"
                } else {
                    "error"
                };
                assert_eq!(result.status, want);
            }
        }
    }

    #[test]
    fn points_are_checked_step_by_step() {
        for bad in [
            "",
            "process",
            "process=x",
            "proc=3",
            "process=1,process=2",
            "process=-1",
        ] {
            assert!(parse_points(bad).is_err(), "{bad:?}");
        }
        let all = parse_points(DEFAULT_POINTS).unwrap();
        assert_eq!(
            all.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(),
            STEPS
        );
        assert_eq!(all.iter().map(|(_, p)| p).sum::<u32>(), 100);
    }
}
