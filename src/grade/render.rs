//! `report.md` for the teacher, `junit.xml` for CI — both rendered from the one `Report`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};

use super::report::{Report, Status};

/// Write `report.json`, `report.md` and `junit.xml` into `dir`.
pub fn write_all(report: &Report, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let json = serde_json::to_string_pretty(report)?;
    std::fs::write(dir.join("report.json"), json + "\n")?;
    std::fs::write(dir.join("report.md"), markdown(report))?;
    std::fs::write(dir.join("junit.xml"), junit(report)?)?;
    Ok(())
}

fn badge(status: Status) -> &'static str {
    match status {
        Status::Pass => "PASS",
        Status::Fail => "FAIL",
        Status::NotAttempted => "not attempted",
    }
}

/// One table line per step, then each step's checks with expected/seen/hint where it failed.
pub fn markdown(report: &Report) -> String {
    let mut md = String::new();
    let verdict = if report.passed() {
        "PASSED"
    } else {
        "NOT PASSED"
    };
    let _ = writeln!(md, "# Grade: {} — {verdict}\n", report.submission);
    if let Some(e) = &report.error {
        let _ = writeln!(md, "**Grading could not complete:** {e}\n");
    }
    let _ = writeln!(md, "| step | result | first problem |\n|---|---|---|");
    for (name, step) in report.ordered_steps() {
        let optional = if step.required { "" } else { " (optional)" };
        let problem = step
            .first_problem()
            .map(|c| {
                format!(
                    "{}: {}",
                    c.name,
                    if c.hint.is_empty() { &c.seen } else { &c.hint }
                )
            })
            .unwrap_or_default();
        let _ = writeln!(
            md,
            "| {name}{optional} | {} | {} |",
            badge(step.status),
            cell(&problem)
        );
    }
    for (name, step) in report.ordered_steps() {
        let _ = writeln!(md, "\n## {name} — {}\n", badge(step.status));
        for c in &step.checks {
            let _ = writeln!(
                md,
                "- **{}** {}: expected {}; seen {}",
                badge(c.status),
                c.name,
                c.expected,
                c.seen
            );
            if c.status != Status::Pass && !c.hint.is_empty() {
                let _ = writeln!(md, "  - hint: {}", c.hint);
            }
        }
    }
    if !report.extras.is_empty() {
        let _ = writeln!(md, "\n## Extras (reported, never counted)\n");
        for c in report.extras.values() {
            let _ = writeln!(
                md,
                "- **{}** {}: {}; seen {}",
                badge(c.status),
                c.name,
                c.expected,
                c.seen
            );
        }
    }
    let _ = writeln!(md, "\nGraded in {:.1} s.", report.seconds);
    md
}

/// Markdown table cells cannot hold `|` or newlines.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// One test suite per step, one test case per check; a check not attempted fails a required
/// step and is skipped in the optional one; extras are a suite of their own, never failing.
pub fn junit(report: &Report) -> anyhow::Result<String> {
    let mut junit = quick_junit::Report::new(format!("devoxx-grade {}", report.submission));
    for (name, step) in report.ordered_steps() {
        let mut suite = TestSuite::new(name);
        for c in &step.checks {
            let status = match (c.status, step.required) {
                (Status::Pass, _) => TestCaseStatus::success(),
                (Status::NotAttempted, false) => {
                    let mut s = TestCaseStatus::skipped();
                    s.set_message(format!("not attempted: {}", c.hint));
                    s
                }
                (status, _) => {
                    let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    s.set_type(status.as_str())
                        .set_message(if c.hint.is_empty() {
                            c.seen.clone()
                        } else {
                            c.hint.clone()
                        })
                        .set_description(format!("expected: {}\nseen: {}", c.expected, c.seen));
                    s
                }
            };
            let mut case = TestCase::new(c.name.clone(), status);
            case.set_classname(format!("grade.{name}"));
            suite.add_test_case(case);
        }
        junit.add_test_suite(suite);
    }
    let mut extras = TestSuite::new("extras");
    for c in report.extras.values() {
        let status = if c.status == Status::Pass {
            TestCaseStatus::success()
        } else {
            let mut s = TestCaseStatus::skipped();
            s.set_message(format!("extra, not counted: {}", c.seen));
            s
        };
        let mut case = TestCase::new(c.name.clone(), status);
        case.set_classname("grade.extras");
        extras.add_test_case(case);
    }
    junit.add_test_suite(extras);
    Ok(junit.to_string()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grade::report::{Check, Step};

    fn sample() -> Report {
        let check = |name: &str, status| Check {
            name: name.into(),
            status,
            expected: "memory.max = 104857600".into(),
            seen: "max | none".into(),
            hint: "write it".into(),
        };
        let mut r = Report {
            submission: "alice".into(),
            steps: Default::default(),
            extras: Default::default(),
            seconds: 3.0,
            error: None,
        };
        r.steps.insert(
            "cgroups".into(),
            Step::from_checks(
                "cgroups",
                vec![
                    check("in-own-cgroup", Status::Pass),
                    check("memory-max", Status::Fail),
                ],
            ),
        );
        r.steps.insert(
            "process".into(),
            Step::from_checks("process", vec![check("args", Status::Pass)]),
        );
        r.steps.insert(
            "network".into(),
            Step::from_checks("network", vec![check("own-netns", Status::NotAttempted)]),
        );
        r.extras
            .insert("exit-code".into(), check("exit-code", Status::Fail));
        r
    }

    #[test]
    fn markdown_lists_steps_in_workshop_order_with_the_first_problem() {
        let md = markdown(&sample());
        assert!(md.contains("NOT PASSED"));
        let (p, c, n) = (
            md.find("| process |").unwrap(),
            md.find("| cgroups |").unwrap(),
            md.find("| network (optional) |").unwrap(),
        );
        assert!(p < c && c < n, "{md}");
        assert!(
            md.contains("| cgroups | FAIL | memory-max: write it |"),
            "{md}"
        );
        assert!(md.contains("hint: write it"));
    }

    #[test]
    fn junit_fails_what_failed_and_skips_optional_not_attempted() {
        let xml = junit(&sample()).unwrap();
        assert!(xml.contains("tests=\"5\""), "{xml}");
        assert_eq!(xml.matches("<failure").count(), 1, "{xml}");
        assert_eq!(xml.matches("<skipped").count(), 2, "{xml}");
        assert!(xml.contains("max | none"), "{xml}");
    }
}
