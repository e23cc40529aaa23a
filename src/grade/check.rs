//! Grading one submission, inside the guest: seed the image, grade each step in workshop order,
//! and announce every result on stdout as it is known, one line each, so the host can rebuild
//! the report from the console even if a submission takes the guest down halfway.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

use super::config::Config;
use super::invoke::Submission;
use super::report::{Check, Report, Status, Step};
use super::seed;
use super::steps::{grade_step, Ctx};
use super::workshop::Workshop;

/// Prefix of every console line the host reads.
pub const LINE_PREFIX: &str = "DEVOXX-GRADE ";

/// One console line's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// A step begins (so a hang is blamed on it).
    Step {
        step: String,
    },
    Check {
        step: String,
        check: Check,
    },
    Extra {
        check: Check,
    },
    /// The last line: how many lines came before it and the grader's exit status (0 passed,
    /// 1 not), signed like every line, so a console cut short or a verdict changed shows.
    Done {
        seconds: f64,
        #[serde(default)]
        lines: u64,
        #[serde(default)]
        exit: i32,
    },
}

/// Signs console lines: the submission runs as root in the same guest and can write to the
/// console too, so the host only believes lines carrying a MAC under a per-boot secret that the
/// grader read and deleted before running anything, numbered 1, 2, 3… so none can be replayed,
/// dropped or reordered.
pub struct Signer {
    key: Vec<u8>,
    seq: u64,
}

impl Signer {
    /// A signer for `key` (empty: no secret, for a report written with `--out`).
    pub fn new(key: Vec<u8>) -> Signer {
        Signer { key, seq: 0 }
    }

    /// Read the secret from `path` and delete the file, so nothing started later finds it.
    pub fn from_secret_file(path: &std::path::Path) -> anyhow::Result<Signer> {
        let key = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
        std::fs::remove_file(path).with_context(|| format!("remove {}", path.display()))?;
        // Keep the secret out of reach of unprivileged ptrace and core dumps.
        // SAFETY: prctl with integer arguments only.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
        Ok(Signer::new(key))
    }

    /// The console line for `event` (no newline): `DEVOXX-GRADE <mac> <seq> <json>`.
    pub fn line(&mut self, event: &Event) -> String {
        self.seq += 1;
        let json = serde_json::to_string(event).unwrap_or_default();
        let mac = mac(&self.key, self.seq, &json);
        format!("{LINE_PREFIX}{mac} {} {json}", self.seq)
    }
}

/// HMAC-SHA256 of `seq json` under `key`, in hex.
pub fn mac(key: &[u8], seq: u64, json: &str) -> String {
    use hmac::Mac;
    let Ok(mut m) = hmac::Hmac::<sha2::Sha256>::new_from_slice(key) else {
        return String::new();
    };
    m.update(format!("{seq} {json}").as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// What to grade and with what.
#[derive(Debug, Clone)]
pub struct Job {
    pub name: String,
    pub runtime: PathBuf,
    /// The submission's directory: where it runs from and where `devoxx-grade.toml` is.
    pub dir: PathBuf,
    pub config: Config,
    /// The teacher's workshop (the devoxx one without a workshop file).
    pub workshop: Workshop,
    pub steps: Vec<String>,
    /// The image store the workshop uses (`/fs`).
    pub store: PathBuf,
    pub busybox: PathBuf,
    pub probe: PathBuf,
    pub scratch: PathBuf,
}

/// Refuse to run a stranger's code as root anywhere but in a disposable guest.
pub fn ensure_disposable_machine(force: bool) -> anyhow::Result<()> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if force
        || cmdline
            .split_whitespace()
            .any(|w| w.starts_with("devoxx.mode="))
    {
        return Ok(());
    }
    bail!("check runs submissions as root and must run inside the grading VM: use `sudo make grade SUBMISSION=...` (this machine's kernel command line has no devoxx.mode=)")
}

/// Grade `job`, calling `emit` with each event as it happens; returns the whole report.
pub fn grade(job: &Job, sink: &mut dyn FnMut(&Event)) -> anyhow::Result<Report> {
    let start = Instant::now();
    let emitted = std::cell::Cell::new(0u64);
    let mut emit = |e: &Event| {
        emitted.set(emitted.get() + 1);
        sink(e)
    };
    let mut image = match lay_out(job) {
        Ok(image) => image,
        Err(e) => {
            let mut report = not_laid_out(job, &format!("{e:#}"), &mut emit);
            report.seconds = start.elapsed().as_secs_f64();
            emit(&Event::Done {
                seconds: report.seconds,
                lines: emitted.get(),
                exit: 1,
            });
            return Ok(report);
        }
    };
    for dir in &job.workshop.image_dirs {
        image
            .add(dir, None, true)
            .with_context(|| format!("create {dir} in the image (image_dirs)"))?;
    }
    // A submission that never switches root runs the command from the host's /: the probe
    // must be there too, so such a submission fails the rootfs step only, not every step.
    let host_probe = std::path::Path::new("/bin/probe");
    if host_probe.symlink_metadata().is_err() {
        std::os::unix::fs::symlink(&job.probe, host_probe).context("place /bin/probe")?;
    }
    std::fs::create_dir_all(&job.scratch)?;
    super::invoke::protect_grader();
    let sub = Submission {
        runtime: job.runtime.clone(),
        dir: job.dir.clone(),
        config: job.config.clone(),
        cgroup: super::invoke::RunCgroup::create(1024),
    };
    let mut ctx = Ctx::new(sub, image, job.scratch.clone());
    ctx.workshop = job.workshop.clone();
    let mut report = Report::empty(&job.name);
    if !job.config.ignored.is_empty() {
        ctx.extra(ignored_keys(&job.config.ignored));
    }
    for step in &job.steps {
        emit(&Event::Step { step: step.clone() });
        let checks = grade_step(step, &mut ctx);
        for check in &checks {
            emit(&Event::Check {
                step: step.clone(),
                check: check.clone(),
            });
        }
        report
            .steps
            .insert(step.clone(), Step::from_checks(step, checks));
    }
    for check in ctx.extras.values() {
        emit(&Event::Extra {
            check: check.clone(),
        });
    }
    if let Some(cgroup) = &ctx.sub.cgroup {
        cgroup.remove();
    }
    report.extras = ctx.extras;
    report.seconds = start.elapsed().as_secs_f64();
    emit(&Event::Done {
        seconds: report.seconds,
        lines: emitted.get(),
        exit: if report.passed() { 0 } else { 1 },
    });
    Ok(report)
}

/// Lay the image out where the submission looks for it: its `rootfs` key (checked once more
/// against the files this guest really needs), else the store's `/fs/<image>/rootfs`.
fn lay_out(job: &Job) -> anyhow::Result<seed::Image> {
    let place = match &job.config.rootfs {
        None => seed::Place::store(&job.store, &job.config.image),
        Some(root) => {
            let canonical = |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or(p.into());
            let mut needed: Vec<PathBuf> = [&job.probe, &job.busybox, &job.runtime, &job.scratch]
                .into_iter()
                .map(|p| canonical(p))
                .collect();
            needed.extend(std::env::current_exe().ok());
            needed.push(job.dir.clone());
            job.config.check_rootfs(root, &needed)?;
            seed::Place::key(&job.dir, root)
        }
    };
    seed::Image::at(place, &job.busybox, &job.probe).context("lay the image out")
}

/// The image could not be laid out (a `rootfs` refused in the guest, a symbolic link on its
/// way): every step fails saying so — the submission's configuration, not the guest, is why.
fn not_laid_out(job: &Job, why: &str, emit: &mut dyn FnMut(&Event)) -> Report {
    let hint = match &job.config.rootfs {
        Some(r) => format!(
            "the `rootfs` key of devoxx-grade.toml ({}): the grader lays its image out there; fix the key or the path",
            r.display()
        ),
        None => "grader error: rerun".to_owned(),
    };
    let mut report = Report::empty(&job.name);
    for step in &job.steps {
        emit(&Event::Step { step: step.clone() });
        let check = Check {
            name: "image-laid-out".into(),
            status: Status::Fail,
            expected: "the image laid out where the submission looks for it".into(),
            seen: why.to_owned(),
            hint: hint.clone(),
        };
        emit(&Event::Check {
            step: step.clone(),
            check: check.clone(),
        });
        report
            .steps
            .insert(step.clone(), Step::from_checks(step, vec![check]));
    }
    report
}

/// The note for workshop keys a submission's `devoxx-grade.toml` set: never obeyed.
fn ignored_keys(keys: &[String]) -> Check {
    Check {
        name: "workshop-keys-ignored".into(),
        status: Status::Fail,
        expected: "devoxx-grade.toml says only how to call the submission (run, rootfs, hostname, volume_source, volume_target, image, timeout_s); what is graded is the teacher's workshop file's".into(),
        seen: format!("{} set in devoxx-grade.toml: ignored", keys.join(", ")),
        hint: "remove them: the workshop file (make grade WORKSHOP=...) decides the steps, image_dirs, cgroup version and limits".into(),
    }
}
