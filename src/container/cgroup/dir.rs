//! One cgroup directory and its control files. Every read and write the backends do goes
//! through [`CgroupDir`], so unit tests point it at a temp dir of fixture files (as youki's
//! libcgroups does) and assert exactly what would have been written to the kernel.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::{Error, Result};

/// How many times leftovers are killed and `rmdir` retried before giving up: the kernel
/// needs a moment to release a cgroup whose last task just exited (EBUSY meanwhile).
const REMOVE_ATTEMPTS: u32 = 100;
const RETRY_PAUSE: Duration = Duration::from_millis(10);

/// A cgroup directory (on cgroupfs, or a fixture directory in unit tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupDir {
    path: PathBuf,
}

impl CgroupDir {
    /// Wrap an existing directory.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CgroupDir { path: path.into() }
    }

    /// `mkdir` a new cgroup; fails if it exists (ids are unique, a clash is a bug to report).
    pub fn create(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        fs::create_dir(&path).map_err(|e| Error::path("create cgroup", &path, e))?;
        Ok(CgroupDir { path })
    }

    /// Where it is, for messages and for the host-side view.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a control file exists: optional files (swap, `cgroup.kill`) depend on the kernel.
    pub fn has(&self, file: &str) -> bool {
        self.path.join(file).is_file()
    }

    /// Write a control file. Never creates it: on cgroupfs the kernel owns the files, and a
    /// missing one means the controller is absent, which must be an error, not a new file.
    pub fn write(&self, file: &str, value: &str) -> Result<()> {
        let path = self.path.join(file);
        let mut f = OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| Error::path("open cgroup file", &path, e))?;
        f.write_all(value.as_bytes())
            .map_err(|e| Error::io(format!("write {value:?} to {}", path.display()), e))
    }

    /// Read a control file.
    pub fn read(&self, file: &str) -> Result<String> {
        let path = self.path.join(file);
        fs::read_to_string(&path).map_err(|e| Error::path("read cgroup file", &path, e))
    }

    /// The value of `key` in a flat-keyed file (`memory.events`, `memory.oom_control`,
    /// `cpu.stat`); `None` when the file or the key is missing.
    pub fn read_key(&self, file: &str, key: &str) -> Option<u64> {
        let text = self.read(file).ok()?;
        text.lines().find_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == key).then(|| words.next()?.parse().ok())?
        })
    }

    /// A single-number file (`memory.failcnt`).
    pub fn read_number(&self, file: &str) -> Option<u64> {
        self.read(file).ok()?.trim().parse().ok()
    }

    /// Pids of the processes in this cgroup.
    pub fn pids(&self) -> Vec<i32> {
        self.read("cgroup.procs")
            .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Put a process in this cgroup.
    pub fn add(&self, pid: i32) -> Result<()> {
        self.write("cgroup.procs", &pid.to_string())
    }

    /// SIGKILL whatever still runs here or in a sub-cgroup: `cgroup.kill` on v2 when the
    /// kernel has it (atomic, covers the subtree, wins against forks), else every pid listed
    /// in the `cgroup.procs` of each cgroup of the subtree.
    pub fn kill_all(&self) {
        if self.has("cgroup.kill") && self.write("cgroup.kill", "1").is_ok() {
            return;
        }
        // pid 0 or 1 in a listing would be a corrupt read; never signal init or ourselves.
        let me = std::process::id() as i32;
        for dir in self.subtree() {
            for pid in dir.pids().into_iter().filter(|&p| p > 1 && p != me) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }

    /// This cgroup and every sub-cgroup the container made in it (a cgroup's subdirectories
    /// are its children), deepest first: the order `rmdir` needs.
    pub fn subtree(&self) -> Vec<CgroupDir> {
        let mut out = Vec::new();
        if let Ok(entries) = fs::read_dir(&self.path) {
            for entry in entries.flatten() {
                // DirEntry::file_type does not follow symlinks: only real child cgroups.
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    out.extend(CgroupDir::new(entry.path()).subtree());
                }
            }
        }
        out.push(self.clone());
        out
    }

    /// Kill leftovers (in sub-cgroups too), then `rmdir` the subtree bottom-up, retrying
    /// briefly while the kernel still reports EBUSY. An already-removed cgroup is fine (a
    /// concurrent reclaim may have won).
    pub fn remove(&self) -> io::Result<()> {
        let mut attempt = 0;
        loop {
            self.kill_all();
            match self.subtree().iter().try_for_each(|dir| dir.remove_one()) {
                Ok(()) => return Ok(()),
                Err(e) if is_busy(&e) && attempt < REMOVE_ATTEMPTS => {
                    attempt += 1;
                    sleep(RETRY_PAUSE);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `rmdir` this cgroup alone (its children must be gone).
    fn remove_one(&self) -> io::Result<()> {
        match fs::remove_dir(&self.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other,
        }
    }
}

fn is_busy(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EBUSY)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A cgroup directory of fixture files in a temp dir (no root, no real cgroup needed).
    pub(crate) fn fixture(files: &[(&str, &str)]) -> (tempfile::TempDir, CgroupDir) {
        let tmp = tempfile::tempdir().unwrap();
        for (name, content) in files {
            fs::write(tmp.path().join(name), content).unwrap();
        }
        let dir = CgroupDir::new(tmp.path());
        (tmp, dir)
    }

    #[test]
    fn write_replaces_existing_file_content() {
        let (_tmp, dir) = fixture(&[("memory.max", "max\n")]);
        dir.write("memory.max", "1048576").unwrap();
        assert_eq!(dir.read("memory.max").unwrap(), "1048576");
    }

    #[test]
    fn write_never_creates_a_control_file() {
        let (_tmp, dir) = fixture(&[]);
        let err = dir.write("pids.max", "10").unwrap_err();
        assert!(err.to_string().contains("pids.max"), "{err}");
        assert!(!dir.has("pids.max"));
    }

    #[test]
    fn flat_keyed_files_are_read_by_key() {
        let (_tmp, dir) = fixture(&[(
            "memory.events",
            "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n",
        )]);
        assert_eq!(dir.read_key("memory.events", "oom_kill"), Some(1));
        assert_eq!(dir.read_key("memory.events", "oom"), Some(2));
        assert_eq!(dir.read_key("memory.events", "absent"), None);
        assert_eq!(dir.read_key("nofile", "oom_kill"), None);
    }

    #[test]
    fn procs_are_listed() {
        let (_tmp, dir) = fixture(&[("cgroup.procs", "12\n345\n")]);
        assert_eq!(dir.pids(), vec![12, 345]);
    }

    #[test]
    fn remove_takes_sub_cgroups_deepest_first() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().join("c");
        let deep = top.join(format!("a{}", std::process::id())).join("b");
        fs::create_dir_all(&deep).unwrap();
        fs::create_dir_all(top.join("sibling")).unwrap();
        let dir = CgroupDir::new(&top);
        let order = dir.subtree();
        assert_eq!(order.last(), Some(&dir));
        let pos = |p: &Path| order.iter().position(|d| d.path() == p).unwrap();
        assert!(pos(&deep) < pos(deep.parent().unwrap()));
        dir.remove().unwrap();
        assert!(!top.exists());
    }

    #[test]
    fn remove_of_missing_dir_is_ok() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CgroupDir::new(tmp.path().join("gone"));
        dir.remove().unwrap();
    }
}
