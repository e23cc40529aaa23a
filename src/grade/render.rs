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
    let _ = writeln!(md, "# Grade: {} — {verdict}\n", code(&report.submission));
    if let Some(e) = &report.error {
        let _ = writeln!(md, "**Grading could not complete:** {}\n", code(e));
    }
    let _ = writeln!(md, "| step | result | first problem |\n|---|---|---|");
    for (name, step) in report.ordered_steps() {
        let optional = if step.required { "" } else { " (optional)" };
        let problem = step
            .first_problem()
            .map(|c| {
                if c.hint.is_empty() {
                    format!("{}: {}", c.name, code(&c.seen))
                } else {
                    format!("{}: {}", c.name, c.hint)
                }
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
                code(&c.seen)
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
                code(&c.seen)
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

/// `seen` (it may hold what a submission printed) as an inline code span: Markdown and HTML in
/// it are shown, never rendered — no link, image or tag of a submission's reaches a viewer.
/// The fence is longer than any run of backticks inside, and newlines become spaces.
pub fn code(s: &str) -> String {
    let text = crate::grade::invoke::printable(s).replace(['\n', '\r'], " ");
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    format!("{fence} {text} {fence}")
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
    fn what_a_submission_printed_is_shown_in_markdown_never_rendered() {
        let mut r = sample();
        let word = crate::grade::invoke::random_word("x");
        let hostile =
            format!("<img src=x onerror=alert(1)> [{word}](http://evil) `` ``` | # \x1b[31m");
        let step = r.steps.get_mut("cgroups").unwrap();
        step.checks[1].seen = hostile.clone();
        step.checks[1].hint = String::new();
        let md = markdown(&r);
        let line = md
            .lines()
            .find(|l| l.contains(&word) && l.starts_with("- "))
            .unwrap();
        let span = line.split_once("seen ").unwrap().1;
        assert!(
            span.starts_with("```` ") && span.ends_with(" ````"),
            "{span}"
        );
        assert!(!md.contains('\x1b'), "no terminal escape: {md:?}");
        let row = md.lines().find(|l| l.starts_with("| cgroups")).unwrap();
        assert_eq!(
            row.matches(" | ").count(),
            2,
            "the cell's | is escaped: {row}"
        );
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
