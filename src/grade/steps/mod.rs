//! The workshop steps, each a function from the grading context to its checks. Every check
//! states what the step asks, what the host saw, and a hint that names the workshop step.

mod blame;
mod cgroups;
mod job;
mod limits;
mod namespaces;
mod network;
mod process;
mod rootfs;
mod verdict;
mod volumes;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::config::Volume;
use super::inspect;
use super::invoke::{random_word, Outcome, RunNet, Running, Submission};
use super::report::{Check, Status};
use super::seed::{Image, JOB_DIR};
use super::workshop::Workshop;
pub use job::Job;
pub use verdict::{fail, not_attempted, pass, verdict, with_effects};

/// Grade one step by name: its checks, in order.
pub fn grade_step(name: &str, ctx: &mut Ctx) -> Vec<Check> {
    if let Err(e) = ctx.image.new_step() {
        return vec![fail(
            "grader-setup",
            "the image laid out anew",
            format!("{e:#}"),
            "grader error: rerun",
        )];
    }
    let checks = match name {
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
    };
    if ctx.commands_ran || (name == "process" && ctx.blame.is_none()) {
        return checks;
    }
    // Nothing ran, in this step or before: its checks say so — with the cause the runtime
    // printed when the grader can read one — instead of guessing why.
    let why = ctx.blame.as_deref().unwrap_or(DEPENDS_ON_PROCESS);
    checks
        .into_iter()
        .map(|mut c| {
            if c.status != Status::Pass {
                c.status = Status::Fail;
                c.hint = why.into();
            }
            c
        })
        .collect()
}

/// The host as it was before the submission ran: what every run is compared against.
pub struct Ctx {
    pub sub: Submission,
    pub image: Image,
    /// Scratch directory on the host side (volumes are created here).
    pub scratch: PathBuf,
    pub host_hostname: String,
    /// What the teacher's workshop teaches (its limits, its cgroup version): what is graded.
    pub workshop: Workshop,
    cgroups: BTreeSet<String>,
    /// The volume the submission hard-codes (devoxx-grade.toml): its source exists, as it was
    /// at the start, before every run of every step.
    hard_coded: Option<(Volume, BTreeSet<PathBuf>)>,
    /// Mount points under which a leaked mount is a volume's: a fault of the volumes step only.
    volume_points: Vec<PathBuf>,
    /// Other mounts runs left in the host's table (gone with the run's host): judged by the namespaces
    /// step's own run, reported as an extra wherever they happen.
    pub mount_leaks: BTreeSet<String>,
    /// Has the probe run at all, in any run so far? If never, later failures depend on process.
    pub commands_ran: bool,
    /// Why the runtime stopped before running the command, when its stderr tells (the first
    /// such run's): every step's problem while no command ever ran.
    pub blame: Option<String>,
    /// Observations that never count against a step.
    pub extras: BTreeMap<String, Check>,
}

/// What a run changed on the host and should not have; each is undone once seen.
#[derive(Debug, Default)]
pub struct SideEffects {
    pub problems: Vec<String>,
    /// The host's hostname as the run left it, when it changed it (gone with the run's host): a
    /// namespaces fault, counted there only.
    pub host_renamed: Option<String>,
    /// Cgroups the run created and left behind (removed by the grader since).
    pub cgroups_left: Vec<String>,
    /// Volume mounts left in the host's table after exit (gone with the run's host): counted by the
    /// volumes step only.
    pub volume_leaked: Vec<String>,
    /// Other mounts left in the host's table after exit (gone with the run's host): counted by the
    /// namespaces step only (`mounts-stay-in-container`).
    pub mounts_left: Vec<String>,
}

/// Why a mount of the container reached the host's table, in the workshop's words.
pub const MOUNT_LEAK_HINT: &str = "step 3 (namespaces and chroot): make / private (syscall.Mount(\"\", \"/\", \"\", MS_REC|MS_PRIVATE, \"\")) in the child before mounting anything (proc, sys, dev), and unmount on every exit path: on a host whose / is shared, the child's mounts otherwise appear on the host";

impl Ctx {
    /// Take the host's baseline.
    pub fn new(sub: Submission, image: Image, scratch: PathBuf) -> Ctx {
        let hard_coded = sub.config.hard_coded_volume(&sub.dir).map(|v| {
            let _ = std::fs::create_dir_all(&v.source);
            let present = entries(&v.source);
            (v, present)
        });
        let mut ctx = Ctx {
            sub,
            image,
            scratch,
            host_hostname: hostname(),
            workshop: Workshop::default(),
            cgroups: inspect::all_cgroups(),
            hard_coded,
            volume_points: Vec::new(),
            mount_leaks: BTreeSet::new(),
            commands_ran: false,
            blame: None,
            extras: BTreeMap::new(),
        };
        if let Some((v, _)) = &ctx.hard_coded {
            let target = v.target.clone();
            let _ = ctx.image.add(&target, None, true);
            ctx.add_volume_point(&target);
        }
        ctx
    }

    /// A volume mounted at `target` inside: a leaked mount there is the volumes step's fault.
    pub fn add_volume_point(&mut self, target: &str) {
        let point = self.image.rootfs.join(target.trim_start_matches('/'));
        if !self.volume_points.contains(&point) {
            self.volume_points.push(point);
        }
    }

    /// The volume the submission hard-codes, if any.
    pub fn hard_coded_volume(&self) -> Option<Volume> {
        self.hard_coded.as_ref().map(|(v, _)| v.clone())
    }

    /// Lay out the run: the image as seeded (plus the step's additions), the hard-coded volume's
    /// source as it was, the probe's job under a one-word name; returns the command's argv.
    fn prepare(&mut self, job: &Job, marker: &str) -> std::io::Result<Vec<String>> {
        if let Err(e) = self.image.reset() {
            return Err(std::io::Error::other(format!("reset the image: {e:#}")));
        }
        if let Some((v, present)) = &self.hard_coded {
            std::fs::create_dir_all(&v.source)?;
            for added in entries(&v.source).difference(present) {
                let _ = super::seed::remove_tree(added);
            }
        }
        let name = format!("grade-{marker}");
        let text: String = job.lines.iter().map(|l| l.join("\t") + "\n").collect();
        for root in [self.image.rootfs.clone(), PathBuf::from("/")] {
            std::fs::create_dir_all(root.join(JOB_DIR))?;
            std::fs::write(root.join(JOB_DIR).join(&name), &text)?;
            let link = root.join("bin").join(&name);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink("probe", &link)?;
        }
        Ok(std::iter::once(format!("/bin/{name}"))
            .chain(job.args.iter().cloned())
            .collect())
    }

    /// Remove what [`Ctx::prepare`] laid out for the run `marker`; returns whether the probe
    /// ran (it leaves `<job>.ran` beside its job).
    fn unprepare(&mut self, marker: &str) -> bool {
        let name = format!("grade-{marker}");
        let mut ran = false;
        for root in [self.image.rootfs.clone(), PathBuf::from("/")] {
            if std::fs::remove_file(root.join(JOB_DIR).join(format!("{name}.ran"))).is_ok() {
                ran = true;
            }
            let _ = std::fs::remove_file(root.join(JOB_DIR).join(&name));
            let _ = std::fs::remove_file(root.join("bin").join(&name));
        }
        self.commands_ran |= ran;
        ran
    }

    /// Run the probe's `job` to completion; then undo and report its side effects.
    pub fn run(&mut self, job: Job) -> (Outcome, SideEffects) {
        match self.start(&job, "r") {
            Ok(running) => {
                let outcome = running.running.wait();
                let fx = self.side_effects(&outcome, &running.marker);
                (outcome, fx)
            }
            Err((outcome, marker)) => {
                let fx = self.side_effects(&outcome, &marker);
                (outcome, fx)
            }
        }
    }

    /// Start the probe's `job` in a network namespace of the run's own.
    pub fn start(&mut self, job: &Job, prefix: &str) -> Result<Started, NotStarted> {
        self.start_in(job, prefix, RunNet::new().ok())
    }

    /// [`Ctx::start`], with a TCP listener on `port` in the run's network namespace, up before
    /// the runtime starts.
    pub fn start_with_listener(
        &mut self,
        job: &Job,
        port: u16,
    ) -> std::io::Result<(Result<Started, NotStarted>, std::net::TcpListener)> {
        let net = RunNet::new()?;
        let listener = net.within(move || std::net::TcpListener::bind(("0.0.0.0", port)))??;
        listener.set_nonblocking(true)?;
        Ok((self.start_in(job, "c", Some(net)), listener))
    }

    fn start_in(
        &mut self,
        job: &Job,
        prefix: &str,
        net: Option<RunNet>,
    ) -> Result<Started, NotStarted> {
        let marker = random_word(prefix);
        let runtime = self.sub.runtime.display().to_string();
        let failed = |e: std::io::Error, marker: &str| {
            let outcome = Outcome {
                stderr: format!("could not start {runtime}: {e}"),
                ..Outcome::default()
            };
            (outcome, marker.to_owned())
        };
        let argv = match self.prepare(job, &marker) {
            Ok(argv) => argv,
            Err(e) => return Err(failed(e, &marker)),
        };
        match self
            .sub
            .start(&argv, job.volumes, job.stdin, &marker, net.as_ref())
        {
            Ok(running) => Ok(Started {
                running,
                marker,
                net,
            }),
            Err(e) => Err(failed(e, &marker)),
        }
    }

    /// Start `job` followed by `probe hold` and wait until it is up: the container stays up,
    /// found on the host by its marker, until [`Hold::finish`] releases it. When it never comes
    /// up, the run is over and the failing check says why.
    pub fn hold(&mut self, job: Job) -> Result<Hold, Check> {
        let mut job = job;
        job.lines
            .push(vec!["hold".into(), "-".into(), "120".into()]);
        let mut started = match self.start(&job, "h") {
            Ok(s) => s,
            Err((out, marker)) => {
                let fx = self.side_effects(&out, &marker);
                return Err(with_effects(did_not_stay_up(&out), &fx));
            }
        };
        match started.running.wait_for_probe() {
            Some(pid) => Ok(Hold {
                held: Held {
                    pid,
                    runtime: started.running.runtime_pid,
                    host: started.running.host.pid,
                    net: started.net.as_ref().map(|n| n.inode),
                },
                started,
            }),
            None => {
                let marker = started.marker.clone();
                let out = started.running.wait();
                let fx = self.side_effects(&out, &marker);
                Err(with_effects(did_not_stay_up(&out), &fx))
            }
        }
    }

    /// What the last run left on its host: mounts and a changed hostname (gone with the run's
    /// host), surviving processes (killed), cgroups (removed).
    pub fn side_effects(&mut self, outcome: &Outcome, marker: &str) -> SideEffects {
        let ran = self.unprepare(marker);
        let mut fx = SideEffects::default();
        if outcome.timed_out {
            fx.problems.push(format!(
                "the run did not finish within {} s and was killed (hung? waiting on stdin?)",
                self.sub.config.timeout_s
            ));
        }
        // The run's host is gone with what it left (its namespaces die with its keeper).
        let (volume, other): (Vec<String>, Vec<String>) =
            outcome.host.mounts.iter().cloned().partition(|p| {
                self.volume_points
                    .iter()
                    .any(|v| Path::new(p).starts_with(v))
            });
        if !other.is_empty() {
            self.mount_leaks.extend(other.iter().cloned());
            self.extra(fail(
                "no-mount-left-on-host",
                "no mount of the container is left in the host's mount table after exit",
                format!(
                    "left: {}",
                    self.mount_leaks
                        .iter()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                MOUNT_LEAK_HINT,
            ));
        }
        fx.mounts_left = other;
        fx.volume_leaked = volume;
        fx.host_renamed = outcome.host.renamed.clone();
        if outcome.leftovers > 0 {
            fx.problems.push(format!(
                "{} container process(es) were still running after the runtime exited: wait for the command before exiting",
                outcome.leftovers
            ));
        }
        fx.cgroups_left = self.remove_new_cgroups();
        if !ran && self.blame.is_none() {
            self.blame = blame::diagnose(
                &outcome.stderr,
                blame::guest_cgroup_version(),
                &|p| p.exists(),
                self.sub.config.rootfs.as_deref(),
            );
        }
        fx
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

    /// Is `path` (a cgroup of `hierarchy`) the cgroup the grader starts runs in?
    pub fn is_grader_cgroup(&self, hierarchy: &inspect::Hierarchy, path: &str) -> bool {
        self.sub
            .cgroup
            .as_ref()
            .is_some_and(|c| c.holds(&hierarchy.path(path)))
    }

    /// Record an extra (reported, never counted).
    pub fn extra(&mut self, check: Check) {
        self.extras.insert(check.name.clone(), check);
    }
}

/// The top-level entries of `dir`.
fn entries(dir: &Path) -> BTreeSet<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

/// A run that could not be started: why (as an outcome), and its marker, to undo its set-up.
pub type NotStarted = (Outcome, String);

/// A run started: the runtime, its marker, and the run's own network namespace.
pub struct Started {
    pub running: Running,
    pub marker: String,
    pub net: Option<RunNet>,
}

/// A run of `probe hold`, up.
pub struct Hold {
    pub held: Held,
    started: Started,
}

impl Hold {
    /// Mount points the run's host gained so far (the runtime still running).
    pub fn host_mounts(&self) -> Vec<String> {
        self.started.running.host.new_mounts()
    }

    /// Release the probe, wait for the runtime, and collect the run's side effects.
    pub fn finish(self, ctx: &mut Ctx) -> (Outcome, SideEffects) {
        super::invoke::release(self.held.pid);
        let outcome = self.started.running.wait();
        let fx = ctx.side_effects(&outcome, &self.started.marker);
        (outcome, fx)
    }
}

/// The shared failure when the held probe never came up.
fn did_not_stay_up(out: &Outcome) -> Check {
    fail(
        "container-stays-up",
        "the command (the grader's probe, one word: /bin/grade-<random>) runs inside the container until the grader releases it",
        out.describe(),
        DEPENDS_ON_PROCESS,
    )
}

/// The hint of a check that could not be judged because no command ever ran.
pub const DEPENDS_ON_PROCESS: &str = "depends on process: the runtime never ran the command (see stdout/stderr): step 1 (process) comes first";

/// A container held up by `probe hold`, found on the host by its marker.
pub struct Held {
    /// The probe, the container's command.
    pub pid: i32,
    /// The runtime the grader started.
    pub runtime: i32,
    /// The keeper of the run's host (PID 1 of the run's PID namespace).
    pub host: i32,
    /// The inode of the run's own "host" network namespace.
    pub net: Option<u64>,
}

/// The grader's own hostname (the host's).
pub fn hostname() -> String {
    nix::unistd::gethostname()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default()
}
