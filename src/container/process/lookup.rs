//! The command's lookup, as a shell does it: a path when it has a '/', else through PATH;
//! not found is 127, found but not executable 126.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::{access, AccessFlags};

use crate::container::spec::DEFAULT_PATH;
use crate::{Error, Result};

/// The container's PATH (set by [`super::spec::merge_env`], docker's default otherwise).
pub(super) fn path_of(env: &[String]) -> String {
    env.iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH)
        .to_owned()
}

/// Resolve `command` like a shell does: as a path when it has a '/', else through `path`.
/// Not found anywhere → 127; found but not an executable file → 126.
pub fn find_executable(command: &str, path: &str) -> Result<CString> {
    if command.is_empty() {
        return Err(Error::CommandNotFound(command.to_owned()));
    }
    let found = if command.contains('/') {
        check_candidate(Path::new(command))
            .map(|()| PathBuf::from(command))
            .map_err(|kind| kind.into_error(command))?
    } else {
        search_path(command, path)?
    };
    CString::new(found.as_os_str().as_bytes())
        .map_err(|_| Error::CommandNotFound(command.to_owned()))
}

pub(super) fn search_path(command: &str, path: &str) -> Result<PathBuf> {
    let mut saw_non_executable = false;
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(command);
        match check_candidate(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(Lookup::NotExecutable) => saw_non_executable = true,
            Err(Lookup::NotFound) => {}
        }
    }
    let kind = if saw_non_executable {
        Lookup::NotExecutable
    } else {
        Lookup::NotFound
    };
    Err(kind.into_error(command))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lookup {
    NotFound,
    NotExecutable,
}

impl Lookup {
    fn into_error(self, command: &str) -> Error {
        match self {
            Lookup::NotFound => Error::CommandNotFound(command.to_owned()),
            Lookup::NotExecutable => Error::NotExecutable(command.to_owned()),
        }
    }
}

pub(super) fn check_candidate(path: &Path) -> std::result::Result<(), Lookup> {
    match std::fs::metadata(path) {
        Err(_) => Err(Lookup::NotFound),
        Ok(meta) if !meta.is_file() => Err(Lookup::NotExecutable),
        Ok(_) => match access(path, AccessFlags::X_OK) {
            Ok(()) => Ok(()),
            Err(_) => Err(Lookup::NotExecutable),
        },
    }
}

/// execve failed although the lookup succeeded (bad interpreter, wrong format...).
pub(super) fn exec_error(command: &str, errno: Errno) -> Error {
    match errno {
        Errno::ENOENT => Error::CommandNotFound(command.to_owned()),
        Errno::EACCES | Errno::ENOEXEC | Errno::EISDIR | Errno::EPERM | Errno::ETXTBSY => {
            Error::NotExecutable(command.to_owned())
        }
        other => Error::Runtime(format!("exec {command}: {}", other.desc())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn path_lookup_finds_first_executable() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::create_dir_all(&a).unwrap();
        fs::create_dir_all(&b).unwrap();
        fs::write(a.join("tool"), "data").unwrap(); // not executable
        fs::write(b.join("tool"), "#!/bin/true\n").unwrap();
        fs::set_permissions(b.join("tool"), fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("{}:{}", a.display(), b.display());
        let found = find_executable("tool", &path).unwrap();
        assert_eq!(found.to_str().unwrap(), b.join("tool").to_str().unwrap());
    }

    #[test]
    fn path_lookup_distinguishes_missing_from_not_executable() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("data"), "x").unwrap();
        fs::set_permissions(dir.path().join("data"), fs::Permissions::from_mode(0o644)).unwrap();
        let path = dir.path().display().to_string();
        assert_eq!(
            find_executable("missing", &path).unwrap_err().exit_code(),
            127
        );
        assert_eq!(find_executable("data", &path).unwrap_err().exit_code(), 126);
        let as_path = dir.path().join("data");
        assert_eq!(
            find_executable(as_path.to_str().unwrap(), "")
                .unwrap_err()
                .exit_code(),
            126
        );
        assert_eq!(
            find_executable(dir.path().to_str().unwrap(), "")
                .unwrap_err()
                .exit_code(),
            126,
            "a directory is not executable"
        );
        assert_eq!(
            find_executable("/no/such/file", "")
                .unwrap_err()
                .exit_code(),
            127
        );
    }

    #[test]
    fn exec_errors_map_to_126_and_127() {
        assert_eq!(exec_error("x", Errno::ENOENT).exit_code(), 127);
        assert_eq!(exec_error("x", Errno::ENOEXEC).exit_code(), 126);
        assert_eq!(exec_error("x", Errno::E2BIG).exit_code(), 125);
    }
}
