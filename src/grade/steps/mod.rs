//! The workshop steps, each a function from the grading context to its checks. Every check
//! states what the step asks, what the host saw, and a hint that names the workshop step.

mod cgroups;
mod namespaces;
mod network;
mod process;
mod rootfs;
mod volumes;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::config::Volume;
use super::inspect;
use super::invoke::{random_word, Outcome, Running, Submission};
use super::report::{Check, Status};

/// Grade one step by name: its checks, in order.
pub fn grade_step(name: &str, ctx: &mut Ctx) -> Vec<Check> {
    match name {
        "process" => process::grade(ctx),
        "namespaces" => namespaces::grade(ctx),
        "rootfs" => rootfs::grade(ctx),
        "cgroups" => cgroups::grade(ctx),
        "volumes" => volumes::grade(ctx),
        "network" => network::grade(ctx),
        _ => vec![fail(
            "known-step",
            "one of process, namespaces, rootfs, cgroups, volumes, network",
            name,
            "check the STEPS list",
        )],
    }
}

/// The host as it was before the submission ran: what every run is compared against.
pub struct Ctx {
    pub sub: Submission,
    pub rootfs: PathBuf,
    /// Scratch directory on the host side (volumes are created here).
    pub scratch: PathBuf,
    pub host_hostname: String,
    mount_ids: BTreeSet<u64>,
    cgroups: BTreeSet<String>,
    /// Observations that never count against a step.
    pub extras: BTreeMap<String, Check>,
}

/// What a run changed on the host and should not have; each is undone once seen.
#[derive(Debug, Default)]
pub struct SideEffects {
    pub problems: Vec<String>,
    /// The host's hostname as the run left it, when it changed it (restored since): a
    /// namespaces fault, counted there only.
    pub host_renamed: Option<String>,
    /// Cgroups the run created and left behind (removed by the grader since).
    pub cgroups_left: Vec<String>,
}

impl Ctx {
    /// Take the host's baseline.
    pub fn new(sub: Submission, rootfs: PathBuf, scratch: PathBuf) -> Ctx {
        Ctx {
            sub,
            rootfs,
            scratch,
            host_hostname: hostname(),
            mount_ids: mount_ids(),
            cgroups: inspect::all_cgroups(),
            extras: BTreeMap::new(),
        }
    }

    /// The probe's argv for `args`, with the run's `marker` last.
    pub fn probe(&self, args: &[&str], marker: &str) -> Vec<String> {
        std::iter::once("/bin/probe")
            .chain(args.iter().copied())
            .chain(std::iter::once(marker))
            .map(str::to_owned)
            .collect()
    }

    /// Run the probe with `args` to completion; then undo and report its side effects.
    pub fn run(
        &mut self,
        args: &[&str],
        volumes: &[Volume],
        stdin: Option<&[u8]>,
    ) -> (Outcome, SideEffects) {
        let marker = random_word("m");
        let outcome = self
            .sub
            .run(&self.probe(args, &marker), volumes, stdin, &marker);
        let effects = self.side_effects(&outcome);
        (outcome, effects)
    }

    /// Start `probe hold <marker>` and wait until it is up: the container stays up, found on
    /// the host by its marker, until [`Hold::finish`] releases it. When it never comes up, the
    /// run is over and the failing check says why.
    pub fn hold(&mut self, volumes: &[Volume]) -> Result<Hold, Check> {
        let marker = random_word("h");
        let argv = self.probe(&["hold", &marker, "120"], &marker);
        let mut running = self.sub.start(&argv, volumes, None, &marker).map_err(|e| {
            let seen = format!("could not start {}: {e}", self.sub.runtime.display());
            fail(
                "container-stays-up",
                "the runtime starts",
                seen,
                "is the submission executable?",
            )
        })?;
        match running.wait_for_probe("hold") {
            Some(pid) => Ok(Hold {
                held: Held { pid, marker },
                running,
            }),
            None => {
                let out = running.wait();
                let fx = self.side_effects(&out);
                Err(with_effects(did_not_stay_up(&out), &fx))
            }
        }
    }

    /// What the last run left on the host: mounts (unmounted since), a changed hostname
    /// (restored since), surviving processes (killed), cgroups (removed).
    pub fn side_effects(&mut self, outcome: &Outcome) -> SideEffects {
        let mut fx = SideEffects::default();
        if outcome.timed_out {
            fx.problems.push(format!(
                "the run did not finish within {} s and was killed (hung? waiting on stdin?)",
                self.sub.config.timeout_s
            ));
        }
        let leaked = self.leaked_mounts();
        if !leaked.is_empty() {
            fx.problems.push(format!(
                "left {} mount(s) in the host's mount table after exit ({}): make / private (MS_REC|MS_PRIVATE) in the new mount namespace before mounting anything",
                leaked.len(),
                leaked.join(", ")
            ));
            self.unmount(&leaked);
        }
        let now = hostname();
        if now != self.host_hostname {
            let _ = nix::unistd::sethostname(&self.host_hostname);
            fx.host_renamed = Some(now);
        }
        if outcome.leftovers > 0 {
            fx.problems.push(format!(
                "{} container process(es) were still running after the runtime exited: wait for the command before exiting",
                outcome.leftovers
            ));
        }
        fx.cgroups_left = self.remove_new_cgroups();
        fx
    }

    /// Mount points the host's table gained since the baseline.
    pub fn leaked_mounts(&self) -> Vec<String> {
        inspect::mounts("self")
            .into_iter()
            .filter(|(id, _, _)| !self.mount_ids.contains(id))
            .map(|(_, p, _)| p)
            .collect()
    }

    fn unmount(&self, points: &[String]) {
        let mut points = points.to_vec();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }

    /// Cgroups created since the baseline.
    pub fn new_cgroups(&self) -> Vec<String> {
        inspect::all_cgroups()
            .difference(&self.cgroups)
            .cloned()
            .collect()
    }

    /// Kill what is in the cgroups created since the baseline and remove them, deepest first.
    fn remove_new_cgroups(&self) -> Vec<String> {
        let mut left = self.new_cgroups();
        left.sort_by_key(|c| std::cmp::Reverse(c.len()));
        for cg in &left {
            super::invoke::remove_cgroup(&inspect::cgroup_dir(cg));
        }
        left
    }

    /// Is `rel` (a cgroup path) the cgroup the grader starts runs in?
    pub fn is_grader_cgroup(&self, rel: &str) -> bool {
        self.sub
            .cgroup
            .as_ref()
            .is_some_and(|c| *c == inspect::cgroup_dir(rel))
    }

    /// Record an extra (reported, never counted).
    pub fn extra(&mut self, check: Check) {
        self.extras.insert(check.name.clone(), check);
    }
}

/// A run of `probe hold`, up.
pub struct Hold {
    pub held: Held,
    running: Running,
}

impl Hold {
    /// Output so far (the probe's `ready` line is in it).
    pub fn stdout(&self) -> String {
        self.running.stdout_so_far()
    }

    /// Release the probe, wait for the runtime, and collect the run's side effects.
    pub fn finish(self, ctx: &mut Ctx) -> (Outcome, SideEffects) {
        super::invoke::release(self.held.pid);
        let outcome = self.running.wait();
        let fx = ctx.side_effects(&outcome);
        (outcome, fx)
    }
}

/// The shared failure when the held probe never came up.
fn did_not_stay_up(out: &Outcome) -> Check {
    fail(
        "container-stays-up",
        "the command /bin/probe hold runs inside the container until the grader releases it",
        out.describe(),
        "the command did not start (see stdout/stderr): steps 1–3 (process, namespaces, rootfs) come first",
    )
}

/// A container held up by `probe hold`, found on the host by its marker.
pub struct Held {
    pub pid: i32,
    pub marker: String,
}

impl Held {
    /// The probe's `ready` line fields (pid, hostname, procs) as printed inside.
    pub fn reported(&self, stdout: &str) -> BTreeMap<String, String> {
        let prefix = format!("ready marker={}", self.marker);
        stdout
            .lines()
            .find(|l| l.contains(&prefix))
            .map(|l| {
                l.split_whitespace()
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The grader's own hostname (the host's).
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn mount_ids() -> BTreeSet<u64> {
    inspect::mounts("self")
        .into_iter()
        .map(|(id, _, _)| id)
        .collect()
}

/// A passing check.
pub fn pass(name: &str, expected: &str, seen: impl Into<String>) -> Check {
    check(name, Status::Pass, expected, seen, "")
}

/// A failing check with its hint.
pub fn fail(name: &str, expected: &str, seen: impl Into<String>, hint: &str) -> Check {
    check(name, Status::Fail, expected, seen, hint)
}

/// A check with no trace of the step having been tried.
pub fn not_attempted(name: &str, expected: &str, seen: impl Into<String>, hint: &str) -> Check {
    check(name, Status::NotAttempted, expected, seen, hint)
}

fn check(name: &str, status: Status, expected: &str, seen: impl Into<String>, hint: &str) -> Check {
    Check {
        name: name.into(),
        status,
        expected: expected.into(),
        seen: seen.into(),
        hint: hint.into(),
    }
}

/// `check` as it stands, or failed with the run's side effects when there were any: a run
/// that leaked mounts, changed the host's hostname or hung fails the check that made it.
pub fn with_effects(mut check: Check, fx: &SideEffects) -> Check {
    if fx.problems.is_empty() {
        return check;
    }
    check.status = Status::Fail;
    check.seen = format!("{}; {}", check.seen, fx.problems.join("; "));
    // What the run did wrong comes first: it is why the check failed.
    check.hint = if check.hint.is_empty() {
        fx.problems.join("; ")
    } else {
        format!("{}; {}", fx.problems.join("; "), check.hint)
    };
    check
}

/// Status helper: `pass` if `ok`, else `fail` with `hint`.
pub fn verdict(ok: bool, name: &str, expected: &str, seen: impl Into<String>, hint: &str) -> Check {
    if ok {
        pass(name, expected, seen)
    } else {
        fail(name, expected, seen, hint)
    }
}
