//! An OCI container's state on disk: `<root>/.oci/<id>/` holds `state.json` (what `create`
//! learnt: pid, its start time, bundle, cgroup directories...) and, until `start`, the
//! `exec.fifo` the init waits on. The status is never stored: it is read from the kernel each
//! time (the init alive with the same start time, and the FIFO still there), so a container
//! that died while nobody watched is simply `stopped`.

use std::collections::BTreeMap;
use std::fs;
use std::io::{ErrorKind, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Paths;
use crate::{Error, Result};

/// The OCI runtime spec version this runtime implements (runc's `spec:` line, `state`'s
/// `ociVersion`).
pub const OCI_VERSION: &str = "1.1.0";

/// The FIFO `start` writes to.
pub const EXEC_FIFO: &str = "exec.fifo";
const STATE_FILE: &str = "state.json";

/// The spec's container statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Creating,
    Created,
    Running,
    Stopped,
}

impl Status {
    /// The spec's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Stopped => "stopped",
        }
    }
}

/// What `create` records.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    /// The init's pid in the runtime's PID namespace.
    pub pid: i32,
    /// Its start time (`/proc/<pid>/stat` field 22): a recycled pid never passes for it.
    pub start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339.
    pub created: String,
    pub annotations: BTreeMap<String, String>,
    /// Its cgroup directories, removed by `delete`.
    pub cgroup_paths: Vec<PathBuf>,
    /// Without a mount namespace of its own: the mounts made for it in the host's table,
    /// unmounted by `delete` ([`super::host_mounts`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_mounts: Vec<super::host_mounts::HostMount>,
}

/// One container's state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    pub id: String,
    pub dir: PathBuf,
}

impl StateDir {
    /// Where container `id` lives (nothing checked or created).
    pub fn of(paths: &Paths, id: &str) -> Result<StateDir> {
        check_id(id)?;
        Ok(StateDir {
            id: id.to_owned(),
            dir: paths.oci_dir().join(id),
        })
    }

    /// Claim the id: `mkdir` is atomic, so of two `create`s of one id exactly one wins and
    /// the other changes nothing.
    pub fn claim(&self) -> Result<()> {
        let parent = self.dir.parent().unwrap_or(Path::new("/"));
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(parent)
            .map_err(|e| Error::path("create", parent, e))?;
        match fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(Error::Usage(format!(
                "container {} already exists",
                self.id
            ))),
            Err(e) => Err(Error::path("create", &self.dir, e)),
        }
    }

    pub fn fifo(&self) -> PathBuf {
        self.dir.join(EXEC_FIFO)
    }

    /// Whether the id is taken.
    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    /// The record, or the spec's `container does not exist` (podman and containerd match it);
    /// `None` while `create` is still at work (no record yet).
    pub fn load(&self) -> Result<Option<Record>> {
        if !self.exists() {
            return Err(Error::Usage(format!(
                "container does not exist: {}",
                self.id
            )));
        }
        match fs::read(self.dir.join(STATE_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::Runtime(format!("state of container {} is corrupt: {e}", self.id))
            }),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::path("read", self.dir.join(STATE_FILE), e)),
        }
    }

    /// Write the record atomically (a reader sees the old one or the new one).
    pub fn save(&self, record: &Record) -> Result<()> {
        let bytes =
            serde_json::to_vec(record).map_err(|e| Error::Runtime(format!("encode state: {e}")))?;
        write_atomically(&self.dir.join(STATE_FILE), &bytes)
    }

    /// The status now: `creating` without a record, else from the kernel.
    pub fn status(&self, record: Option<&Record>) -> Status {
        match record {
            None => Status::Creating,
            Some(r) if !is_alive(r.pid, r.start_time) => Status::Stopped,
            Some(_) if self.fifo().exists() => Status::Created,
            Some(_) => Status::Running,
        }
    }

    /// Remove the state directory (its FIFO and record).
    pub fn remove(&self) -> Result<()> {
        match fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(Error::path("remove", &self.dir, e)),
            _ => Ok(()),
        }
    }
}

/// runc's rule for ids (`[\w+-.]`, not `.` or `..`): one path component, anywhere.
pub fn check_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "invalid container id {id:?}: letters, digits, '_', '+', '-' and '.' only"
        )))
    }
}

/// `path` replaced in one rename, from a temporary file beside it.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.{}", std::process::id()));
    let written = fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| fs::rename(&tmp, path));
    written.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::path("write", path, e)
    })
}

/// `pid`'s state letter and start time from `/proc/<pid>/stat`.
fn stat_of(pid: i32) -> Option<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// The start time of a live `pid` (None when gone), for [`Record::start_time`].
pub fn start_time(pid: i32) -> Option<u64> {
    stat_of(pid).map(|(_, start)| start)
}

/// Whether `pid` is the same process, alive (a zombie waiting for its reaper is stopped).
pub fn is_alive(pid: i32, start_time: u64) -> bool {
    pid > 0
        && matches!(stat_of(pid), Some((state, start)) if start == start_time && !matches!(state, 'Z' | 'X'))
}

/// Now, as RFC 3339 with nanoseconds (runc's `created`).
pub fn now_rfc3339() -> String {
    chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now())
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_one_safe_path_component() {
        for good in ["a", "web-1.x_y+z", "0"] {
            check_id(good).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "a b", "é"] {
            assert_eq!(check_id(bad).unwrap_err().exit_code(), 125, "{bad:?}");
        }
    }

    #[test]
    fn our_own_process_is_alive_and_a_wrong_start_time_is_not() {
        let me = std::process::id() as i32;
        let start = start_time(me).unwrap();
        assert!(is_alive(me, start));
        assert!(!is_alive(me, start + 1));
        assert!(!is_alive(0, 0));
    }

    #[test]
    fn created_is_rfc3339_utc() {
        let t = now_rfc3339();
        assert!(chrono::DateTime::parse_from_rfc3339(&t).is_ok(), "{t}");
        assert!(t.ends_with('Z'), "{t}");
    }
}
