//! Workshop step "namespaces": UTS (hostname), PID (the command is PID 1 and sees only its own
//! processes), mount (nothing leaks to the host). Everything through the CLI, as root.

use crate::common;

use common::run::*;
use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;

/// The standard test image: busybox + probe, PATH set, a shell as default command.
fn image(root: &TestRoot) -> (String, String) {
    root.install_image(json!({"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]}))
}

/// Shell guard for a test that changes something namespaced: it goes on only when the shell is
/// provably NOT in the host's `kind` namespace (fails closed when /proc is unreadable), so a broken runtime fails the test instead of changing
/// the host (exit 3).
fn guard_own_namespace(kind: &str) -> String {
    let host = namespace_of("self", kind);
    format!("{{ ns=$(readlink /proc/self/ns/{kind}) && [ -n \"$ns\" ] && [ \"$ns\" != '{host}' ] || exit 3; }}")
}

#[test]
fn hostname_inside_is_container_by_default() {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let host = host_hostname();
    let before = before(&root);

    let ran = run(&root, &["run", &img, "/bin/probe", "hostname"]);

    ran.assert_ok();
    assert_eq!(ran.stdout, "container\n");
    assert_eq!(host_hostname(), host, "the host's hostname changed");
    assert_clean(&root, &before, &[&img]);
}

#[test]
fn hostname_option_sets_the_hostname_inside_only() {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let host = host_hostname();
    let wanted = format!("h-{}", marker());
    let before = before(&root);

    let ran = run(
        &root,
        &["run", "--hostname", &wanted, &img, "/bin/probe", "hostname"],
    );

    ran.assert_ok();
    assert_eq!(ran.stdout.trim_end(), wanted);
    assert_ne!(host, wanted);
    assert_eq!(host_hostname(), host, "the host's hostname changed");
    assert_clean(&root, &before, &[&img]);
}

#[test]
fn sethostname_inside_does_not_reach_the_host() {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let host = host_hostname();
    let renamed = format!("r-{}", marker());
    let before = before(&root);

    let script = format!(
        "{} && hostname {renamed} && /bin/probe hostname",
        guard_own_namespace("uts")
    );
    // Renaming and mounting need CAP_SYS_ADMIN, which containers lack by default (see
    // tests/suite/security.rs): granted here, isolation must still hold.
    let ran = run(
        &root,
        &[
            "run",
            "--cap-add",
            "SYS_ADMIN",
            &img,
            "/bin/sh",
            "-c",
            &script,
        ],
    );

    ran.assert_ok();
    assert_eq!(ran.stdout.trim_end(), renamed);
    assert_eq!(host_hostname(), host, "renaming inside renamed the host");
    assert_clean(&root, &before, &[&img]);
}

#[test]
fn command_is_pid_1() {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let before = before(&root);

    let ran = run(&root, &["run", &img, "/bin/probe", "pid"]);

    ran.assert_ok();
    // ppid 0: PID 1's parent lives outside its namespace.
    assert_eq!(ran.stdout, "pid=1 ppid=0\n");
    assert_clean(&root, &before, &[&img]);
}

#[test]
fn command_sees_only_itself_in_proc() {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let before = before(&root);

    let count = run(&root, &["run", &img, "/bin/probe", "procs"]);
    let listing = run(&root, &["run", &img, "/bin/probe", "ls", "/proc"]);

    count.assert_ok();
    assert_eq!(count.stdout, "1\n", "processes visible to the command");
    listing.assert_ok();
    let pids: Vec<String> = listing
        .stdout_lines()
        .into_iter()
        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    assert_eq!(pids, ["1"], "pids in the container's /proc");
    assert_clean(&root, &before, &[&img]);
}

#[test]
fn children_of_the_command_are_counted_in_its_namespace() {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let n = random_in(2..=5);
    let before = before(&root);

    // PID 1 (sh) starts n background sleepers, then a probe that counts: n + sh + probe.
    let script =
        format!("for i in $(seq {n}); do /bin/probe sleep 1 & done; /bin/probe procs; wait");
    let ran = run(&root, &["run", &img, "/bin/sh", "-c", &script]);

    ran.assert_ok();
    assert_eq!(ran.stdout.trim(), (n + 2).to_string());
    assert_clean(&root, &before, &[&img]);
}

#[test]
fn two_containers_at_once_do_not_see_each_other() {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let mark = marker();
    let before = before(&root);

    let script = ready_then_sleep(&mark);
    let mut first = Background::spawn(&root, &["run", &img, "/bin/sh", "-c", &script]);
    first.wait_for_line("ready", RUN_TIMEOUT);
    let second = run(
        &root,
        &[
            "run",
            &img,
            "/bin/sh",
            "-c",
            "/bin/probe procs; /bin/probe ls /proc",
        ],
    );
    let first_pid1 = container_pid1(&mark);
    kill(Pid::from_raw(first_pid1), Signal::SIGKILL).expect("kill first container");
    let first_ran = first.wait(RUN_TIMEOUT);

    second.assert_ok();
    let lines = second.stdout_lines();
    // sh (PID 1) + the counting probe; the first container's sleeper is invisible.
    assert_eq!(lines.first().map(String::as_str), Some("2"), "{lines:?}");
    let pids: Vec<&String> = lines[1..]
        .iter()
        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    assert!(
        pids.len() <= 2,
        "second container sees foreign pids: {pids:?}"
    );
    first_ran.assert_code(137).assert_stderr_only_runtime();
    assert_eq!(first_ran.stdout, "ready\n");
    assert_clean(&root, &before, &[&img, &mark]);
}

#[test]
fn container_runs_in_its_own_pid_uts_and_mount_namespaces() {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let mark = marker();
    let before = before(&root);

    let script = ready_then_sleep(&mark);
    let mut bg = Background::spawn(&root, &["run", &img, "/bin/sh", "-c", &script]);
    bg.wait_for_line("ready", RUN_TIMEOUT);
    let pid1 = container_pid1(&mark);
    let differs: Vec<(&str, bool)> = ["pid", "uts", "mnt"]
        .into_iter()
        .map(|ns| {
            (
                ns,
                namespace_of(&pid1.to_string(), ns) != namespace_of("self", ns),
            )
        })
        .collect();
    let runtime_uts_is_host =
        namespace_of(&bg.pid().to_string(), "uts") == namespace_of("self", "uts");
    kill(Pid::from_raw(pid1), Signal::SIGKILL).expect("kill container");
    let ran = bg.wait(RUN_TIMEOUT);

    for (ns, differ) in differs {
        assert!(differ, "container shares the host's {ns} namespace");
    }
    assert!(
        runtime_uts_is_host,
        "the runtime process itself left the host's UTS namespace"
    );
    ran.assert_code(137).assert_stderr_only_runtime();
    assert_clean(&root, &before, &[&img, &mark]);
}

#[test]
fn mounts_made_inside_never_reach_the_host() {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let source = format!("src-{}", marker());
    let before = before(&root);

    let script = format!(
        "{} && mount -t tmpfs {source} /tmp && grep -c {source} /proc/self/mountinfo",
        guard_own_namespace("mnt")
    );
    // Renaming and mounting need CAP_SYS_ADMIN, which containers lack by default (see
    // tests/suite/security.rs): granted here, isolation must still hold.
    let ran = run(
        &root,
        &[
            "run",
            "--cap-add",
            "SYS_ADMIN",
            &img,
            "/bin/sh",
            "-c",
            &script,
        ],
    );

    ran.assert_ok();
    assert_eq!(ran.stdout, "1\n", "the tmpfs was mounted inside");
    assert!(
        !host_mounts().contains(&source),
        "a mount made inside appeared on the host"
    );
    assert_clean(&root, &before, &[&img]);
}
