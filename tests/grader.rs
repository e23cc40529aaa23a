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

/// `tests/grader/faults`: fault name → the steps it must fail (`step` or `step:check`).
fn faults() -> BTreeMap<String, Vec<String>> {
    expectations("tests/grader/faults")
}

/// `tests/grader/family/expected`: the family's runtimes → the steps each must fail.
fn family() -> BTreeMap<String, Vec<String>> {
    expectations("tests/grader/family/expected")
}

/// A list of runtimes and the steps each must fail, one per line (`#` comments).
fn expectations(file: &str) -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(Path::new(MANIFEST).join(file)).expect(file);
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

/// A submission to grade: its executable, and for a built one its directory (where it runs
/// from and where its devoxx-grade.toml is).
struct Submission {
    runtime: PathBuf,
    dir: Option<PathBuf>,
    /// The teacher's workshop file it is graded against (none: the devoxx workshop).
    workshop: Option<PathBuf>,
}

impl Submission {
    /// A fault of make-runtimes.sh: a single file, or a built directory with its config.
    fn fault(name: &str) -> Submission {
        let path = runtimes().join(name);
        if path.is_dir() {
            Submission {
                runtime: path.join("bin/devoxx-docker"),
                dir: Some(path),
                workshop: None,
            }
        } else {
            Submission {
                runtime: path,
                dir: None,
                workshop: None,
            }
        }
    }

    /// A Go solution `make grader-go` built into target/grader-go/NAME.
    fn go(name: &str) -> Submission {
        let dir = Path::new(MANIFEST).join("target/grader-go").join(name);
        assert!(
            dir.join("bin/devoxx-docker").is_file(),
            "{} missing: make vm-test builds it (make grader-go)",
            dir.display()
        );
        Submission {
            runtime: dir.join("bin/devoxx-docker"),
            dir: Some(dir),
            workshop: None,
        }
    }

    /// A runtime of the family `make grader-go` built into target/grader-go/family/NAME, graded
    /// against its own workshop file.
    fn family(name: &str) -> Submission {
        let mut sub = Submission::go(&format!("family/{name}"));
        sub.workshop = sub.dir.as_ref().map(|d| d.join("workshop.toml"));
        sub
    }

    fn grade(&self, name: &str, steps: &[&str]) -> Report {
        let config = self.dir.as_ref().map(|d| d.join("devoxx-grade.toml"));
        grade_in(
            &self.runtime,
            name,
            steps,
            config.as_deref().filter(|c| c.exists()),
            self.dir.as_deref(),
            self.workshop.as_deref(),
        )
    }
}

/// Grade `runtime` (steps: all when empty) and return its report.
fn grade(runtime: &Path, name: &str, steps: &[&str], config: Option<&Path>) -> Report {
    grade_in(runtime, name, steps, config, None, None)
}

/// [`grade`], running the submission from `dir` (a temporary directory when `None`).
fn grade_in(
    runtime: &Path,
    name: &str,
    steps: &[&str],
    config: Option<&Path>,
    dir: Option<&Path>,
    workshop: Option<&Path>,
) -> Report {
    delegate_controllers();
    let out = tempfile::tempdir().expect("tempdir");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = dir.unwrap_or(tmp.path());
    let mut cmd = Command::new(GRADER);
    cmd.args(["check", "--name", name, "--busybox"])
        .arg(common::busybox())
        .arg("--probe")
        .arg(common::probe())
        .arg("--runtime")
        .arg(runtime)
        .arg("--dir")
        .arg(dir)
        .arg("--out")
        .arg(out.path())
        .arg("--scratch")
        .arg(tmp.path().join("scratch"));
    if !steps.is_empty() {
        cmd.arg("--steps").arg(steps.join(","));
    }
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    if let Some(w) = workshop {
        cmd.arg("--workshop").arg(w);
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

/// Every required step graded passes but those `broken` names, whose first problem is the check
/// named after `:` when one is.
fn assert_grade(report: &Report, who: &str, broken: &[String]) {
    let required = report.steps.iter().filter(|(_, s)| s.required);
    for (step, graded) in required {
        let status = graded.status;
        let wanted = broken.iter().find(|b| b.split(':').next() == Some(step));
        match wanted {
            Some(b) => {
                assert_ne!(
                    status,
                    Status::Pass,
                    "{who}: {step} must not pass:{}",
                    status_table(report)
                );
                let problem = graded.first_problem().expect("a failing check");
                assert!(
                    !problem.hint.is_empty(),
                    "{who}: {step}: a failing check gives a hint: {problem:?}"
                );
                if let Some((_, check)) = b.split_once(':') {
                    assert_eq!(
                        problem.name,
                        check,
                        "{who}: {step}'s first problem:{}",
                        status_table(report)
                    );
                }
            }
            None => assert_eq!(
                status,
                Status::Pass,
                "{who}: only {broken:?} may fail:{}",
                status_table(report)
            ),
        }
    }
    for b in broken {
        let step = b.split(':').next().unwrap_or_default();
        assert!(
            report.steps.get(step).is_some_and(|s| s.required),
            "{who}: {step} must be graded (and fail):{}",
            status_table(report)
        );
    }
    assert_eq!(
        report.passed(),
        broken.is_empty(),
        "{}",
        status_table(report)
    );
}

#[rstest]
#[case::no_uts_ns("no-uts-ns")]
#[case::no_pid_ns("no-pid-ns")]
#[case::no_chroot("no-chroot")]
#[case::cgroup_not_joined("cgroup-not-joined")]
#[case::no_limits("no-limits")]
#[case::no_cpu_limit("no-cpu-limit")]
#[case::volume_in_host_ns("volume-in-host-ns")]
#[case::volume_not_unmounted("volume-not-unmounted")]
#[case::exit_always_0("exit-always-0")]
#[case::hard_coded("hard-coded")]
#[case::args_dropped("args-dropped")]
#[case::hard_coded_volume_abs("hard-coded-volume-abs")]
#[case::hard_coded_volume_rel("hard-coded-volume-rel")]
#[case::veth_left("veth-left")]
#[case::crash_after_network("crash-after-network")]
#[case::copy_not_mount("copy-not-mount")]
#[case::racy_cgroup("racy-cgroup")]
#[case::shared_propagation("shared-propagation")]
#[case::reads_grader("reads-grader")]
#[serial(grade)]
#[ignore = "VM only: make vm-test runs it (grading renames the host and leaks mounts on purpose)"]
fn each_variant_fails_exactly_the_steps_it_breaks(#[case] fault: &str) {
    require_vm!();
    let broken = faults()
        .remove(fault)
        .unwrap_or_else(|| panic!("{fault} not in tests/grader/faults"));
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let links_before = links();
    let report = Submission::fault(fault).grade(fault, &REQUIRED_STEPS);
    assert_grade(&report, fault, &broken);
    // Whatever the runtime did to the guest, the grader undid.
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default(),
        hostname
    );
    assert_eq!(
        links(),
        links_before,
        "{fault}: no network link left on the host"
    );
}

/// The network links of this (the host's) network namespace.
fn links() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
#[serial(grade)]
#[ignore = "VM only: make vm-test runs it (grading renames the host and leaks mounts on purpose)"]
fn a_racy_cgroup_placement_gets_the_same_grade_ten_times() {
    require_vm!();
    let racy = Submission::fault("racy-cgroup");
    let mut escapes = 0;
    for i in 0..10 {
        let report = racy.grade("racy-cgroup", &["cgroups"]);
        assert_eq!(
            report.steps["cgroups"].status,
            Status::Pass,
            "grading {i}:{}",
            status_table(&report)
        );
        let warning = &report.extras["command-in-container-cgroup"];
        if warning.status == Status::Fail {
            escapes += 1;
            assert!(
                warning
                    .hint
                    .contains("place the child before it runs anything"),
                "{warning:?}"
            );
        }
    }
    eprintln!("the command escaped its parent's cgroup in {escapes} of 10 gradings");
}

#[rstest]
#[case::go_submission("go-submission", &[], Status::NotAttempted)]
#[case::go_final("go-final", &["volumes:not-in-host-mount-table"], Status::Pass)]
#[serial(grade)]
#[ignore = "VM only: make vm-test runs it (grading renames the host and leaks mounts on purpose)"]
fn each_go_workshop_solution_gets_its_grade(
    #[case] name: &str,
    #[case] broken: &[&str],
    #[case] network: Status,
) {
    require_vm!();
    let report = Submission::go(name).grade(name, &[]);
    let broken: Vec<String> = broken.iter().map(|b| b.to_string()).collect();
    assert_grade(&report, name, &broken);
    assert_eq!(
        report.steps["network"].status,
        network,
        "{name}:{}",
        status_table(&report)
    );
}

/// The family's runtimes graded on this guest's cgroup v2 (the v1 ones boot a v1 grading guest:
/// tests/grader/family-check.sh), each against its own workshop file: it fails exactly the
/// steps tests/grader/family/expected lists, and every step its workshop teaches is graded.
#[rstest]
#[case::pivot_go("pivot-go")]
#[case::bare_go("bare-go")]
#[case::pids_go("pids-go")]
#[case::chroot_ignored_go("chroot-ignored-go")]
#[serial(grade)]
#[ignore = "VM only: make vm-test runs it (grading renames the host and leaks mounts on purpose)"]
fn each_family_runtime_on_cgroup_v2_gets_its_grade(#[case] name: &str) {
    require_vm!();
    let broken = family()
        .remove(name)
        .unwrap_or_else(|| panic!("{name} not in tests/grader/family/expected"));
    let sub = Submission::family(name);
    let workshop = sub.workshop.clone().expect("a workshop file");
    let taught = devoxx_docker::grade::workshop::Workshop::load(&workshop).expect("workshop.toml");
    assert_eq!(
        taught.cgroup,
        devoxx_docker::grade::workshop::CgroupVersion::V2,
        "{name}: a v1 workshop is graded on a v1 guest"
    );
    let report = sub.grade(name, &[]);
    let graded: Vec<&str> = report.steps.keys().map(String::as_str).collect();
    let mut wanted: Vec<&str> = taught.steps.iter().map(String::as_str).collect();
    wanted.sort();
    assert_eq!(graded, wanted, "{name}: the workshop's steps are graded");
    assert_grade(&report, name, &broken);
}

/// Every runtime of tests/grader/family has its line in `expected`, a workshop file and a
/// devoxx-grade.toml the grader accepts, and a grading: a v2 workshop's a case above, a v1 one's
/// a boot of its own in tests/grader/family-check.sh (which grades every v1 line of `expected`).
#[test]
fn every_family_runtime_has_its_files_and_a_grading() {
    use devoxx_docker::grade::{config::Config, workshop};
    let listed: Vec<String> = family().into_keys().collect();
    let source =
        std::fs::read_to_string(Path::new(MANIFEST).join("tests/grader.rs")).expect("read");
    let dir = Path::new(MANIFEST).join("tests/grader/family");
    for entry in std::fs::read_dir(&dir)
        .expect("tests/grader/family")
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            !entry.path().is_dir() || listed.contains(&name),
            "{name} has no line in family/expected"
        );
    }
    for f in listed {
        let taught = workshop::Workshop::load(&dir.join(&f).join("workshop.toml"))
            .unwrap_or_else(|e| panic!("{f}: {e:#}"));
        let config = dir.join(&f).join("devoxx-grade.toml");
        if config.exists() {
            Config::load(&config).unwrap_or_else(|e| panic!("{f}: {e:#}"));
        }
        if taught.cgroup == workshop::CgroupVersion::V2 {
            let case = format!("#[case::{}(\"{f}\")]", f.replace('-', "_"));
            assert!(
                source.contains(&case),
                "{f}: a v2 workshop's runtime needs {case}"
            );
        }
    }
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
