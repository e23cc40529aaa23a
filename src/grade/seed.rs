//! The image every submission runs: `/fs/<image>/rootfs` laid out like the alpine rootfs the
//! workshop pulls (busybox applets where alpine has them, the probe at `/bin/probe`), made
//! anew for each submission, and made anew before a run whenever an earlier run changed it, so
//! no run sees another's leftovers (a runtime without copy-on-write writes into the image).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

use super::inspect;

/// Directories of alpine's rootfs.
const DIRS: [&str; 22] = [
    "bin",
    "dev",
    "etc",
    "home",
    "lib",
    "media",
    "mnt",
    "opt",
    "proc",
    "root",
    "run",
    "sbin",
    "srv",
    "sys",
    "tmp",
    "usr",
    "usr/bin",
    "usr/sbin",
    "usr/local/bin",
    "var",
    "var/tmp",
    "var/log",
];

/// Where the probe finds its job (in the image, and on the host for a runtime that never
/// switches root): see tests/probe. Part of the laid-out image, so that a run's job, written
/// and removed again, leaves the image as it was (nothing to lay out anew before the next run).
pub const JOB_DIR: &str = ".grade-jobs";

/// Where the image's rootfs lives (the workshop's layout).
pub fn rootfs_of(store: &Path, image: &str) -> PathBuf {
    store.join(image).join("rootfs")
}

/// Where an image is laid out, and what may be wiped to lay it out anew.
#[derive(Debug, Clone, PartialEq)]
pub struct Place {
    /// The image's root: what the runtime switches into.
    pub rootfs: PathBuf,
    /// What each lay-out removes first (the rootfs, or the store's `<image>` directory).
    clear: PathBuf,
    /// Every directory between this one and `clear` must be a real one, never a symbolic link:
    /// a run (root in the guest) that swapped one for a link to `/usr` must not make the grader
    /// wipe `/usr/<...>` at the next lay-out.
    base: PathBuf,
}

impl Place {
    /// The workshop's store layout: `<store>/<image>/rootfs`.
    pub fn store(store: &Path, image: &str) -> Place {
        let rootfs = rootfs_of(store, image);
        Place {
            clear: rootfs.parent().unwrap_or(&rootfs).to_path_buf(),
            rootfs,
            base: store.to_path_buf(),
        }
    }

    /// A submission's own `rootfs` (validated by [`super::config::Config::check_rootfs`]):
    /// absolute, or relative to the submission's directory `dir`.
    pub fn key(dir: &Path, rootfs: &Path) -> Place {
        let rootfs = dir.join(rootfs);
        let base = if rootfs.starts_with(dir) {
            dir.to_path_buf()
        } else {
            PathBuf::from("/")
        };
        Place {
            clear: rootfs.clone(),
            rootfs,
            base,
        }
    }

    /// Refuse to lay out through a symbolic link (or anything but a directory) between `base`
    /// and `clear`.
    fn check_real_dirs(&self) -> anyhow::Result<()> {
        let rel = self.clear.strip_prefix(&self.base).with_context(|| {
            format!(
                "{} is not under {}",
                self.clear.display(),
                self.base.display()
            )
        })?;
        let mut here = self.base.clone();
        let parents = rel.components().count().saturating_sub(1);
        for c in rel.components().take(parents) {
            here.push(c);
            match here.symlink_metadata() {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(e).with_context(|| format!("inspect {}", here.display())),
                Ok(m) if m.file_type().is_symlink() => bail!(
                    "refused: {} is a symbolic link: the grader lays the image out at {} only through real directories",
                    here.display(),
                    self.rootfs.display()
                ),
                Ok(m) if !m.is_dir() => bail!(
                    "refused: {} is not a directory: the image cannot be laid out at {}",
                    here.display(),
                    self.rootfs.display()
                ),
                Ok(_) => {}
            }
        }
        Ok(())
    }
}

/// The seeded image, what the current step added to it, and how it looked after that: every
/// run starts from it.
pub struct Image {
    pub rootfs: PathBuf,
    place: Place,
    busybox: PathBuf,
    probe: PathBuf,
    /// busybox's applets (`--list-full`), asked once: each reseed lays out the same links.
    applets: Vec<String>,
    /// Files (`Some(text)`) and directories (`None`) added to the seeded image, by path
    /// relative to the root; `true`: kept for the whole grading (a hard-coded volume's target).
    additions: Vec<(String, Option<String>, bool)>,
    baseline: BTreeMap<String, Stamp>,
}

/// What tells an entry changed: its type and mode, and for a file or link its size and mtime
/// (a directory's mtime moves with every entry added and removed again, so it is left out).
#[derive(Debug, PartialEq)]
struct Stamp(u32, u64, i64, i64);

impl Image {
    /// Seed `/fs/<image>/rootfs` in `store`.
    pub fn new(store: &Path, image: &str, busybox: &Path, probe: &Path) -> anyhow::Result<Image> {
        Image::at(Place::store(store, image), busybox, probe)
    }

    /// Seed the image at `place`.
    pub fn at(place: Place, busybox: &Path, probe: &Path) -> anyhow::Result<Image> {
        let mut img = Image {
            rootfs: place.rootfs.clone(),
            place,
            busybox: busybox.to_path_buf(),
            probe: probe.to_path_buf(),
            applets: applets(busybox)?,
            additions: Vec::new(),
            baseline: BTreeMap::new(),
        };
        img.reseed()?;
        Ok(img)
    }

    /// Add a file (`Some(text)`) or a directory (`None`) at `rel` for the runs of this step
    /// (`keep`: for every step).
    pub fn add(&mut self, rel: &str, text: Option<&str>, keep: bool) -> std::io::Result<()> {
        let rel = rel.trim_start_matches('/').to_owned();
        write_addition(&self.rootfs, &rel, text)?;
        self.additions.push((rel, text.map(str::to_owned), keep));
        self.baseline = stamps(&self.rootfs);
        Ok(())
    }

    /// A new step: drop the previous step's additions (kept ones stay).
    pub fn new_step(&mut self) -> anyhow::Result<()> {
        let before = self.additions.len();
        self.additions.retain(|a| a.2);
        if self.additions.len() != before {
            self.reseed()?;
        }
        Ok(())
    }

    /// Before a run: if anything changed since the image was last laid out, lay it out anew.
    /// Returns whether it had to.
    pub fn reset(&mut self) -> anyhow::Result<bool> {
        if stamps(&self.rootfs) == self.baseline {
            return Ok(false);
        }
        self.reseed()?;
        Ok(true)
    }

    fn reseed(&mut self) -> anyhow::Result<()> {
        self.place.check_real_dirs()?;
        remove_tree(&self.place.clear)?;
        seed(&self.rootfs, &self.busybox, &self.probe, &self.applets)?;
        for (rel, text, _) in &self.additions {
            write_addition(&self.rootfs, rel, text.as_deref())?;
        }
        self.baseline = stamps(&self.rootfs);
        Ok(())
    }
}

fn write_addition(rootfs: &Path, rel: &str, text: Option<&str>) -> std::io::Result<()> {
    let path = rootfs.join(rel);
    match text {
        Some(t) => {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::write(path, t)
        }
        None => fs::create_dir_all(path),
    }
}

/// Every entry under `root` (never following links or crossing into a mount), by relative path.
fn stamps(root: &Path) -> BTreeMap<String, Stamp> {
    let mut found = BTreeMap::new();
    let dev = root.symlink_metadata().map(|m| m.dev()).unwrap_or(0);
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.path().symlink_metadata() else {
                continue;
            };
            let rel = e
                .path()
                .strip_prefix(root)
                .map(|r| r.to_string_lossy().into_owned());
            let stamp = if m.is_dir() {
                if m.dev() == dev {
                    todo.push(e.path());
                }
                Stamp(m.mode(), m.dev(), 0, 0)
            } else {
                Stamp(m.mode(), m.size(), m.mtime(), m.mtime_nsec())
            };
            found.insert(rel.unwrap_or_default(), stamp);
        }
    }
    found
}

/// Build a fresh rootfs at `rootfs` (cleared before) from `busybox` (static, with its
/// `applets`) and `probe`.
fn seed(rootfs: &Path, busybox: &Path, probe: &Path, applets: &[String]) -> anyhow::Result<()> {
    for d in DIRS.iter().chain([&JOB_DIR]) {
        fs::create_dir_all(rootfs.join(d)).with_context(|| format!("create {d}"))?;
    }
    for d in ["tmp", "var/tmp"] {
        fs::set_permissions(rootfs.join(d), fs::Permissions::from_mode(0o1777))?;
    }
    fs::set_permissions(rootfs.join("root"), fs::Permissions::from_mode(0o700))?;
    fs::copy(busybox, rootfs.join("bin/busybox")).context("copy busybox")?;
    fs::copy(probe, rootfs.join("bin/probe")).context("copy probe")?;
    link_applets(rootfs, applets)?;
    write_etc(rootfs)
}

/// The applets of `busybox`, each at the path it names itself (`--list-full`), like alpine.
fn applets(busybox: &Path) -> anyhow::Result<Vec<String>> {
    let out = Command::new(busybox)
        .arg("--list-full")
        .output()
        .context("busybox --list-full")?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|rel| !rel.is_empty() && !rel.contains(".."))
        .map(str::to_owned)
        .collect())
}

/// One symlink to /bin/busybox per applet.
fn link_applets(rootfs: &Path, applets: &[String]) -> anyhow::Result<()> {
    for rel in applets {
        let path = rootfs.join(rel);
        if path.symlink_metadata().is_ok() {
            continue;
        }
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        symlink("/bin/busybox", &path).with_context(|| format!("link {rel}"))?;
    }
    Ok(())
}

fn write_etc(rootfs: &Path) -> anyhow::Result<()> {
    let files = [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n",
        ),
        (
            "etc/group",
            "root:x:0:root\nnogroup:x:65533:\nnobody:x:65534:\n",
        ),
        ("etc/hostname", "localhost\n"),
        ("etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n"),
        ("etc/alpine-release", "3.20.0\n"),
        (
            "etc/os-release",
            "NAME=\"devoxx-grade (alpine layout)\"\nID=alpine\nVERSION_ID=3.20.0\n",
        ),
        (
            "etc/profile",
            "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n",
        ),
    ];
    for (rel, text) in files {
        fs::write(rootfs.join(rel), text).with_context(|| format!("write {rel}"))?;
    }
    Ok(())
}

/// Detach every mount at or under `dir` (deepest first), then delete the tree without ever
/// crossing into another filesystem — a volume a submission left mounted here keeps its data.
pub fn remove_tree(dir: &Path) -> anyhow::Result<()> {
    unmount_under(dir);
    if dir.symlink_metadata().is_err() {
        return Ok(());
    }
    let dev = dir.symlink_metadata()?.dev();
    remove_same_dev(dir, dev)
}

/// Lazily unmount everything mounted at or below `dir` in the grader's namespace.
pub fn unmount_under(dir: &Path) -> Vec<String> {
    let mut points: Vec<String> = inspect::mounts("self")
        .into_iter()
        .map(|(_, p, _)| p)
        .filter(|p| Path::new(p).starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in &points {
        let _ = nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
    points
}

fn remove_same_dev(path: &Path, dev: u64) -> anyhow::Result<()> {
    let meta = path.symlink_metadata()?;
    if meta.dev() != dev {
        bail!(
            "{} is on another filesystem (still mounted?): not removed",
            path.display()
        );
    }
    if meta.is_dir() {
        for e in fs::read_dir(path)? {
            remove_same_dev(&e?.path(), dev)?;
        }
        fs::remove_dir(path)?;
    } else {
        fs::remove_file(path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_that_changed_the_image_gets_it_laid_out_anew_with_the_steps_additions() {
        let store = tempfile::tempdir().unwrap();
        let busybox = Path::new("/bin/busybox");
        assert!(busybox.exists(), "make deps installs busybox-static");
        let mut img = Image::new(store.path(), "alpine", busybox, busybox).unwrap();
        let text = crate::grade::invoke::random_word("t");
        img.add("data-x/marker", Some(&text), false).unwrap();
        img.add("volume", None, true).unwrap();
        assert!(!img.reset().unwrap(), "nothing changed: nothing to do");
        fs::write(img.rootfs.join("etc/resolv.conf"), "nameserver 1.1.1.1\n").unwrap();
        fs::write(img.rootfs.join("etc/hostname"), "changed\n").unwrap();
        assert!(img.reset().unwrap(), "a run added and changed files");
        assert!(!img.rootfs.join("etc/resolv.conf").exists());
        assert_eq!(
            fs::read_to_string(img.rootfs.join("etc/hostname")).unwrap(),
            "localhost\n"
        );
        assert_eq!(
            fs::read_to_string(img.rootfs.join("data-x/marker")).unwrap(),
            text
        );
        img.new_step().unwrap();
        assert!(
            !img.rootfs.join("data-x").exists(),
            "a step's additions end with it"
        );
        assert!(img.rootfs.join("volume").is_dir(), "kept additions stay");
    }

    #[test]
    fn a_runs_job_written_and_removed_again_leaves_nothing_to_lay_out() {
        let store = tempfile::tempdir().unwrap();
        let busybox = Path::new("/bin/busybox");
        let mut img = Image::new(store.path(), "alpine", busybox, busybox).unwrap();
        let job = img
            .rootfs
            .join(JOB_DIR)
            .join(crate::grade::invoke::random_word("grade-"));
        fs::create_dir_all(job.parent().unwrap()).unwrap();
        fs::write(&job, "hold\t-\t120\n").unwrap();
        fs::write(job.with_extension("ran"), "").unwrap();
        fs::remove_file(&job).unwrap();
        fs::remove_file(job.with_extension("ran")).unwrap();
        assert!(
            !img.reset().unwrap(),
            "the job directory belongs to the image"
        );
    }

    #[test]
    fn a_rootfs_key_lays_the_image_out_exactly_there_and_never_through_a_symlink() {
        let busybox = Path::new("/bin/busybox");
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("submission");
        fs::create_dir_all(&sub).unwrap();
        let name = crate::grade::invoke::random_word("fs");
        let beside = sub.join("kept");
        fs::write(&beside, &name).unwrap();
        let place = Place::key(&sub, Path::new(&format!("bundle/{name}")));
        let img = Image::at(place.clone(), busybox, busybox).unwrap();
        assert_eq!(img.rootfs, sub.join("bundle").join(&name));
        assert!(img.rootfs.join("bin/busybox").is_file());
        assert_eq!(
            fs::read_to_string(&beside).unwrap(),
            name,
            "only the rootfs is laid out"
        );
        // A run (root in the guest) swaps a directory on the way for a link elsewhere.
        let elsewhere = dir.path().join("elsewhere");
        fs::create_dir_all(elsewhere.join(&name)).unwrap();
        fs::write(elsewhere.join(&name).join("precious"), "x").unwrap();
        fs::remove_dir_all(sub.join("bundle")).unwrap();
        symlink(&elsewhere, sub.join("bundle")).unwrap();
        let err = format!("{:#}", Image::at(place, busybox, busybox).err().unwrap());
        assert!(err.contains("is a symbolic link"), "{err}");
        assert!(
            elsewhere.join(&name).join("precious").exists(),
            "never wiped through the link"
        );
        // The rootfs itself a link: the link goes, its target stays.
        let abs = dir.path().join(format!("abs-{name}"));
        symlink(&elsewhere, &abs).unwrap();
        let img = Image::at(Place::key(&sub, &abs), busybox, busybox).unwrap();
        assert!(!abs.symlink_metadata().unwrap().file_type().is_symlink());
        assert!(img.rootfs.join("etc/passwd").is_file());
        assert!(elsewhere.join(&name).join("precious").exists());
    }

    #[test]
    fn remove_tree_deletes_a_plain_tree_and_tolerates_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let t = dir.path().join("img");
        fs::create_dir_all(t.join("rootfs/etc")).unwrap();
        fs::write(t.join("rootfs/etc/x"), "x").unwrap();
        symlink("/etc/passwd", t.join("rootfs/link")).unwrap();
        remove_tree(&t).unwrap();
        assert!(!t.exists());
        remove_tree(&t).unwrap();
        assert!(
            fs::read_to_string("/etc/passwd").is_ok(),
            "a symlink's target is never followed"
        );
    }
}
