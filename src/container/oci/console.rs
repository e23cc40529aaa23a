//! `process.terminal` with `--console-socket PATH`, as runc does it: the caller (conmon,
//! containerd's shim) listens on a unix socket; the runtime connects to it before the
//! process is cloned, and the process, once inside the container (its devpts), allocates the
//! pty, sends the master there with `SCM_RIGHTS` (the pty's name as payload) and makes the
//! slave its controlling terminal and stdio ([`crate::container::tty::ChildTty`], the code
//! `run -t` uses). The runtime never touches the master: the caller owns the terminal.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use crate::container::tty::ChildTty;
use crate::{Error, Result};

/// The connected console socket for a process whose config says `terminal` (None: no
/// terminal). Both halves or neither: a terminal nobody receives, or a socket for a process
/// without one, is refused with one line (runc's rule for a detached process).
#[derive(Debug)]
pub struct Console {
    socket: OwnedFd,
    /// `/dev/console` is bound to the slave (a container's init, not an exec'd process).
    init: bool,
}

impl Console {
    /// Check `terminal` against `socket` and connect (before anything is created).
    pub fn connect(terminal: bool, socket: Option<&Path>, init: bool) -> Result<Option<Console>> {
        match (terminal, socket) {
            (false, None) => Ok(None),
            (true, None) => Err(Error::Usage(
                "process.terminal is true but no --console-socket was given: \
                 the terminal's master would have no receiver"
                    .into(),
            )),
            (false, Some(_)) => Err(Error::Usage(
                "--console-socket needs process.terminal true (exec: --tty)".into(),
            )),
            (true, Some(path)) => {
                let stream = UnixStream::connect(path)
                    .map_err(|e| Error::path("connect to the console socket", path, e))?;
                Ok(Some(Console {
                    socket: stream.into(),
                    init,
                }))
            }
        }
    }

    /// The process's side (its copy of the socket survives clone; closed once the master
    /// is sent, and close-on-exec anyway).
    pub fn child_side(&self) -> ChildTty {
        ChildTty::console_socket(self.socket.as_raw_fd(), self.init)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_and_socket_go_together() {
        assert!(Console::connect(false, None, true).unwrap().is_none());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sock");
        for (terminal, socket, needle) in [
            (true, None, "no --console-socket"),
            (false, Some(path.as_path()), "needs process.terminal"),
        ] {
            let err = Console::connect(terminal, socket, true).unwrap_err();
            assert!(err.to_string().contains(needle), "{err}");
            assert!(!err.to_string().contains('\n'));
            assert_eq!(err.exit_code(), 125);
        }
        let missing = Console::connect(true, Some(&path), false).unwrap_err();
        assert!(missing.to_string().contains("console socket"), "{missing}");
        let _listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        assert!(Console::connect(true, Some(&path), false)
            .unwrap()
            .is_some());
    }
}
