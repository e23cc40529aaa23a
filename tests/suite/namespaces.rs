//! Workshop step "namespaces": UTS (hostname), PID (the command is PID 1 and sees only its own
//! processes), mount (nothing leaks to the host). Everything through the CLI, as root.

use crate::common;

use common::run::*;
use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Shell guard for a test that changes something namespaced: it goes on only when the shell is
/// provably NOT in the host's `kind` namespace (fails closed when /proc is unreadable), so a broken runtime fails the test instead of changing
/// the host (exit 3).
fn guard_own_namespace(kind: &str) -> String {
    let host = namespace_of("self", kind);
    format!("{{ ns=$(readlink /proc/self/ns/{kind}) && [ -n \"$ns\" ] && [ \"$ns\" != '{host}' ] || exit 3; }}")
}

/// Run `script` with CAP_SYS_ADMIN behind [`guard_own_namespace`]`(kind)`: it must succeed and
/// leave everything clean. Returns its stdout.
fn with_sys_admin(script: &str, kind: &str) -> String {
    // Renaming and mounting need CAP_SYS_ADMIN, which containers lack by default (see
    // tests/suite/security.rs): granted here, isolation must still hold.
    let guarded = format!("{} && {script}", guard_own_namespace(kind));
    clean_run(
        standard_config(),
        &["--cap-add", "SYS_ADMIN"],
        &["/bin/sh", "-c", &guarded],
    )
    .stdout
}

#[test]
fn hostname_inside_is_container_by_default() {
    require_root!();
    let host = host_hostname();

    let ran = clean_run(standard_config(), &[], &["/bin/probe", "hostname"]);

    assert_eq!(ran.stdout, "container\n");
    assert_eq!(host_hostname(), host, "the host's hostname changed");
}

#[test]
fn hostname_option_sets_the_hostname_inside_only() {
    require_root!();
    let host = host_hostname();
    let wanted = format!("h-{}", marker());

    let ran = clean_run(
        standard_config(),
        &["--hostname", &wanted],
        &["/bin/probe", "hostname"],
    );

    assert_eq!(ran.stdout.trim_end(), wanted);
    assert_ne!(host, wanted);
    assert_eq!(host_hostname(), host, "the host's hostname changed");
}

#[test]
fn sethostname_inside_does_not_reach_the_host() {
    require_root!();
    let host = host_hostname();
    let renamed = format!("r-{}", marker());

    let stdout = with_sys_admin(&format!("hostname {renamed} && /bin/probe hostname"), "uts");

    assert_eq!(stdout.trim_end(), renamed);
    assert_eq!(host_hostname(), host, "renaming inside renamed the host");
}

#[test]
fn command_is_pid_1() {
    require_root!();

    let ran = clean_run(standard_config(), &[], &["/bin/probe", "pid"]);

    // ppid 0: PID 1's parent lives outside its namespace.
    assert_eq!(ran.stdout, "pid=1 ppid=0\n");
}

#[test]
fn command_sees_only_itself_in_proc() {
    require_root!();
    let arranged = Arranged::standard();

    let count = arranged.run(&[], &["/bin/probe", "procs"]);
    let listing = arranged.run(&[], &["/bin/probe", "ls", "/proc"]);

    count.assert_ok();
    assert_eq!(count.stdout, "1\n", "processes visible to the command");
    listing.assert_ok();
    let pids: Vec<String> = listing
        .stdout_lines()
        .into_iter()
        .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        .collect();
    assert_eq!(pids, ["1"], "pids in the container's /proc");
    arranged.assert_clean(&[]);
}

#[test]
fn children_of_the_command_are_counted_in_its_namespace() {
    require_root!();
    let n = random_in(2..=5);

    // PID 1 (sh) starts n background sleepers, then a probe that counts: n + sh + probe.
    let script =
        format!("for i in $(seq {n}); do /bin/probe sleep 1 & done; /bin/probe procs; wait");
    let ran = clean_run(standard_config(), &[], &["/bin/sh", "-c", &script]);

    assert_eq!(ran.stdout.trim(), (n + 2).to_string());
}

#[test]
fn two_containers_at_once_do_not_see_each_other() {
    require_root!();
    let arranged = Arranged::standard();
    let mark = marker();

    let (mut first, first_pid1) = arranged.spawn_sleeper(&[], &mark);
    let second = arranged.run(
        &[],
        &["/bin/sh", "-c", "/bin/probe procs; /bin/probe ls /proc"],
    );
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
    arranged.assert_clean(&[&mark]);
}

#[test]
fn container_runs_in_its_own_pid_uts_and_mount_namespaces() {
    require_root!();
    let arranged = Arranged::standard();
    let mark = marker();

    let (mut bg, pid1) = arranged.spawn_sleeper(&[], &mark);
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
    arranged.assert_clean(&[&mark]);
}

#[test]
fn mounts_made_inside_never_reach_the_host() {
    require_root!();
    let source = format!("src-{}", marker());

    let script = format!("mount -t tmpfs {source} /tmp && grep -c {source} /proc/self/mountinfo");
    let stdout = with_sys_admin(&script, "mnt");

    assert_eq!(stdout, "1\n", "the tmpfs was mounted inside");
    assert!(
        !host_mounts().contains(&source),
        "a mount made inside appeared on the host"
    );
}
