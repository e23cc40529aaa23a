//! The class table: many `report.json` files merged into one view, a row per submission and a
//! column per workshop step, with the first problem of each submission — what a teacher needs
//! to see who is stuck where.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use super::report::{Report, Status, STEPS};

/// Merge the `reports` into the class table; writes `class.md` and `class.csv` into `out` when
/// given and returns the Markdown.
pub fn merge(reports: &[&Path], out: Option<&Path>) -> anyhow::Result<String> {
    let mut class = reports
        .iter()
        .map(|p| read(p))
        .collect::<anyhow::Result<Vec<Report>>>()?;
    class.sort_by(|a, b| a.submission.cmp(&b.submission));
    let md = markdown(&class);
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        std::fs::write(dir.join("class.md"), &md)?;
        std::fs::write(dir.join("class.csv"), csv(&class))?;
    }
    Ok(md)
}

fn read(path: &Path) -> anyhow::Result<Report> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a grade report", path.display()))
}

/// A step's cell: its status, or empty when the step was not graded.
fn status(report: &Report, step: &str) -> Option<Status> {
    report.steps.get(step).map(|s| s.status)
}

/// `step: check — hint` of the first step (in workshop order) that did not pass.
fn first_problem(report: &Report) -> String {
    if let Some(e) = &report.error {
        return e.clone();
    }
    report
        .ordered_steps()
        .into_iter()
        .find_map(|(name, step)| {
            // An optional step not attempted is no problem.
            if !step.required && step.status == Status::NotAttempted {
                return None;
            }
            let check = step.first_problem()?;
            let why = if check.hint.is_empty() {
                super::render::code(&check.seen)
            } else {
                check.hint.clone()
            };
            Some(format!("{name}: {} — {why}", check.name))
        })
        .unwrap_or_default()
}

/// CSV: `submission`, one column per step (`pass`/`fail`/`not-attempted`, empty when not
/// graded), `seconds`.
pub fn csv(class: &[Report]) -> String {
    let mut out = format!("submission,{},seconds\n", STEPS.join(","));
    for r in class {
        let cells: Vec<&str> = STEPS
            .iter()
            .map(|s| status(r, s).map_or("", Status::as_str))
            .collect();
        let _ = writeln!(
            out,
            "{},{},{:.1}",
            csv_field(&r.submission),
            cells.join(","),
            r.seconds
        );
    }
    out
}

/// RFC 4180 quoting where needed.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// Markdown: a row per submission, PASS/FAIL/not attempted per step, the first problem's hint.
pub fn markdown(class: &[Report]) -> String {
    let mut md = format!(
        "| submission | {} | seconds | first problem |\n",
        STEPS.join(" | ")
    );
    let _ = writeln!(md, "|---|{}---:|---|", "---|".repeat(STEPS.len()));
    for r in class {
        let cells: Vec<&str> = STEPS
            .iter()
            .map(|s| match status(r, s) {
                Some(Status::Pass) => "PASS",
                Some(Status::Fail) => "FAIL",
                Some(Status::NotAttempted) => "not attempted",
                None => "",
            })
            .collect();
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {} |",
            cell(&r.submission),
            cells.join(" | "),
            r.seconds,
            cell(&first_problem(r))
        );
    }
    let passed = class.iter().filter(|r| r.passed()).count();
    let _ = writeln!(
        md,
        "\n{passed} of {} submissions pass every required step.",
        class.len()
    );
    md
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grade::report::{Check, Step};

    fn report(name: &str, steps: &[(&str, Status)], seconds: f64) -> Report {
        let mut r = Report {
            submission: name.into(),
            steps: Default::default(),
            extras: Default::default(),
            seconds,
            error: None,
        };
        for (step, status) in steps {
            let check = Check {
                name: format!("{step}-check"),
                status: *status,
                expected: "e".into(),
                seen: "s".into(),
                hint: format!("fix {step}"),
            };
            r.steps
                .insert(step.to_string(), Step::from_checks(step, vec![check]));
        }
        r
    }

    fn class() -> Vec<Report> {
        use Status::*;
        vec![
            report(
                "alice",
                &[
                    ("process", Pass),
                    ("namespaces", Pass),
                    ("rootfs", Pass),
                    ("cgroups", Fail),
                    ("volumes", NotAttempted),
                    ("network", NotAttempted),
                ],
                21.4,
            ),
            report("bob, jr", &[("cgroups", Pass)], 9.0),
        ]
    }

    #[test]
    fn csv_has_one_column_per_step_in_workshop_order_and_empty_cells_for_ungraded_steps() {
        assert_eq!(
            csv(&class()),
            "submission,process,namespaces,rootfs,cgroups,volumes,network,seconds\n\
             alice,pass,pass,pass,fail,not-attempted,not-attempted,21.4\n\
             \"bob, jr\",,,,pass,,,9.0\n"
        );
    }

    #[test]
    fn markdown_shows_each_submissions_first_problem_and_the_count_that_pass() {
        let md = markdown(&class());
        assert!(md.contains("| alice | PASS | PASS | PASS | FAIL | not attempted | not attempted | 21 | cgroups: cgroups-check — fix cgroups |"), "{md}");
        assert!(
            md.contains("| bob, jr |  |  |  | PASS |  |  | 9 |  |"),
            "{md}"
        );
        assert!(md.contains("1 of 2 submissions pass"), "{md}");
    }

    #[test]
    fn a_report_whose_grading_failed_shows_why() {
        let mut r = report("carol", &[("process", Status::Fail)], 3.0);
        r.error = Some("make failed in carol".into());
        assert!(markdown(&[r]).contains("| make failed in carol |"));
    }

    #[test]
    fn merge_sorts_by_name_writes_both_files_and_names_a_bad_report() {
        let dir = tempfile::tempdir().unwrap();
        let paths: Vec<_> = class()
            .into_iter()
            .rev()
            .map(|r| {
                let p = dir.path().join(format!("{}.json", r.submission));
                std::fs::write(&p, serde_json::to_string(&r).unwrap()).unwrap();
                p
            })
            .collect();
        let refs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
        let out = dir.path().join("out");
        let md = merge(&refs, Some(&out)).unwrap();
        assert!(md.find("| alice").unwrap() < md.find("| bob").unwrap());
        assert_eq!(std::fs::read_to_string(out.join("class.md")).unwrap(), md);
        assert!(std::fs::read_to_string(out.join("class.csv"))
            .unwrap()
            .starts_with("submission,process"));
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{\"not\": \"a report\"}").unwrap();
        let err = merge(&[bad.as_path()], None).unwrap_err();
        assert!(
            format!("{err:#}").contains("bad.json is not a grade report"),
            "{err:#}"
        );
    }
}
