//! cgroups through the CLI only: the limits asked for are the ones in the kernel's files, the
//! kernel enforces them (OOM kill, CPU throttling, failed forks), bad values are refused with
//! one line, and no cgroup outlives its container — also after SIGINT/SIGTERM, and a stale
//! one is reclaimed by the next run. Every assertion has a v1 (hybrid) and a v2 form; the
//! v2-only ones skip on a hybrid host and run in the VM (`make vm-test`).

use crate::common;

use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Output, Stdio};
use std::time::Duration;

use common::cgroup::{
    assert_cgroup_gone, cgroup_parents, cpu_and_age, find_container, find_namespaced, host_layout,
    is_v2, signal, wait_catching, wait_finished, ContainerCgroup, Finished, V2_ROOT, V2_SKIP,
};
use common::run::{wait_bounded, RUN_TIMEOUT};
use common::{assert_no_leaks, host_mounts, is_root, marker, processes_with, random_in, TestRoot};
use nix::sys::signal::Signal;
use rstest::rstest;
use serial_test::serial;

const MIB: u64 = 1 << 20;
const FIND: Duration = Duration::from_secs(30);
const FINISH: Duration = Duration::from_secs(60);

/// Skip unless we are root on a host with some cgroup controller.
macro_rules! require_cgroups {
    () => {
        if !is_root() {
            skip!("needs root (cgroups, namespaces): run under sudo make test");
        }
        if host_layout().is_none() {
            skip!("no cgroup memory controller on this host (neither v2 nor v1)");
        }
    };
}

/// Skip unless we are root on a cgroup v2 host with controllers (the VM).
macro_rules! require_v2 {
    () => {
        require_root!();
        if !is_v2() {
            skip!("{V2_SKIP}");
        }
    };
}

/// A test image plus the mount table before anything ran.
fn setup() -> (TestRoot, String, String) {
    let root = TestRoot::new();
    let (image, _) = root.install_image(serde_json::json!({"Cmd": ["/bin/probe", "echo"]}));
    (root, image, host_mounts())
}

/// Start `run [options] IMAGE cmd...` in the background with piped output.
fn spawn(root: &TestRoot, options: &[&str], image: &str, cmd: &[&str]) -> Child {
    root.std_cmd()
        .arg("run")
        .args(options)
        .arg(image)
        .args(cmd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the runtime")
}

/// Start a container sleeping with `marker` and find its cgroup from the host.
fn sleeping(
    root: &TestRoot,
    options: &[&str],
    image: &str,
    marker: &str,
) -> (Child, ContainerCgroup) {
    let mut opts = vec!["--stop-timeout", "1"];
    opts.extend_from_slice(options);
    let child = spawn(root, &opts, image, &["/bin/probe", "sleep", "30", marker]);
    match find_container(marker, FIND) {
        Some(cg) => (child, cg),
        None => {
            let done = wait_finished(child, FINISH);
            panic!(
                "no container process in a devoxx-docker cgroup (runtime: {:?}, stderr: {})",
                done.status, done.stderr
            );
        }
    }
}

/// Stop a sleeping container the polite way and check its cgroup and everything else is gone.
fn stop_and_check(
    root: &TestRoot,
    child: Child,
    sig: Signal,
    cg: &ContainerCgroup,
    mounts: &str,
    mark: &str,
) -> Finished {
    signal(&child, sig);
    let done = wait_finished(child, FINISH);
    assert!(
        done.status.code().is_some(),
        "runtime died of a signal: {:?}",
        done.status
    );
    assert!(
        !done.stderr.contains("memory limit"),
        "no OOM here: {}",
        done.stderr
    );
    assert_cgroup_gone(cg);
    assert_no_leaks(root, mounts, mark);
    done
}

fn one_line_matching(stderr: &str, needle: &str) -> String {
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains(needle)).collect();
    assert_eq!(
        lines.len(),
        1,
        "want exactly one line with {needle:?} in stderr: {stderr:?}"
    );
    lines[0].to_owned()
}

fn online_cpus() -> u64 {
    use nix::unistd::{sysconf, SysconfVar};
    sysconf(SysconfVar::_NPROCESSORS_ONLN)
        .ok()
        .flatten()
        .map_or(1, |n| n as u64)
}

#[test]
fn default_limits_are_the_workshops_and_go_after_sigterm() {
    require_cgroups!();
    let (root, image, mounts) = setup();
    let mark = marker();
    let (child, cg) = sleeping(&root, &[], &image, &mark);
    assert_eq!(cg.memory_limit(), Some(104_857_600));
    assert_eq!(cg.cpu_max(), (Some(50_000), 100_000));
    assert_eq!(cg.pids_max(), None);
    assert!(!cg.joined_v1("pids"), "no --pids-limit: no v1 pids cgroup");
    assert_ne!(
        cg.swap_blocked(),
        Some(false),
        "swap must not extend the memory limit"
    );
    assert!(
        cg.procs().contains(&cg.pid),
        "the container's process is listed in its cgroup"
    );
    stop_and_check(&root, child, Signal::SIGTERM, &cg, &mounts, &mark);
}

/// A random size in one of the accepted spellings, and the bytes it means.
fn random_memory() -> (String, u64) {
    let mib = random_in(7..=900);
    match random_in(0..=2) {
        0 => (format!("{mib}m"), mib * MIB),
        1 => (format!("{}k", mib * 1024), mib * MIB),
        _ => ((mib * MIB).to_string(), mib * MIB),
    }
}

#[rstest]
#[case::sigterm(Signal::SIGTERM)]
#[case::sigint(Signal::SIGINT)]
fn random_limits_land_in_the_cgroup_and_go_after_signal(#[case] sig: Signal) {
    require_cgroups!();
    let (root, image, mounts) = setup();
    let (memory, bytes) = random_memory();
    let hundredths = random_in(1..=online_cpus() * 100);
    let cpus = format!("{}.{:02}", hundredths / 100, hundredths % 100);
    let pids = random_in(10..=999);
    let mark = marker();
    let opts = [
        "--memory",
        &memory,
        "--cpus",
        &cpus,
        "--pids-limit",
        &pids.to_string(),
    ];
    let (child, cg) = sleeping(&root, &opts, &image, &mark);
    assert_eq!(cg.memory_limit(), Some(bytes), "--memory {memory}");
    assert_eq!(
        cg.cpu_max(),
        (Some(hundredths * 1000), 100_000),
        "--cpus {cpus}"
    );
    assert_eq!(cg.pids_max(), Some(pids));
    assert_ne!(cg.swap_blocked(), Some(false));
    stop_and_check(&root, child, sig, &cg, &mounts, &mark);
}

/// No limit is no limit: on v2 the container still has its cgroup (clone3 puts it there for
/// free) with nothing written; on v1 it joins no hierarchy at all (joining costs an RCU grace
/// period and would limit nothing).
#[test]
fn zero_and_max_mean_no_limit() {
    require_cgroups!();
    let (root, image, mounts) = setup();
    let memory = if random_in(0..=1) == 0 { "0" } else { "max" };
    let mark = marker();
    let options = ["--stop-timeout", "1", "--memory", memory, "--cpus", "0"];
    let child = spawn(
        &root,
        &options,
        &image,
        &["/bin/probe", "sleep", "30", &mark],
    );
    let pid = find_namespaced(&mark, FIND).expect("the container's command runs");
    if is_v2() {
        let cg = ContainerCgroup::of(pid).expect("on v2 every container has its cgroup");
        assert_eq!(cg.memory_limit(), None, "--memory {memory}");
        assert_eq!(cg.cpu_max().0, None, "--cpus 0");
        assert_eq!(cg.pids_max(), None);
        stop_and_check(&root, child, Signal::SIGTERM, &cg, &mounts, &mark);
    } else {
        let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        assert!(
            !cgroups.contains("/devoxx-docker/"),
            "without limits no v1 hierarchy is joined: {cgroups}"
        );
        signal(&child, Signal::SIGTERM);
        let done = wait_finished(child, FINISH);
        assert!(done.status.code().is_some(), "{:?}", done.status);
        assert_no_leaks(&root, &mounts, &mark);
    }
}

/// A random memory limit (bytes) and an allocation (MiB) well above it.
fn limit_and_excess() -> (u64, u64) {
    let limit = random_in(16..=48) * MIB;
    (limit, limit / MIB + random_in(24..=64))
}

#[test]
fn allocating_above_the_limit_is_oom_killed_137_with_one_line() {
    require_cgroups!();
    let (root, image, mounts) = setup();
    let (limit, alloc) = limit_and_excess();
    let mark = marker();
    // The short sleep lets the test find the cgroup; exec keeps the allocator PID 1.
    let script = format!("/bin/probe sleep 1 {mark}; exec /bin/probe alloc {alloc}");
    let child = spawn(
        &root,
        &["--memory", &limit.to_string()],
        &image,
        &["/bin/sh", "-c", &script],
    );
    let cg = find_container(&mark, FIND).expect("container found");
    assert_eq!(cg.memory_limit(), Some(limit));
    let done = wait_finished(child, FINISH);
    assert_eq!(done.status.code(), Some(137), "stderr: {}", done.stderr);
    assert!(
        !done.stdout.contains("allocated="),
        "the allocation cannot have completed"
    );
    let line = one_line_matching(&done.stderr, "memory limit");
    assert!(line.starts_with("devoxx-docker:"), "{line}");
    assert!(
        line.contains(&limit.to_string()),
        "the line names the limit: {line}"
    );
    assert!(
        line.contains("--memory"),
        "the line says what to do: {line}"
    );
    assert_cgroup_gone(&cg);
    assert_no_leaks(&root, &mounts, &mark);
}

/// Start a container (1 s stop timeout) under a random memory limit (returned) whose shell
/// first runs an allocation well above it as a child, which the kernel OOM-kills, then the shell
/// text `rest`, where `MARK` stands for `mark` split by empty quotes (so only the process
/// `rest` execs carries it, not the shell). Its cgroup is found once the allocation is done,
/// with the OOM kill counted.
fn after_a_childs_oom(
    root: &TestRoot,
    image: &str,
    mark: &str,
    rest: &str,
) -> (Child, ContainerCgroup, u64) {
    let (limit, alloc) = limit_and_excess();
    let (head, tail) = mark.split_at(mark.len() / 2);
    let rest = rest.replace("MARK", &format!("{head}''{tail}"));
    let script = format!("/bin/probe alloc {alloc}; {rest}");
    let opts = ["--stop-timeout", "1", "--memory", &limit.to_string()];
    let child = spawn(root, &opts, image, &["/bin/sh", "-c", &script]);
    let cg = find_container(mark, FIND).expect("container found after the allocation");
    assert!(
        cg.oom_kills() >= 1,
        "the child was OOM-killed: kernel OOM kill counter of {:?}",
        cg.dirs()
    );
    (child, cg, limit)
}

#[test]
fn the_kernel_counts_the_oom_kill_in_the_containers_cgroup() {
    require_cgroups!();
    let (root, image, mounts) = setup();
    let mark = marker();
    // The allocator is a child here, so the container outlives its OOM kill and the test can
    // read the kernel's counters before the cgroup is removed.
    let rest = "echo alloc_status=$?; exec /bin/probe trap MARK";
    let (child, cg, limit) = after_a_childs_oom(&root, &image, &mark, rest);
    let peak = cg.peak_memory();
    assert!(
        peak >= limit / 10 * 9,
        "peak use {peak} reached the limit {limit}"
    );
    assert!(
        peak <= limit,
        "peak use {peak} never exceeded the limit {limit}"
    );
    // The trap catches SIGTERM and exits 115: the runtime must not blame this exit on the
    // earlier OOM kill of a child.
    assert!(
        wait_catching(cg.pid, Signal::SIGTERM, FIND),
        "probe trap ready"
    );
    let done = stop_and_check(&root, child, Signal::SIGTERM, &cg, &mounts, &mark);
    assert_eq!(done.status.code(), Some(100 + Signal::SIGTERM as i32));
    assert!(
        done.stdout.contains("alloc_status=137"),
        "stdout: {}",
        done.stdout
    );
}

#[test]
fn a_stop_timeout_kill_after_a_childs_oom_is_not_reported_as_oom() {
    require_cgroups!();
    let (root, image, mounts) = setup();
    let mark = marker();
    // A child is OOM-killed, PID 1 survives, ignores SIGTERM and is SIGKILLed by the runtime
    // after --stop-timeout: 137, but the memory limit is not what killed the container.
    let rest = "exec /bin/probe sleep 30 MARK";
    let (child, cg, _) = after_a_childs_oom(&root, &image, &mark, rest);
    let done = stop_and_check(&root, child, Signal::SIGTERM, &cg, &mounts, &mark);
    assert_eq!(done.status.code(), Some(137), "killed after --stop-timeout");
}

/// `run --memory LIMITm IMAGE probe alloc ALLOC MARK` (sizes in MiB), to its end.
fn run_alloc(root: &TestRoot, image: &str, limit: u64, alloc: u64, mark: &str) -> Output {
    root.cmd()
        .args(["run", "--memory", &format!("{limit}m"), image])
        .args(["/bin/probe", "alloc", &alloc.to_string(), mark])
        .output()
        .expect("run")
}

#[test]
fn allocating_below_the_limit_succeeds() {
    require_cgroups!();
    let (root, image, mounts) = setup();
    let limit = random_in(64..=128);
    let alloc = random_in(8..=limit / 3);
    let mark = marker();
    let out = run_alloc(&root, &image, limit, alloc, &mark);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("allocated={alloc}")));
    assert!(!stderr.contains("memory limit"), "{stderr}");
    assert_no_leaks(&root, &mounts, &mark);
}

/// Follow a spinning container until it exits: last `(cpu s, age s)` and throttle count.
fn watch_spin(cg: &ContainerCgroup) -> ((f64, f64), u64) {
    let mut last = ((0.0, 0.0), 0);
    while let Some(usage) = cpu_and_age(cg.pid) {
        let throttled = cg.nr_throttled();
        if cg.dirs().iter().all(|d| d.exists()) {
            last = (usage, throttled.max(last.1));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    last
}

#[test]
#[serial(cpu)]
fn cpu_quota_throttles_threads_spinning_on_every_core() {
    require_cgroups!();
    let (root, image, mounts) = setup();
    // Well below a fair share even on a busy 2-core host: a quota the container cannot reach
    // because others hog the CPUs is never used up, and then nothing is throttled.
    let hundredths = random_in(5..=25);
    let cpus = format!("0.{hundredths:02}");
    let threads = online_cpus().max(2).to_string();
    let mark = marker();
    let child = spawn(
        &root,
        &["--cpus", &cpus],
        &image,
        &["/bin/probe", "spin", "2", &threads, &mark],
    );
    let cg = find_container(&mark, FIND).expect("container found");
    assert_eq!(cg.cpu_max(), (Some(hundredths * 1000), 100_000));
    let ((cpu, age), throttled) = watch_spin(&cg);
    let done = wait_finished(child, FINISH);
    assert_eq!(done.status.code(), Some(0), "stderr: {}", done.stderr);
    assert!(done.stdout.contains("spun=2"));
    let share = cpu / age;
    let allowed = hundredths as f64 / 100.0;
    eprintln!(
        "--cpus {cpus}: used {cpu:.2}s CPU in {age:.2}s = {share:.2} CPU, throttled {throttled}x"
    );
    assert!(age > 1.0, "measured while it ran ({age:.2}s)");
    assert!(
        share <= allowed + 0.1,
        "{share:.2} CPU used under --cpus {cpus}"
    );
    // It really ran, at a rate of the quota's order (not below: a lower bound of a fixed 0.05
    // failed whenever the random quota was 0.05 itself).
    assert!(share > allowed / 4.0, "it did run ({share:.2} CPU)");
    assert!(throttled > 0, "the kernel throttled it");
    assert_cgroup_gone(&cg);
    assert_no_leaks(&root, &mounts, &mark);
}

#[test]
#[serial(cpu)]
fn cpus_zero_is_never_throttled() {
    require_cgroups!();
    let (root, image, mounts) = setup();
    let mark = marker();
    let child = spawn(
        &root,
        &["--cpus", "0"],
        &image,
        &["/bin/probe", "spin", "1.5", "2", &mark],
    );
    let cg = find_container(&mark, FIND).expect("container found");
    if is_v2() {
        assert_eq!(cg.cpu_max().0, None);
    } else {
        assert!(
            !cg.joined_v1("cpu"),
            "--cpus 0: no v1 cpu cgroup to throttle it"
        );
        assert!(
            cg.joined_v1("memory"),
            "the default memory limit is in force"
        );
    }
    let ((cpu, age), throttled) = watch_spin(&cg);
    let done = wait_finished(child, FINISH);
    assert_eq!(done.status.code(), Some(0), "stderr: {}", done.stderr);
    eprintln!("--cpus 0: used {cpu:.2}s CPU in {age:.2}s, throttled {throttled}x");
    assert_eq!(throttled, 0, "no quota, no throttling");
    assert_cgroup_gone(&cg);
    assert_no_leaks(&root, &mounts, &mark);
}

/// `(forked, failed)` from the probe's report.
fn forkbomb_report(stdout: &str) -> (u64, u64) {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("forked="))
        .expect("forkbomb report");
    let value = |key: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .and_then(|v| v.parse().ok())
            .expect("number in report")
    };
    (value("forked="), value("failed="))
}

#[test]
fn fork_bomb_is_contained_by_pids_limit() {
    require_cgroups!();
    let (root, image, mounts) = setup();
    let limit = random_in(5..=15);
    let tries = 50;
    let mark = marker();
    let run = |opts: &[&str]| {
        let out = root
            .cmd()
            .arg("run")
            .args(opts)
            .args([&image, "/bin/probe", "forkbomb", &tries.to_string(), &mark])
            .output()
            .expect("run");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        forkbomb_report(&stdout)
    };
    let (forked, failed) = run(&["--pids-limit", &limit.to_string()]);
    assert_eq!(forked + failed, tries);
    assert!(
        forked < limit,
        "{forked} forks under --pids-limit {limit} (PID 1 counts too)"
    );
    assert!(failed > 0, "forks beyond the limit failed");
    // The control run proves the limit, not the host, stopped the forks.
    assert_eq!(
        run(&[]),
        (tries, 0),
        "without --pids-limit every fork succeeds"
    );
    assert_no_leaks(&root, &mounts, &mark);
}

#[rstest]
#[case::memory_negative("--memory", || format!("-{}", random_in(1..=999)))]
#[case::memory_garbage("--memory", || format!("{}zb", random_in(1..=999)))]
#[case::memory_word("--memory", || "lots".to_owned())]
#[case::memory_too_small("--memory", || format!("{}k", random_in(1..=6143)))]
#[case::memory_fraction_of_a_byte("--memory", || format!("0.{}", random_in(1..=9)))]
#[case::memory_fraction_below_a_byte("--memory", || format!("0.000{}k", random_in(1..=9)))]
#[case::cpus_word("--cpus", || "abc".to_owned())]
#[case::cpus_negative("--cpus", || format!("-{}", random_in(1..=9)))]
#[case::cpus_too_many("--cpus", || (online_cpus() + random_in(1..=64)).to_string())]
#[case::cpus_too_small("--cpus", || format!("0.00{}", random_in(1..=4)))]
#[case::pids_zero("--pids-limit", || "0".to_owned())]
#[case::pids_negative("--pids-limit", || format!("-{}", random_in(1..=99)))]
#[case::pids_fraction("--pids-limit", || format!("{}.5", random_in(1..=99)))]
fn bad_limit_values_are_refused_with_one_line(#[case] option: &str, #[case] value: fn() -> String) {
    require_root!();
    let (root, image, mounts) = setup();
    let bad = value();
    let mark = marker();
    let out = root
        .cmd()
        .args(["run", option, &bad, &image, "/bin/probe", "echo", &mark])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{option} {bad}: {stderr}");
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(&mark),
        "the command never ran"
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr:?}");
    assert!(lines[0].starts_with("devoxx-docker:"), "{stderr}");
    assert!(lines[0].contains(option), "names the option: {stderr}");
    assert_no_leaks(&root, &mounts, &mark);
}

/// A cgroup made by the test itself, as a SIGKILLed runtime would leave it; removed on drop
/// if the runtime failed to.
struct StaleCgroup {
    dirs: Vec<PathBuf>,
    squatter: Option<Child>,
}

impl Drop for StaleCgroup {
    fn drop(&mut self) {
        if let Some(mut child) = self.squatter.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for dir in &self.dirs {
            let _ = fs::remove_dir(dir);
        }
    }
}

#[test]
fn a_stale_cgroup_and_its_leftover_process_are_reclaimed_by_the_next_run() {
    require_cgroups!();
    let (root, image, mounts) = setup();
    let id: String = (0..12)
        .map(|_| format!("{:x}", random_in(0..=15)))
        .collect();
    let mut stale = StaleCgroup {
        dirs: cgroup_parents().iter().map(|p| p.join(&id)).collect(),
        squatter: None,
    };
    let mark = marker();
    let squatter = std::process::Command::new(common::probe())
        .args(["sleep", "60", &mark])
        .spawn()
        .expect("host process for the stale cgroup");
    let pid = squatter.id();
    stale.squatter = Some(squatter);
    // Runtimes started by concurrent tests reclaim too and may remove the cgroup between our
    // mkdir and our write: plant it again until it holds, or until one of them has already
    // killed the squatter (which is the behaviour under test as well).
    for _ in 0..100 {
        let planted = stale.dirs.iter().all(|dir| {
            fs::create_dir_all(dir).is_ok()
                && fs::write(dir.join("cgroup.procs"), pid.to_string()).is_ok()
        });
        let reaped = matches!(
            stale.squatter.as_mut().map(|c| c.try_wait()),
            Some(Ok(Some(_)))
        );
        if planted || reaped {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let code = random_in(1..=100);
    let out = root
        .cmd()
        .args(["run", &image, "/bin/probe", "exit", &code.to_string()])
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(code as i32),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for dir in &stale.dirs {
        assert!(
            !dir.exists(),
            "stale cgroup not reclaimed: {}",
            dir.display()
        );
    }
    let mut squatter = stale.squatter.take().expect("squatter");
    let status =
        wait_bounded(&mut squatter, RUN_TIMEOUT).expect("the leftover process was never killed");
    assert_eq!(
        status.signal(),
        Some(9),
        "the leftover process was SIGKILLed"
    );
    assert!(processes_with(&mark).is_empty());
    assert_no_leaks(&root, &mounts, &mark);
}

#[test]
fn v2_controllers_are_enabled_for_container_cgroups() {
    require_v2!();
    let (root, image, mounts) = setup();
    let mark = marker();
    let (child, cg) = sleeping(&root, &["--pids-limit", "64"], &image, &mark);
    let parent = PathBuf::from(V2_ROOT).join("devoxx-docker");
    for file in [PathBuf::from(V2_ROOT), parent.clone()].map(|d| d.join("cgroup.subtree_control")) {
        let enabled = fs::read_to_string(&file).expect("subtree_control");
        for c in ["memory", "cpu", "pids"] {
            assert!(
                enabled.split_whitespace().any(|w| w == c),
                "{c} not in {}: {enabled}",
                file.display()
            );
        }
    }
    assert_eq!(cg.dirs(), vec![parent.join(cg.id())]);
    let swap = cg.dirs()[0].join("memory.swap.max");
    if swap.exists() {
        assert_eq!(fs::read_to_string(swap).expect("swap").trim(), "0");
    }
    stop_and_check(&root, child, Signal::SIGTERM, &cg, &mounts, &mark);
}

#[test]
fn v2_oom_kill_is_counted_up_the_hierarchy() {
    require_v2!();
    let (root, image, mounts) = setup();
    let events = PathBuf::from(V2_ROOT).join("devoxx-docker/memory.events");
    let count = || -> u64 {
        fs::read_to_string(&events)
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill ")?.parse().ok())
            .unwrap_or(0)
    };
    let before = count();
    let limit = random_in(16..=48);
    let mark = marker();
    let out = run_alloc(&root, &image, limit, limit + random_in(24..=64), &mark);
    assert_eq!(out.status.code(), Some(137));
    assert!(
        count() > before,
        "devoxx-docker/memory.events oom_kill did not increase"
    );
    assert_no_leaks(&root, &mounts, &mark);
}

/// A container that runs its own cgroup manager makes sub-cgroups in its cgroup and moves
/// processes there (done from the host here, the same for the kernel): the runtime must kill
/// them and remove the nested cgroups bottom-up, or its own rmdir fails with EBUSY forever.
#[test]
fn sub_cgroups_made_inside_the_container_cgroup_are_removed_with_it() {
    require_cgroups!();
    let (root, image, mounts) = setup();
    let mark = marker();
    let nested_mark = format!("{mark}n");
    let script = format!("/bin/probe sleep 60 {nested_mark} & exec /bin/probe sleep 30 {mark}");
    let child = spawn(
        &root,
        &["--stop-timeout", "1"],
        &image,
        &["/bin/sh", "-c", &script],
    );
    let cg = find_container(&mark, FIND).expect("the container's cgroup");
    let mut nested_pid = None;
    for _ in 0..300 {
        nested_pid = common::probes_with(&nested_mark).first().copied();
        if nested_pid.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let nested_pid = nested_pid.expect("the container's second process");
    // Removed by the guard (deepest first) if the runtime leaves them.
    let mut planted = StaleCgroup {
        dirs: Vec::new(),
        squatter: None,
    };
    for dir in cg.dirs() {
        let deeper = dir.join(format!("nested-{mark}")).join("deeper");
        fs::create_dir_all(&deeper).expect("mkdir a sub-cgroup");
        planted.dirs.push(deeper.clone());
        planted
            .dirs
            .push(deeper.parent().expect("parent").to_owned());
        fs::write(deeper.join("cgroup.procs"), nested_pid.to_string())
            .expect("move a container process into the sub-cgroup");
    }
    planted.dirs.extend(cg.dirs());
    let done = stop_and_check(&root, child, Signal::SIGTERM, &cg, &mounts, &mark);
    assert!(
        !done.stderr.contains("could not remove cgroup"),
        "{}",
        done.stderr
    );
    assert!(processes_with(&nested_mark).is_empty());
}

/// The runtime's switch that forces clone(2) + a `cgroup.procs` write (kernels without clone3).
const NO_CLONE3: &str = "DEVOXX_NO_CLONE3";

/// `/bin/sh -c 'cat /proc/self/cgroup; exit CODE'` in a container; `(code, output)`. In the
/// host's cgroup namespace, so the command reads its full cgroup path: in a private one (the
/// default on v2) it would read `0::/` wherever that namespace had been rooted.
fn own_cgroup_and_exit(cmd: &mut std::process::Command, image: &str, code: u64) -> Finished {
    let script = format!("cat /proc/self/cgroup; exit {code}");
    let child = cmd
        .args(["run", "--cgroupns", "host", image, "/bin/sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the runtime");
    wait_finished(child, FINISH)
}

/// With clone3 forced off (as on a kernel < 5.7, or under a seccomp filter refusing it), the
/// container is still moved into its cgroup before its command runs: the command's very first
/// look at `/proc/self/cgroup` finds it there.
#[test]
fn the_clone3_fallback_still_starts_the_command_in_its_cgroup() {
    require_cgroups!();
    let (root, image, mounts) = setup();
    let code = random_in(1..=100);
    let done = own_cgroup_and_exit(root.std_cmd().env(NO_CLONE3, "1"), &image, code);
    assert_eq!(done.status.code(), Some(code as i32), "{}", done.stderr);
    assert!(
        done.stdout.lines().any(|l| l.contains(":/devoxx-docker/")),
        "the command ran outside its cgroup: {}",
        done.stdout
    );
    assert_no_leaks(&root, &mounts, &marker());
}

/// A cgroup v2 the test makes next to `devoxx-docker/` that admits one process: the runtime.
struct OnePidCgroup(PathBuf);

impl OnePidCgroup {
    fn new() -> OnePidCgroup {
        let dir = PathBuf::from(V2_ROOT).join(format!("devoxx-test-{}", marker()));
        fs::create_dir(&dir).expect("mkdir a test cgroup");
        let cgroup = OnePidCgroup(dir);
        fs::write(cgroup.0.join("pids.max"), "1").expect("pids.max in the test cgroup");
        cgroup
    }

    /// `cmd` (the runtime) started from inside this cgroup: a shell joins it and execs.
    fn wrap(&self, cmd: &std::process::Command) -> std::process::Command {
        let mut wrapped = std::process::Command::new("sh");
        wrapped
            .args(["-c", r#"echo 0 > "$0/cgroup.procs" && exec "$@""#])
            .arg(&self.0)
            .arg(cmd.get_program());
        for (key, value) in cmd.get_envs() {
            if let Some(value) = value {
                wrapped.env(key, value);
            }
        }
        wrapped
    }

    /// Forks the kernel refused in this cgroup (`pids.events` `max`).
    fn refused_forks(&self) -> u64 {
        fs::read_to_string(self.0.join("pids.events"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("max ")?.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for OnePidCgroup {
    fn drop(&mut self) {
        for _ in 0..100 {
            if fs::remove_dir(&self.0).is_ok() || !self.0.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// cgroup v2: clone3 creates the container in its own cgroup (`CLONE_INTO_CGROUP`), so it never
/// exists in the runtime's. Shown from a runtime whose cgroup admits one process (itself): the
/// start succeeds only if the child is never charged there, while the forced fallback (clone in
/// the runtime's cgroup, then a move) has its fork refused by the kernel there.
#[test]
fn v2_the_container_is_born_in_its_cgroup_never_in_the_runtimes() {
    require_v2!();
    let (root, image, mounts) = setup();
    // A first run enables the pids controller below the root, as every run does.
    assert!(own_cgroup_and_exit(&mut root.std_cmd(), &image, 0)
        .status
        .success());
    let cgroup = OnePidCgroup::new();
    let code = random_in(1..=100);
    let done = own_cgroup_and_exit(&mut cgroup.wrap(&root.std_cmd()), &image, code);
    assert_eq!(done.status.code(), Some(code as i32), "{}", done.stderr);
    assert!(
        done.stdout
            .lines()
            .any(|l| l.starts_with("0::/devoxx-docker/")),
        "{}",
        done.stdout
    );
    assert_eq!(
        cgroup.refused_forks(),
        0,
        "nothing was charged to the runtime's cgroup"
    );
    let mut fallback = root.std_cmd();
    fallback.env(NO_CLONE3, "1");
    let done = own_cgroup_and_exit(&mut cgroup.wrap(&fallback), &image, code);
    assert_eq!(done.status.code(), Some(125), "{}", done.stderr);
    one_line_matching(&done.stderr, "clone the container process");
    assert!(
        cgroup.refused_forks() >= 1,
        "the fallback forked in the runtime's cgroup"
    );
    assert_no_leaks(&root, &mounts, &marker());
}
