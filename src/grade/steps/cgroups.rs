//! Step "cgroups": the container's process sits in a cgroup of its own carrying each limit the
//! workshop teaches (`limits`: by default the devoxx workshop's 100 MiB and half a CPU; on a v1
//! workshop in the hierarchy of each limit's controller), and the kernel enforces them: an
//! allocation past the memory limit is killed, a spinning process gets the CPU share taught,
//! forks past the process limit fail — all read on the host.

use std::thread;
use std::time::{Duration, Instant};

use super::limits::{self, Taught};
use super::{fail, not_attempted, pass, verdict, with_effects, Ctx, Job, NotStarted, Started};
use crate::grade::inspect::{self, Hierarchy, LimitKind};
use crate::grade::report::Check;

const JOIN_HINT: &str = "step 4 (cgroups): the process is not in the cgroup: write its pid to cgroup.procs after starting it and before waiting for it";

/// How long the runtime may take to place its container after the command is up: a parent
/// that writes cgroup.procs after cmd.Start() may be overtaken by its child under a slow CPU.
const SETTLE: Duration = Duration::from_secs(3);

pub fn grade(ctx: &mut Ctx) -> Vec<Check> {
    let taught = Taught::all(&ctx.workshop.limits);
    let hierarchies = hierarchies(&taught);
    let hold = match ctx.hold(Job::of(&[])) {
        Ok(hold) => hold,
        Err(check) => return vec![check],
    };
    let placed = settle(
        ctx,
        &hierarchies,
        hold.held.pid,
        (hold.held.runtime, hold.held.host),
    );
    let created = ctx.new_cgroups();
    let found: Vec<_> = taught
        .iter()
        .map(|t| {
            let p = placed.of(t.kind);
            p.hierarchy.effective_limit(&p.first, t.kind)
        })
        .collect();
    let (_, fx) = hold.finish(ctx);
    let own: Vec<&Placed> = placed.all.iter().filter(|p| p.first != "/").collect();
    let left: Vec<String> = own
        .iter()
        .map(|p| p.hierarchy.key(&p.first))
        .filter(|k| fx.cgroups_left.contains(k))
        .collect();
    ctx.extra(verdict(
        left.is_empty(),
        "cgroup-removed-after-exit",
        "the container's own cgroup is removed when it exits",
        if left.is_empty() {
            format!("{} removed", placed.show_first())
        } else {
            format!("{} left behind", left.join(", "))
        },
        "rmdir the cgroup after the command exits",
    ));
    if own.is_empty() {
        let check = if created.is_empty() {
            let h = &placed.all[0].hierarchy;
            let root = match h.version {
                inspect::CgroupVersion::V2 => inspect::CGROUP_ROOT.to_owned(),
                inspect::CgroupVersion::V1 => format!("{}/{}", inspect::CGROUP_ROOT, h.controller),
            };
            not_attempted(
                "in-own-cgroup",
                "the container's first process in a cgroup other than the root one",
                format!("in {} and no cgroup created", placed.show_first()),
                &format!(
                    "step 4 (cgroups): create {root}/<name> and write the pid to its cgroup.procs"
                ),
            )
        } else {
            fail(
                "in-own-cgroup",
                "the container's first process in the cgroup the runtime created",
                format!("in {}; created {}", placed.show_first(), created.join(", ")),
                JOIN_HINT,
            )
        };
        return vec![with_effects(check, &fx)];
    }
    ctx.extra(placed.escape_check());
    let mut checks = vec![with_effects(
        pass(
            "in-own-cgroup",
            "the container's first process (the one the runtime started) in a cgroup other than the root one",
            format!("{} (pid {})", placed.show_first(), placed.first_pid),
        ),
        &fx,
    )];
    for (t, seen) in taught.iter().zip(found) {
        checks.push(limits::written_check(&placed.of(t.kind).hierarchy, t, seen));
    }
    for t in &taught {
        let hierarchy = placed.of(t.kind).hierarchy.clone();
        checks.push(match t.kind {
            LimitKind::Memory => memory_enforced(ctx, &hierarchy, t),
            LimitKind::Cpu => cpu_throttled(ctx, &hierarchy, t),
            LimitKind::Pids => pids_enforced(ctx, &hierarchy, t),
        });
    }
    checks
}

/// The hierarchies the step reads: v2's one, or (v1) one per controller of a configured limit.
fn hierarchies(taught: &[Taught]) -> Vec<Hierarchy> {
    let version = inspect::cgroup_version();
    let mut all: Vec<Hierarchy> = Vec::new();
    for t in taught {
        let h = Hierarchy::of(version, limits::controller(t.kind));
        if !all.iter().any(|a| a.dir == h.dir) {
            all.push(h);
        }
    }
    if all.is_empty() {
        all.push(Hierarchy::of(version, "pids"));
    }
    all
}

/// Where the runtime placed its container in one hierarchy: the cgroup of its first process
/// (the grader's own run cgroup reads as `/`: the runtime started there) and the command's.
struct Placed {
    hierarchy: Hierarchy,
    first: String,
    command: String,
}

impl Placed {
    /// Did the command escape its parent's cgroup (forked before the parent was placed)?
    fn escaped(&self) -> bool {
        self.first != "/"
            && self.command != self.first
            && !self.command.starts_with(&format!("{}/", self.first))
    }
}

/// The container's placement in every hierarchy the step reads.
struct Placement {
    first_pid: i32,
    all: Vec<Placed>,
}

impl Placement {
    /// The placement in the hierarchy holding `kind`'s limit.
    fn of(&self, kind: LimitKind) -> &Placed {
        let controller = limits::controller(kind);
        self.all
            .iter()
            .find(|p| {
                p.hierarchy.version == inspect::CgroupVersion::V2
                    || p.hierarchy.controller == controller
                    || p.hierarchy.dir.split(',').any(|c| c == controller)
            })
            .unwrap_or(&self.all[0])
    }

    /// The first process's cgroups: `/w` on v2, `pids:/w, memory:/` on v1.
    fn show_first(&self) -> String {
        self.show(|p| &p.first)
    }

    fn show(&self, which: impl Fn(&Placed) -> &String) -> String {
        self.all
            .iter()
            .map(|p| match p.hierarchy.version {
                inspect::CgroupVersion::V2 => which(p).clone(),
                inspect::CgroupVersion::V1 => format!("{}:{}", p.hierarchy.dir, which(p)),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The warning (an extra: the step judges the first process).
    fn escape_check(&self) -> Check {
        verdict(
            !self.all.iter().any(Placed::escaped),
            "command-in-container-cgroup",
            "the command runs in the container's cgroup (or below it)",
            format!("command in {}, its parent in {}", self.show(|p| &p.command), self.show_first()),
            "the command started before its parent was placed in the cgroup: place the child before it runs anything (it waits on a pipe the parent closes once cgroup.procs is written)",
        )
    }
}

/// Wait (up to [`SETTLE`]) until the runtime has placed the first process of the container
/// holding `probe` in a cgroup of its own in every hierarchy read, then say where it and the
/// command are.
fn settle(
    ctx: &Ctx,
    hierarchies: &[Hierarchy],
    probe: i32,
    (runtime, host): (i32, i32),
) -> Placement {
    let deadline = Instant::now() + SETTLE;
    loop {
        let first_pid = inspect::first_process(probe, runtime, host);
        let read = |h: &Hierarchy, pid: i32| {
            let cg = h.cgroup_of(pid).unwrap_or_else(|| "/".into());
            if ctx.is_grader_cgroup(h, &cg) {
                "/".to_owned()
            } else {
                cg
            }
        };
        let placement = Placement {
            first_pid,
            all: hierarchies
                .iter()
                .map(|h| Placed {
                    hierarchy: h.clone(),
                    first: read(h, first_pid),
                    command: read(h, probe),
                })
                .collect(),
        };
        if placement.all.iter().all(|p| p.first != "/") || Instant::now() >= deadline {
            return placement;
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Start `work` behind the probe's gate, settle the container's placement, and put a command
/// that escaped its parent's cgroup back into it (the limits are judged, not the race; the race
/// is the warning above). Returns the probe's pid (the caller opens the gate), a note when it
/// was moved, and the run.
fn gated(
    ctx: &mut Ctx,
    hierarchies: &[Hierarchy],
    work: &[&str],
) -> Result<(i32, String, Started), NotStarted> {
    let job = Job::of(&[&["gate", "60"], work]);
    let mut started = ctx.start(&job, "g")?;
    let Some(pid) = started.running.wait_for_probe() else {
        let marker = started.marker.clone();
        return Err((started.running.wait(), marker));
    };
    let placed = settle(
        ctx,
        hierarchies,
        pid,
        (started.running.runtime_pid, started.running.host.pid),
    );
    let mut note = String::new();
    for p in placed.all.iter().filter(|p| p.escaped()) {
        let procs = p.hierarchy.path(&p.first).join("cgroup.procs");
        if std::fs::write(procs, pid.to_string()).is_ok() {
            note = format!(
                " (the command had escaped to {}: moved into {} to judge the limits)",
                p.command, p.first
            );
        }
    }
    Ok((pid, note, started))
}

/// The probe's cgroup in `hierarchy`, unless it is the grader's own (what happens there is
/// the grader's cap, not the container's limit).
fn own_cgroup(ctx: &Ctx, hierarchy: &Hierarchy, pid: i32) -> Option<String> {
    hierarchy
        .cgroup_of(pid)
        .filter(|cg| cg != "/" && !ctx.is_grader_cgroup(hierarchy, cg))
}

/// An allocation of 2.5 times the memory limit (touched; 256 MiB for 100 MiB) must not
/// survive: the kernel's OOM kill, counted in the probe's cgroup (v2 `memory.events`, v1
/// `memory.oom_control`) under a memory limit, is what decides; the probe's own line
/// (`allocated=N` when it survived) only corroborates.
fn memory_enforced(ctx: &mut Ctx, hierarchy: &Hierarchy, taught: &Taught) -> Check {
    let inspect::Limit::Bytes(bytes) = taught.want else {
        unreachable!("a memory limit is in bytes")
    };
    let mib = limits::alloc_mib(bytes);
    let size = mib.to_string();
    let (out, kills, note, fx) =
        match gated(ctx, std::slice::from_ref(hierarchy), &["alloc", &size]) {
            Ok((pid, note, started)) => {
                let cgroup = own_cgroup(ctx, hierarchy, pid);
                let limited = cgroup
                    .as_ref()
                    .is_some_and(|cg| hierarchy.effective_limit(cg, LimitKind::Memory).is_some());
                let count = || cgroup.as_ref().map_or(0, |cg| hierarchy.oom_kills(cg));
                let before = count();
                crate::grade::invoke::release(pid);
                let kills = watch(ctx, pid, || count().saturating_sub(before));
                let out = started.running.wait();
                let fx = ctx.side_effects(&out, &started.marker);
                (out, if limited { kills } else { 0 }, note, fx)
            }
            Err((out, marker)) => {
                let fx = ctx.side_effects(&out, &marker);
                (out, 0, String::new(), fx)
            }
        };
    let survived = out.stdout.contains(&format!("allocated={mib}"));
    let check = verdict(
        kills > 0 && !survived,
        "memory-limit-enforced",
        &format!("allocating {mib} MiB inside is killed (OOM) before it completes"),
        format!(
            "{kills} OOM kill(s) in the probe's cgroup; {}{note}",
            out.describe()
        ),
        &limits::enforce_hint(hierarchy.version, taught),
    );
    with_effects(check, &fx)
}

/// Two spinning threads must get the CPU share taught (within 60–140 % of it): CPU time over
/// wall time, read on the host.
fn cpu_throttled(ctx: &mut Ctx, hierarchy: &Hierarchy, taught: &Taught) -> Check {
    let cpu = match taught.want {
        inspect::Limit::Cpu { quota, period } => quota as f64 / period.max(1) as f64,
        _ => unreachable!("a cpu limit is a quota per period"),
    };
    let (ratio, note, out, fx) =
        match gated(ctx, std::slice::from_ref(hierarchy), &["spin", "2.5", "2"]) {
            Ok((pid, note, started)) => {
                crate::grade::invoke::release(pid);
                let ratio =
                    measure_cpu(pid).map(|r| (r, hierarchy.cgroup_of(pid).unwrap_or_default()));
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
    let (lo, hi) = limits::cpu_band(cpu);
    let expected = format!(
        "two spinning threads get {} CPU (between {} and {}), measured from /proc on the host",
        limits::cpus(cpu),
        limits::cpus(lo),
        limits::cpus(hi)
    );
    let check = match ratio {
        Some((r, cg)) if (lo..=hi).contains(&r) => pass(
            "cpu-limit-enforced",
            &expected,
            format!("{r:.2} CPU in cgroup {cg}{note}"),
        ),
        Some((r, cg)) => fail(
            "cpu-limit-enforced",
            &expected,
            format!("{r:.2} CPU in cgroup {cg}{note}"),
            &limits::enforce_hint(hierarchy.version, taught),
        ),
        None => fail(
            "cpu-limit-enforced",
            &expected,
            out.describe(),
            "the spinning probe did not run long enough to be measured",
        ),
    };
    with_effects(check, &fx)
}

/// Forking past the process limit must fail (EAGAIN) while the command goes on: the probe
/// forks more waiting children than the limit allows and says how many forks failed; the host
/// sees the refusals in `pids.events` of the probe's cgroup (or the ancestor holding the limit).
fn pids_enforced(ctx: &mut Ctx, hierarchy: &Hierarchy, taught: &Taught) -> Check {
    let inspect::Limit::Count(limit) = taught.want else {
        unreachable!("a pids limit is a count")
    };
    let n = limits::forks_for(limit);
    let count = n.to_string();
    let (refused, note, out, fx) =
        match gated(ctx, std::slice::from_ref(hierarchy), &["forks", &count]) {
            Ok((pid, note, started)) => {
                let chain = own_cgroup(ctx, hierarchy, pid)
                    .map(|cg| ancestry(&cg))
                    .unwrap_or_default();
                let before: Vec<u64> = chain.iter().map(|c| hierarchy.pids_refused(c)).collect();
                crate::grade::invoke::release(pid);
                // Read while the probe lives (it keeps its children a second after its forks):
                // a runtime removes its cgroup, and the count with it, once the command is over.
                let refused = watch(ctx, pid, || {
                    chain
                        .iter()
                        .zip(&before)
                        .map(|(c, b)| hierarchy.pids_refused(c).saturating_sub(*b))
                        .max()
                        .unwrap_or(0)
                });
                let out = started.running.wait();
                let fx = ctx.side_effects(&out, &started.marker);
                (refused, note, out, fx)
            }
            Err((out, marker)) => {
                let fx = ctx.side_effects(&out, &marker);
                (0, String::new(), out, fx)
            }
        };
    let probe = limits::parse_forks(&out.stdout);
    let went_on = probe.is_some_and(|(_, eagain)| eagain > 0);
    let said = match probe {
        Some((started, eagain)) => format!("the command started {started} child(ren), {eagain} fork(s) failed with EAGAIN and it went on"),
        None => "the command did not report its forks".into(),
    };
    let check = verdict(
        went_on && refused > 0,
        "pids-limit-enforced",
        &format!("forking {n} waiting children under a limit of {limit} processes: the forks past it fail (EAGAIN) and the command goes on"),
        format!("{refused} fork(s) refused by the pids controller (pids.events) in the probe's cgroup; {said}; {}{note}", out.describe()),
        &limits::enforce_hint(hierarchy.version, taught),
    );
    with_effects(check, &fx)
}

/// The most `count` said while the released probe `pid` lived (the run's deadline at most),
/// and once more after: counters of a cgroup its runtime may remove once the command is over.
fn watch(ctx: &Ctx, pid: i32, count: impl Fn() -> u64) -> u64 {
    let mut most = 0;
    let until = Instant::now() + Duration::from_secs(ctx.sub.config.timeout_s);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < until {
        most = most.max(count());
        thread::sleep(Duration::from_millis(20));
    }
    most.max(count())
}

/// `/a/b` and its ancestors but the root: `/a/b`, `/a`.
fn ancestry(cgroup: &str) -> Vec<String> {
    let mut all = Vec::new();
    let mut path = cgroup.trim_end_matches('/').to_owned();
    while !path.is_empty() && path != "/" {
        all.push(path.clone());
        path.truncate(path.rfind('/').unwrap_or(0));
    }
    all
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cgroup_s_ancestry_stops_before_the_root() {
        assert_eq!(ancestry("/a/b/"), vec!["/a/b".to_owned(), "/a".to_owned()]);
        assert!(ancestry("/").is_empty());
    }
}
