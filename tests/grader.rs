//! The grader's self-test (workshop tier): inside the cgroup v2 VM, grade this project's runtime
//! and every deliberately broken runtime of `tests/grader/faults`, and check that each broken
//! one fails exactly the steps its fault breaks while every other required step passes — so
//! the grader neither misses a fault nor blames the wrong step. Grading runs the runtimes as
//! root and some of them rename the host or leak mounts on purpose, so these tests are
//! `#[ignore]`d (listed as VM only) on the host; the VM runs every binary with
//! `--include-ignored`, where an ignored test would be a failure.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use devoxx_docker::grade::report::{Report, Status, REQUIRED_STEPS};
use rstest::rstest;
use serial_test::serial;

/// Why the grading tests do not run on the host.
const VM_ONLY: &str =
    "VM only: make vm-test runs it (grading renames the host and leaks mounts on purpose)";

const GRADER: &str = env!("CARGO_BIN_EXE_devoxx-docker-grade");
const MANIFEST: &str = env!("CARGO_MANIFEST_DIR");

/// In the grading guest or the test VM (the kernel command line says which)?
fn in_disposable_vm() -> bool {
    std::fs::read_to_string("/proc/cmdline").is_ok_and(|c| c.contains("devoxx.mode="))
}

macro_rules! require_vm {
    () => {
        if !in_disposable_vm() {
            skip!("{VM_ONLY}");
        }
    };
}

/// The broken runtimes, written once into a temp dir from workshop.sh.
fn runtimes() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let made = Command::new(Path::new(MANIFEST).join("tests/grader/make-runtimes.sh"))
            .arg(dir.path())
            .output()
            .expect("make-runtimes.sh");
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        dir
    })
    .path()
}

/// `tests/grader/faults`: fault name → the steps it must fail.
fn faults() -> BTreeMap<String, Vec<String>> {
    let text =
        std::fs::read_to_string(Path::new(MANIFEST).join("tests/grader/faults")).expect("faults");
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let l = l.split('#').next().unwrap_or_default();
            let mut words = l.split_whitespace().map(str::to_owned);
            (words.next().unwrap_or_default(), words.collect())
        })
        .collect()
}

/// The cgroup v2 machine a student has: controllers delegated from the root.
fn delegate_controllers() {
    let _ = std::fs::write(
        "/sys/fs/cgroup/cgroup.subtree_control",
        "+cpu +memory +pids",
    );
}

/// Grade `runtime` (steps: all when empty) and return its report.
fn grade(runtime: &Path, name: &str, steps: &[&str], config: Option<&Path>) -> Report {
    delegate_controllers();
    let out = tempfile::tempdir().expect("tempdir");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(GRADER);
    cmd.args(["check", "--name", name, "--busybox"])
        .arg(common::busybox())
        .arg("--probe")
        .arg(common::probe())
        .arg("--runtime")
        .arg(runtime)
        .arg("--dir")
        .arg(dir.path())
        .arg("--out")
        .arg(out.path())
        .arg("--scratch")
        .arg(dir.path().join("scratch"));
    if !steps.is_empty() {
        cmd.arg("--steps").arg(steps.join(","));
    }
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let run = cmd.output().expect("run the grader");
    let report = std::fs::read_to_string(out.path().join("report.json")).unwrap_or_else(|e| {
        panic!(
            "no report ({e}); grader said: {}",
            String::from_utf8_lossy(&run.stderr)
        )
    });
    let report: Report = serde_json::from_str(&report).expect("report.json parses");
    assert_eq!(
        run.status.code(),
        Some(if report.passed() { 0 } else { 1 }),
        "exit code is the verdict"
    );
    for f in ["report.md", "junit.xml"] {
        assert!(out.path().join(f).exists(), "{f} written");
    }
    let run_cgroup = Path::new("/sys/fs/cgroup/devoxx-grade");
    assert!(
        !run_cgroup.exists(),
        "the grader removes its run cgroup; procs {:?}, grader said: {}",
        std::fs::read_to_string(run_cgroup.join("cgroup.procs")),
        String::from_utf8_lossy(&run.stderr)
    );
    report
}

fn status_table(r: &Report) -> String {
    r.ordered_steps()
        .iter()
        .map(|(n, s)| {
            let why = s
                .first_problem()
                .map(|c| format!(" ({}: {})", c.name, c.seen))
                .unwrap_or_default();
            format!("\n  {n}: {}{why}", s.status.as_str())
        })
        .collect()
}

#[rstest]
#[case::no_uts_ns("no-uts-ns")]
#[case::no_pid_ns("no-pid-ns")]
#[case::no_chroot("no-chroot")]
#[case::cgroup_not_joined("cgroup-not-joined")]
#[case::no_limits("no-limits")]
#[case::volume_in_host_ns("volume-in-host-ns")]
#[case::volume_not_unmounted("volume-not-unmounted")]
#[case::exit_always_0("exit-always-0")]
#[case::hard_coded("hard-coded")]
#[serial(grade)]
#[ignore = "VM only: make vm-test runs it (grading renames the host and leaks mounts on purpose)"]
fn each_broken_runtime_fails_exactly_the_steps_it_breaks(#[case] fault: &str) {
    require_vm!();
    let broken = faults()
        .remove(fault)
        .unwrap_or_else(|| panic!("{fault} not in tests/grader/faults"));
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let report = grade(&runtimes().join(fault), fault, &REQUIRED_STEPS, None);
    for step in REQUIRED_STEPS {
        let status = report.steps[step].status;
        if broken.iter().any(|b| b == step) {
            assert_ne!(
                status,
                Status::Pass,
                "{fault}: {step} must not pass:{}",
                status_table(&report)
            );
            let problem = report.steps[step].first_problem().expect("a failing check");
            assert!(
                !problem.hint.is_empty(),
                "{fault}: {step}: a failing check gives a hint: {problem:?}"
            );
        } else {
            assert_eq!(
                status,
                Status::Pass,
                "{fault}: only {broken:?} may fail:{}",
                status_table(&report)
            );
        }
    }
    assert!(!report.passed());
    // Whatever the broken runtime did to the guest, the grader undid.
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default(),
        hostname
    );
}

#[test]
fn every_fault_in_the_list_has_a_case() {
    let listed: Vec<String> = faults().into_keys().collect();
    let source =
        std::fs::read_to_string(Path::new(MANIFEST).join("tests/grader.rs")).expect("read");
    for f in listed {
        assert!(
            source.contains(&format!("#[case::{}(\"{f}\")]", f.replace('-', "_"))),
            "no case for {f}"
        );
    }
}

#[test]
#[serial(grade)]
#[ignore = "VM only: make vm-test runs it (grading renames the host and leaks mounts on purpose)"]
fn the_reference_workshop_runtime_passes_every_required_step() {
    require_vm!();
    let report = grade(&runtimes().join("workshop"), "workshop", &[], None);
    assert!(report.passed(), "{}", status_table(&report));
    assert_eq!(
        report.steps["network"].status,
        Status::NotAttempted,
        "workshop.sh has no network"
    );
    // It re-executes a shell as PID 1 and picks its own cgroup: tolerated, and reported.
    assert_eq!(report.extras["command-is-pid-1"].status, Status::Fail);
}

#[test]
#[serial(grade)]
#[ignore = "VM only: make vm-test runs it (grading renames the host and leaks mounts on purpose)"]
fn this_projects_runtime_passes_every_step_including_network() {
    require_vm!();
    let runtime = PathBuf::from(env!("CARGO_BIN_EXE_devoxx-docker"));
    let report = grade(
        &runtime,
        "devoxx-docker",
        &[],
        Some(&Path::new(MANIFEST).join("devoxx-grade.toml")),
    );
    for (name, step) in report.ordered_steps() {
        assert_eq!(
            step.status,
            Status::Pass,
            "{name}:{}",
            status_table(&report)
        );
    }
    assert_eq!(report.steps.len(), 6);
    for extra in [
        "exit-code-propagated",
        "command-is-pid-1",
        "image-unchanged-by-container",
        "cgroup-removed-after-exit",
    ] {
        assert_eq!(
            report.extras[extra].status,
            Status::Pass,
            "{extra}: {:?}",
            report.extras[extra]
        );
    }
}
