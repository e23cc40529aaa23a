//! Step "namespaces": own UTS (hostname set inside, the host's untouched), own PID namespace
//! (only the container's processes in its /proc), own mount namespace — read from
//! `/proc/<pid>/ns`, `/proc/<pid>/status` and `/proc/<pid>/root/proc` on the host, and the
//! hostname by joining the container's UTS namespace: nothing the container prints counts.

use super::{fail, pass, verdict, with_effects, Ctx, Job};
use crate::grade::inspect;
use crate::grade::report::Check;

pub fn grade(ctx: &mut Ctx) -> Vec<Check> {
    let hold = match ctx.hold(Job::of(&[])) {
        Ok(hold) => hold,
        Err(check) => return vec![check],
    };
    let pid = hold.held.pid;
    let hostname_inside = inspect::hostname_of(pid).unwrap_or_default();
    let seen = inspect::processes_seen(pid);
    let ns_check = |kind: &str, name: &str, flag: &str| {
        let (inside, host) = (
            inspect::ns_inode(&pid.to_string(), kind),
            inspect::ns_inode(&hold.held.host.to_string(), kind),
        );
        verdict(
            inside.is_some() && inside != host,
            name,
            &format!("the container's {kind} namespace differs from the host's"),
            format!(
                "container {kind}:[{}], host {kind}:[{}]",
                fmt(inside),
                fmt(host)
            ),
            &format!("step 2 (namespaces): add syscall.{flag} to SysProcAttr.Cloneflags"),
        )
    };
    let uts = ns_check("uts", "own-uts-namespace", "CLONE_NEWUTS");
    let pidns = ns_check("pid", "own-pid-namespace", "CLONE_NEWPID");
    let mnt = ns_check("mnt", "own-mount-namespace", "CLONE_NEWNS");
    let nspid = inspect::nspid(pid);
    let in_ns = processes_in_pid_namespace(pid);
    let (out, fx) = hold.finish(ctx);
    let mut checks = vec![
        uts,
        hostname(ctx, &hostname_inside, fx.host_renamed.as_deref()),
        pidns,
    ];
    checks.push(visible_processes(ctx, seen, in_ns));
    checks.push(mnt);
    checks.push(mounts_stay_in_container(ctx, &fx.mounts_left));
    ctx.extra(verdict(
        nspid.last() == Some(&1),
        "command-is-pid-1",
        "the command itself is PID 1 of its namespace (fine either way for the workshop)",
        format!("NSpid: {nspid:?}"),
        "a runtime that re-executes itself as PID 1 runs the command as PID 2+",
    ));
    let _ = out;
    checks.into_iter().map(|c| with_effects(c, &fx)).collect()
}

fn fmt(ino: Option<u64>) -> String {
    ino.map_or("?".into(), |i| i.to_string())
}

/// The hostname inside differs from the host's, and the host's did not change (a changed host
/// hostname is already a side effect of the run; it is named here too).
fn hostname(ctx: &mut Ctx, inside: &str, host_renamed: Option<&str>) -> Check {
    let wanted = ctx.sub.config.hostname.clone();
    ctx.extra(verdict(
        inside == wanted,
        "hostname-as-configured",
        &format!("hostname {wanted:?} inside (devoxx-grade.toml: hostname)"),
        format!("{inside:?}"),
        "set hostname in devoxx-grade.toml if your runtime uses another name",
    ));
    let expected = format!(
        "a hostname other than the host's ({:?}) inside, the host's unchanged",
        ctx.host_hostname
    );
    if let Some(renamed) = host_renamed {
        fail("hostname-set-inside", &expected, format!("inside {inside:?}; the HOST's hostname was changed to {renamed:?}"), "step 2 (namespaces): sethostname ran in the host's UTS namespace: call it in the child, after CLONE_NEWUTS")
    } else if inside.is_empty() || inside == ctx.host_hostname {
        fail("hostname-set-inside", &expected, format!("inside {inside:?}"), "step 2 (namespaces): in the child (new UTS namespace), call syscall.Sethostname([]byte(\"container\")) before running the command")
    } else {
        pass(
            "hostname-set-inside",
            &expected,
            format!("inside {inside:?}"),
        )
    }
}

/// With /proc mounted inside, only the PID namespace's processes are listed.
fn visible_processes(ctx: &mut Ctx, seen: Option<usize>, in_ns: usize) -> Check {
    let expected = format!("/proc inside lists only the container's processes ({in_ns} in its PID namespace), or /proc is not mounted");
    let procs = seen.map_or("none".to_owned(), |n| n.to_string());
    ctx.extra(verdict(
        seen.is_some(),
        "proc-mounted",
        "a proc filesystem at /proc inside",
        format!("{procs} processes listed"),
        "mount proc at /proc in the child after the root switch: syscall.Mount(\"proc\", \"/proc\", \"proc\", 0, \"\")",
    ));
    match seen {
        Some(n) if n > in_ns + 1 => fail(
            "only-container-processes-visible",
            &expected,
            format!("{n} processes listed"),
            "step 2 (namespaces): mount a NEW proc at /proc from inside the new PID namespace (not the host's /proc)",
        ),
        _ => pass("only-container-processes-visible", &expected, format!("{procs} listed")),
    }
}

/// Mounts made inside (proc, sys, dev…) never reach the host's table after exit, on the
/// success path (the held run) nor when the command fails (a run of its own, exiting non-zero).
fn mounts_stay_in_container(ctx: &mut Ctx, held_left: &[String]) -> Check {
    let code = (3 + rand::random::<u8>() % 100).to_string();
    let (out, fx) = ctx.run(Job::of(&[&["exit", &code]]));
    let left: Vec<String> = held_left.iter().chain(&fx.mounts_left).cloned().collect();
    let check = verdict(
        left.is_empty(),
        "mounts-stay-in-container",
        "no mount made inside is left in the host's mount table after exit, also when the command fails",
        if left.is_empty() {
            format!("none left ({})", out.describe())
        } else {
            format!("left: {}", left.join(", "))
        },
        super::MOUNT_LEAK_HINT,
    );
    with_effects(check, &fx)
}

/// Processes the host sees in `pid`'s PID namespace.
fn processes_in_pid_namespace(pid: i32) -> usize {
    let ns = inspect::ns_inode(&pid.to_string(), "pid");
    inspect::all_pids()
        .into_iter()
        .filter(|p| inspect::ns_inode(&p.to_string(), "pid") == ns)
        .count()
}
