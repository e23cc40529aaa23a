//! Step "cgroups": the container's process sits in a cgroup of its own whose `memory.max` and
//! `cpu.max` carry the workshop's limits, and the kernel enforces them: an allocation past
//! 100 MiB is killed, a spinning process gets about half a CPU — all read on the host.

use std::thread;
use std::time::{Duration, Instant};

use super::{fail, not_attempted, pass, verdict, with_effects, Ctx};
use crate::grade::inspect;
use crate::grade::invoke::random_word;
use crate::grade::report::Check;

/// The workshop's limits.
pub const MEMORY_MAX: &str = "104857600";
pub const CPU_MAX: &str = "50000 100000";

const JOIN_HINT: &str = "step 4 (cgroups): the process is not in the cgroup: write its pid to cgroup.procs after starting it and before waiting for it";

pub fn grade(ctx: &mut Ctx) -> Vec<Check> {
    let hold = match ctx.hold(&[]) {
        Ok(hold) => hold,
        Err(check) => return vec![check],
    };
    let held = &hold.held;
    let cgroup = inspect::cgroup_of(held.pid).unwrap_or_default();
    // The grader's own run cgroup counts as "no cgroup": the runtime started there.
    let cgroup = if ctx.is_grader_cgroup(&cgroup) {
        "/".to_owned()
    } else {
        cgroup
    };
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
            not_attempted("in-own-cgroup", "the process in a cgroup other than the root one", "in / and no cgroup created", "step 4 (cgroups): create /sys/fs/cgroup/<name> and write the pid to its cgroup.procs")
        } else {
            fail(
                "in-own-cgroup",
                "the process in the cgroup the runtime created",
                format!("in /; created {}", created.join(", ")),
                JOIN_HINT,
            )
        };
        return vec![with_effects(check, &fx)];
    }
    let mut checks = vec![
        pass(
            "in-own-cgroup",
            "the process in a cgroup other than the root one",
            cgroup.clone(),
        ),
        limit("memory-max", "memory.max", MEMORY_MAX, memory),
        limit("cpu-max", "cpu.max", CPU_MAX, cpu),
        memory_enforced(ctx),
        cpu_throttled(ctx),
    ];
    checks[0] = with_effects(checks[0].clone(), &fx);
    checks
}

fn limit(name: &str, file: &str, want: &str, seen: Option<(String, String)>) -> Check {
    let expected = format!("{file} = {want} on the container's cgroup (or an ancestor)");
    match seen {
        Some((v, at)) if v == want => pass(name, &expected, format!("{v} in {at}")),
        Some((v, at)) => fail(name, &expected, format!("{v} in {at}"), &format!("step 4 (cgroups): write \"{want}\" to {file} of the container's cgroup")),
        None => fail(name, &expected, "max (no limit)", &format!("step 4 (cgroups): write \"{want}\" to {file} of the container's cgroup before starting the command")),
    }
}

/// An allocation of 256 MiB (touched) must not survive a 100 MiB limit.
fn memory_enforced(ctx: &mut Ctx) -> Check {
    let (out, fx) = ctx.run(&["alloc", "256"], &[], None);
    // Seen on the host: the probe started allocating and never finished (the runtime's exit
    // code is an extra of step 1, so it is not required here).
    let started = out.stdout.contains("allocating=256");
    let survived = out.stdout.contains("allocated=256");
    let check = verdict(
        started && !survived,
        "memory-limit-enforced",
        "allocating 256 MiB inside is killed (OOM) before it completes",
        out.describe(),
        "step 4 (cgroups): the memory limit is not enforced: check memory.max of the cgroup the process is really in",
    );
    with_effects(check, &fx)
}

/// Two spinning threads must get about half a CPU: CPU time over wall time, read on the host.
fn cpu_throttled(ctx: &mut Ctx) -> Check {
    let marker = random_word("s");
    let argv = ctx.probe(&["spin", "4", "2"], &marker);
    let ratio = match ctx.sub.start(&argv, &[], None, &marker) {
        Ok(mut running) => {
            let ratio = running.wait_for_probe("spin").and_then(|pid| {
                let cpu = measure_cpu(pid)?;
                Some((cpu, inspect::cgroup_of(pid).unwrap_or_default()))
            });
            let out = running.wait();
            (ratio, out)
        }
        Err(e) => (
            None,
            crate::grade::invoke::Outcome {
                stderr: e.to_string(),
                ..Default::default()
            },
        ),
    };
    let (ratio, out) = ratio;
    let fx = ctx.side_effects(&out);
    let expected =
        "two spinning threads get 0.5 CPU (between 0.3 and 0.7), measured from /proc on the host";
    let check = match ratio {
        Some((r, cg)) if (0.3..=0.7).contains(&r) => {
            pass("cpu-limit-enforced", expected, format!("{r:.2} CPU in cgroup {cg}"))
        }
        Some((r, cg)) => fail(
            "cpu-limit-enforced",
            expected,
            format!("{r:.2} CPU in cgroup {cg}"),
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

/// CPU seconds per wall second of `pid` over ~2 s, after a short settling time.
fn measure_cpu(pid: i32) -> Option<f64> {
    thread::sleep(Duration::from_millis(500));
    let (t0, c0) = (Instant::now(), inspect::cpu_seconds(pid)?);
    thread::sleep(Duration::from_millis(2000));
    let (t1, c1) = (Instant::now(), inspect::cpu_seconds(pid)?);
    Some((c1 - c0) / (t1 - t0).as_secs_f64())
}
