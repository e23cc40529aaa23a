//! The report pipe: the child's one line `CODE\tMESSAGE` when it fails before exec, read by the
//! parent up to EOF (a successful exec closes it) unless a forwarded signal comes first.

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::error::IoContext;
use crate::{Error, Result};

/// The byte an OCI container's init sends instead of a report once it is set up and waits for
/// `start` (a report line never starts with NUL).
pub(super) const READY: u8 = 0;

/// The byte an OCI container's init sends when it stops before its root switch for the
/// `create` hooks ([`crate::container::oci::hooks`]); the runtime answers on the sync pipe.
pub(super) const HOOK_POINT: u8 = 1;

/// Read the child's start-up report up to EOF (exec or death) or [`READY`] (an empty report:
/// success either way), unless one of `signals`
/// (blocked, see [`block_signals`]) arrives first: then that signal, as an error.
pub(super) fn read_report_unless_signalled(mut report: File, signals: &SigSet) -> Result<String> {
    let signalfd = SignalFd::with_flags(signals, SfdFlags::SFD_CLOEXEC).ctx(|| "signalfd")?;
    let mut bytes = Vec::new();
    loop {
        let mut fds = [
            PollFd::new(report.as_fd(), PollFlags::POLLIN),
            PollFd::new(signalfd.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(Error::io("poll the start-up report", e.into())),
        }
        let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
        let (report_ready, signal_ready) = (ready(&fds[0]), ready(&fds[1]));
        if report_ready {
            let mut chunk = [0u8; 4096];
            match report.read(&mut chunk) {
                Ok(0) => return Ok(String::from_utf8_lossy(&bytes).into_owned()),
                Ok(_) if bytes.is_empty() && chunk[0] == READY => return Ok(String::new()),
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("read the container's start-up report", e)),
            }
        } else if signal_ready {
            if let Some(info) = signalfd.read_signal().ctx(|| "read signalfd")? {
                let signal = Signal::try_from(info.ssi_signo as i32)
                    .map_err(|e| Error::io("decode signal", e.into()))?;
                return Err(Error::Interrupted(signal));
            }
        }
    }
}

/// Parse the child's one-line report into the error `main` maps to 125/126/127.
pub(super) fn decode_failure(report: &str) -> Error {
    let line = report.lines().next().unwrap_or_default();
    match line.split_once('\t') {
        Some(("127", what)) => Error::CommandNotFound(what.to_owned()),
        Some(("126", what)) => Error::NotExecutable(what.to_owned()),
        Some((_, message)) => Error::Runtime(message.to_owned()),
        None => Error::Runtime(line.to_owned()),
    }
}

/// The child's report line for `error` (see [`decode_failure`]).
pub(super) fn encode_failure(error: &Error) -> String {
    let payload = match error {
        Error::CommandNotFound(what) | Error::NotExecutable(what) => what.clone(),
        other => other.to_string(),
    };
    format!("{}\t{}\n", error.exit_code(), payload.replace('\n', " "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::fcntl::OFlag;
    use nix::sys::signal::SigmaskHow;
    use std::io::Write;

    fn only(signal: Signal) -> SigSet {
        let mut set = SigSet::empty();
        set.add(signal);
        set
    }

    #[test]
    fn start_up_report_is_read_to_eof() {
        let (rx, tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        let line = format!("125\tmount failed {}\n", std::process::id());
        File::from(tx).write_all(line.as_bytes()).unwrap();
        let report = read_report_unless_signalled(File::from(rx), &only(Signal::SIGHUP));
        assert_eq!(report.unwrap(), line);
    }

    /// A child stuck in set-up keeps its end of the pipe open forever: the signal wins.
    #[test]
    fn a_signal_interrupts_a_start_up_that_never_ends() {
        let set = only(Signal::SIGHUP);
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None).unwrap();
        let (rx, _tx_kept_open) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        // SAFETY: signals this very thread, which blocks SIGHUP.
        assert_eq!(
            unsafe { libc::pthread_kill(libc::pthread_self(), libc::SIGHUP) },
            0
        );
        let err = read_report_unless_signalled(File::from(rx), &set).unwrap_err();
        assert!(matches!(err, Error::Interrupted(Signal::SIGHUP)), "{err}");
        assert_eq!(err.exit_code(), 128 + libc::SIGHUP);
    }

    #[test]
    fn failure_report_round_trips_with_its_exit_code() {
        for error in [
            Error::CommandNotFound("nope".into()),
            Error::NotExecutable("/etc/passwd".into()),
            Error::Runtime("mount overlay: EPERM\nsecond line".into()),
        ] {
            let decoded = decode_failure(&encode_failure(&error));
            assert_eq!(decoded.exit_code(), error.exit_code());
            assert_eq!(decoded.to_string(), error.to_string().replace('\n', " "));
        }
    }
}
