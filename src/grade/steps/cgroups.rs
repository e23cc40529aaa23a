//! Step "cgroups": the container's process sits in a cgroup of its own whose `memory.max` and
//! `cpu.max` carry the workshop's limits, and the kernel enforces them: an allocation past
//! 100 MiB is killed, a spinning process gets about half a CPU — all read on the host.

use std::thread;
use std::time::{Duration, Instant};

use super::{fail, not_attempted, pass, verdict, with_effects, Ctx, Job, NotStarted, Started};
use crate::grade::inspect;
use crate::grade::report::Check;

/// The workshop's limits.
pub const MEMORY_MAX: &str = "104857600";
pub const CPU_MAX: &str = "50000 100000";

const JOIN_HINT: &str = "step 4 (cgroups): the process is not in the cgroup: write its pid to cgroup.procs after starting it and before waiting for it";

/// How long the runtime may take to place its container after the command is up: a parent
/// that writes cgroup.procs after cmd.Start() may be overtaken by its child under a slow CPU.
const SETTLE: Duration = Duration::from_secs(3);

pub fn grade(ctx: &mut Ctx) -> Vec<Check> {
    let hold = match ctx.hold(Job::of(&[])) {
        Ok(hold) => hold,
        Err(check) => return vec![check],
    };
    let placed = settle(ctx, hold.held.pid, (hold.held.runtime, hold.held.host));
    let cgroup = placed.first.clone();
    let created = ctx.new_cgroups();
    let memory = inspect::effective_limit(&cgroup, "memory.max");
    let cpu = inspect::effective_limit(&cgroup, "cpu.max");
    let (_, fx) = hold.finish(ctx);
    let left = cgroup != "/" && fx.cgroups_left.contains(&cgroup);
    ctx.extra(verdict(
        !left,
        "cgroup-removed-after-exit",
        "the container's own cgroup is removed when it exits",
        if left {
            format!("{cgroup} left behind")
        } else {
            format!("{cgroup} removed")
        },
        "rmdir the cgroup after the command exits",
    ));
    if cgroup == "/" || cgroup.is_empty() {
        let check = if created.is_empty() {
            not_attempted("in-own-cgroup", "the container's first process in a cgroup other than the root one", "in / and no cgroup created", "step 4 (cgroups): create /sys/fs/cgroup/<name> and write the pid to its cgroup.procs")
        } else {
            fail(
                "in-own-cgroup",
                "the container's first process in the cgroup the runtime created",
                format!("in /; created {}", created.join(", ")),
                JOIN_HINT,
            )
        };
        return vec![with_effects(check, &fx)];
    }
    ctx.extra(placed.escape_check());
    let mut checks = vec![
        pass(
            "in-own-cgroup",
            "the container's first process (the one the runtime started) in a cgroup other than the root one",
            format!("{cgroup} (pid {})", placed.first_pid),
        ),
        limit("memory-max", "memory.max", MEMORY_MAX, memory),
        limit("cpu-max", "cpu.max", CPU_MAX, cpu),
        memory_enforced(ctx),
        cpu_throttled(ctx),
    ];
    checks[0] = with_effects(checks[0].clone(), &fx);
    checks
}

/// Where the runtime placed its container: the cgroup of its first process (the grader's own
/// run cgroup reads as `/`: the runtime started there) and the command's.
struct Placement {
    first_pid: i32,
    first: String,
    command: String,
}

impl Placement {
    /// Did the command escape its parent's cgroup (forked before the parent was placed)?
    fn escaped(&self) -> bool {
        self.first != "/"
            && self.command != self.first
            && !self.command.starts_with(&format!("{}/", self.first))
    }

    /// The warning (an extra: the step judges the first process).
    fn escape_check(&self) -> Check {
        verdict(
            !self.escaped(),
            "command-in-container-cgroup",
            "the command runs in the container's cgroup (or below it)",
            format!("command in {}, its parent in {}", self.command, self.first),
            "the command started before its parent was placed in the cgroup: place the child before it runs anything (it waits on a pipe the parent closes once cgroup.procs is written)",
        )
    }
}

/// Wait (up to [`SETTLE`]) until the runtime has placed the first process of the container
/// holding `probe` in a cgroup of its own, then say where it and the command are.
fn settle(ctx: &Ctx, probe: i32, (runtime, host): (i32, i32)) -> Placement {
    let deadline = Instant::now() + SETTLE;
    loop {
        let first_pid = inspect::first_process(probe, runtime, host);
        let read = |pid: i32| {
            let cg = inspect::cgroup_of(pid).unwrap_or_else(|| "/".into());
            if ctx.is_grader_cgroup(&cg) {
                "/".to_owned()
            } else {
                cg
            }
        };
        let placement = Placement {
            first_pid,
            first: read(first_pid),
            command: read(probe),
        };
        if placement.first != "/" || Instant::now() >= deadline {
            return placement;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Start `work` behind the probe's gate, settle the container's placement, and put a command
/// that escaped its parent's cgroup back into it (the limits are judged, not the race; the race
/// is the warning above). Returns the probe's pid (the caller opens the gate), a note when it
/// was moved, and the run.
fn gated(ctx: &mut Ctx, work: &[&str]) -> Result<(i32, String, Started), NotStarted> {
    let job = Job::of(&[&["gate", "60"], work]);
    let mut started = ctx.start(&job, "g")?;
    let Some(pid) = started.running.wait_for_probe() else {
        let marker = started.marker.clone();
        return Err((started.running.wait(), marker));
    };
    let placed = settle(
        ctx,
        pid,
        (started.running.runtime_pid, started.running.host.pid),
    );
    let mut note = String::new();
    if placed.escaped() {
        let procs = inspect::cgroup_dir(&placed.first).join("cgroup.procs");
        if std::fs::write(procs, pid.to_string()).is_ok() {
            note = format!(
                " (the command had escaped to {}: moved into {} to judge the limits)",
                placed.command, placed.first
            );
        }
    }
    Ok((pid, note, started))
}

fn limit(name: &str, file: &str, want: &str, seen: Option<(String, String)>) -> Check {
    let expected = format!("{file} = {want} on the container's cgroup (or an ancestor)");
    match seen {
        Some((v, at)) if v == want => pass(name, &expected, format!("{v} in {at}")),
        Some((v, at)) => fail(name, &expected, format!("{v} in {at}"), &format!("step 4 (cgroups): write \"{want}\" to {file} of the container's cgroup")),
        None => fail(name, &expected, "max (no limit)", &format!("step 4 (cgroups): write \"{want}\" to {file} of the container's cgroup before starting the command")),
    }
}

/// An allocation of 256 MiB (touched) must not survive a 100 MiB limit: the kernel's OOM kill,
/// counted in `memory.events` of the probe's cgroup, is what decides; the probe's own line
/// (`allocated=256` when it survived) only corroborates.
fn memory_enforced(ctx: &mut Ctx) -> Check {
    let (out, kills, note, fx) = match gated(ctx, &["alloc", "256"]) {
        Ok((pid, note, started)) => {
            let cgroup = inspect::cgroup_of(pid).unwrap_or_default();
            let before = oom_kills(&cgroup);
            crate::grade::invoke::release(pid);
            let mut kills = 0;
            let until = Instant::now() + Duration::from_secs(ctx.sub.config.timeout_s);
            while std::path::Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < until {
                kills = kills.max(oom_kills(&cgroup).saturating_sub(before));
                thread::sleep(Duration::from_millis(20));
            }
            kills = kills.max(oom_kills(&cgroup).saturating_sub(before));
            let out = started.running.wait();
            let fx = ctx.side_effects(&out, &started.marker);
            (out, kills, note, fx)
        }
        Err((out, marker)) => {
            let fx = ctx.side_effects(&out, &marker);
            (out, 0, String::new(), fx)
        }
    };
    let survived = out.stdout.contains("allocated=256");
    let check = verdict(
        kills > 0 && !survived,
        "memory-limit-enforced",
        "allocating 256 MiB inside is killed (OOM) before it completes",
        format!("{kills} OOM kill(s) in the probe's cgroup; {}{note}", out.describe()),
        "step 4 (cgroups): the memory limit is not enforced: check memory.max of the cgroup the process is really in",
    );
    with_effects(check, &fx)
}

/// The `oom_kill` count of cgroup `rel`'s `memory.events` (0 when unreadable).
fn oom_kills(rel: &str) -> u64 {
    std::fs::read_to_string(inspect::cgroup_dir(rel).join("memory.events"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Two spinning threads must get about half a CPU: CPU time over wall time, read on the host.
fn cpu_throttled(ctx: &mut Ctx) -> Check {
    let (ratio, note, out, fx) = match gated(ctx, &["spin", "2.5", "2"]) {
        Ok((pid, note, started)) => {
            crate::grade::invoke::release(pid);
            let ratio = measure_cpu(pid).map(|r| (r, inspect::cgroup_of(pid).unwrap_or_default()));
            if ratio.is_some() {
                crate::grade::invoke::stop(pid); // measured: the rest of the spin is only waiting
            }
            let out = started.running.wait();
            let fx = ctx.side_effects(&out, &started.marker);
            (ratio, note, out, fx)
        }
        Err((out, marker)) => {
            let fx = ctx.side_effects(&out, &marker);
            (None, String::new(), out, fx)
        }
    };
    let expected =
        "two spinning threads get 0.5 CPU (between 0.3 and 0.7), measured from /proc on the host";
    let check = match ratio {
        Some((r, cg)) if (0.3..=0.7).contains(&r) => {
            pass("cpu-limit-enforced", expected, format!("{r:.2} CPU in cgroup {cg}{note}"))
        }
        Some((r, cg)) => fail(
            "cpu-limit-enforced",
            expected,
            format!("{r:.2} CPU in cgroup {cg}{note}"),
            "step 4 (cgroups): write \"50000 100000\" to cpu.max of the cgroup the process is in, and put the process in it before it starts the command",
        ),
        None => fail(
            "cpu-limit-enforced",
            expected,
            out.describe(),
            "the spinning probe did not run long enough to be measured",
        ),
    };
    with_effects(check, &fx)
}

/// CPU seconds per wall second of `pid` over 1.5 s (15 periods of cpu.max), after a short
/// settling time.
fn measure_cpu(pid: i32) -> Option<f64> {
    thread::sleep(Duration::from_millis(300));
    let (t0, c0) = (Instant::now(), inspect::cpu_seconds(pid)?);
    thread::sleep(Duration::from_millis(1500));
    let (t1, c1) = (Instant::now(), inspect::cpu_seconds(pid)?);
    Some((c1 - c0) / (t1 - t0).as_secs_f64())
}
