//! `-t/--tty` and `-i/--interactive`: a terminal owned by the container, as docker gives one.
//!
//! The pty lives in the container's own devpts instance (so inside, `tty` says `/dev/pts/0` and
//! the host's ptys stay invisible): the child allocates it once its `/dev` is populated, binds
//! the slave on `/dev/console`, makes it its controlling terminal and stdio, and hands the
//! master to the runtime over a socketpair (`SCM_RIGHTS`, as runc's console socket). The
//! runtime receives it once the command exec'd and relays, on a thread of its own, between
//! its stdio and the master, while the main thread keeps waiting and forwarding signals as
//! without `-t`. Without `-t` nothing here runs: stdio stays the runtime's own.

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::mount::{mount, MsFlags};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt, Winsize};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};

use crate::error::IoContext;
use crate::{Error, Result};

nix::ioctl_read_bad!(get_winsize, libc::TIOCGWINSZ, Winsize);
nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, Winsize);
nix::ioctl_write_int_bad!(set_controlling_tty, libc::TIOCSCTTY);

/// How much output a stopped relay still drains (the container is gone: only what it wrote
/// before dying is left; a slave kept open elsewhere must not hold the runtime).
const DRAIN_IDLE: Duration = Duration::from_millis(100);
const DRAIN_MAX: Duration = Duration::from_secs(2);

/// What `-t`/`-i` asked for, checked before anything is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtyMode {
    /// `-i`: the runtime's stdin is relayed to the pty (and a terminal on it goes raw).
    pub interactive: bool,
}

/// `-t`/`-i` as given → the mode (None: no pty, stdio as today; `-i` alone changes nothing,
/// stdin is always shared then). `-it` with a stdin that is not a terminal is refused, as
/// docker does ("the input device is not a TTY"): raw mode and Ctrl-C need one.
pub fn mode(tty: bool, interactive: bool) -> Result<Option<TtyMode>> {
    if !tty {
        return Ok(None);
    }
    if interactive && !is_terminal(std::io::stdin().as_fd()) {
        return Err(Error::Usage(
            "the input device is not a TTY: -i with -t needs a terminal on stdin (drop -t to pipe input)"
                .into(),
        ));
    }
    Ok(Some(TtyMode { interactive }))
}

fn is_terminal(fd: BorrowedFd) -> bool {
    nix::unistd::isatty(fd).unwrap_or(false)
}

/// The host terminal whose size the container's pty copies: stdin's, else stdout's.
fn host_terminal() -> Option<BorrowedFd<'static>> {
    // SAFETY: fds 0 and 1 stay open for the runtime's whole life (never closed by it).
    let (stdin, stdout) = unsafe { (BorrowedFd::borrow_raw(0), BorrowedFd::borrow_raw(1)) };
    [stdin, stdout].into_iter().find(|fd| is_terminal(*fd))
}

fn winsize_of(fd: BorrowedFd) -> Option<Winsize> {
    let mut size = Winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills a winsize we own.
    unsafe { get_winsize(fd.as_raw_fd(), &mut size) }.ok()?;
    Some(size)
}

/// The runtime's side, created before clone: the socket the master arrives on.
#[derive(Debug)]
pub struct Tty {
    mode: TtyMode,
    receiver: OwnedFd,
    sender: OwnedFd,
    winsize: Option<(u16, u16)>,
}

/// What the child needs (its copy of the socket, the initial size), copied into its config.
#[derive(Debug, Clone, Copy)]
pub struct ChildTty {
    sender: RawFd,
    winsize: Option<(u16, u16)>,
    /// Bind the slave on `/dev/console` (a container's init; not a process exec'd later).
    console: bool,
}

impl Tty {
    /// Before clone: the socketpair and the host terminal's size (set before the command
    /// starts). SIGWINCH is blocked from now on so a resize before the relay runs stays
    /// pending for it (the child resets its mask before exec).
    pub fn prepare(mode: TtyMode) -> Result<Tty> {
        let (receiver, sender) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .ctx(|| "socketpair for the container's terminal")?;
        let mut winch = SigSet::empty();
        winch.add(Signal::SIGWINCH);
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&winch), None)
            .ctx(|| "block SIGWINCH")?;
        let winsize = host_terminal()
            .and_then(winsize_of)
            .map(|w| (w.ws_row, w.ws_col));
        Ok(Tty {
            mode,
            receiver,
            sender,
            winsize,
        })
    }

    /// The child's part of it (for [`super::process::ChildConfig`]).
    pub fn child_side(&self) -> ChildTty {
        ChildTty {
            sender: self.sender.as_raw_fd(),
            winsize: self.winsize,
            console: true,
        }
    }

    /// After the command exec'd: take the master (sent before exec, so already queued), put
    /// the host terminal in raw mode with `-i`, and start relaying. Dropping the [`Relay`]
    /// stops it and restores the terminal.
    pub fn attach(self) -> Result<Relay> {
        drop(self.sender);
        let master = receive_fd(&self.receiver)?;
        fcntl(&master, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).ctx(|| "pty master non-blocking")?;
        let raw = match self.mode.interactive {
            true => RawMode::enter()?,
            false => None,
        };
        let winch = match host_terminal() {
            Some(_) => Some(winch_fd()?),
            None => None,
        };
        let (stop_rx, stop_tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "pipe")?;
        let interactive = self.mode.interactive;
        let thread = std::thread::Builder::new()
            .name("tty-relay".into())
            .spawn(move || relay(master, interactive, winch, stop_rx))
            .ctx(|| "start the terminal relay")?;
        Ok(Relay {
            stop: Some(stop_tx),
            thread: Some(thread),
            _raw: raw,
        })
    }
}

fn winch_fd() -> Result<SignalFd> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGWINCH);
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).ctx(|| "signalfd")
}

fn receive_fd(socket: &OwnedFd) -> Result<OwnedFd> {
    // The payload is the pty's name (runc's console socket message); only the fd matters here.
    let mut name = [0u8; 128];
    let mut iov = [std::io::IoSliceMut::new(&mut name)];
    let mut space = nix::cmsg_space!(RawFd);
    let msg = recvmsg::<()>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .ctx(|| "receive the container's terminal")?;
    for cmsg in msg.cmsgs().ctx(|| "decode the container's terminal")? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(&fd) = fds.first() {
                // SAFETY: SCM_RIGHTS just installed this descriptor in our table; we own it.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    Err(Error::Runtime(
        "the container did not hand over its terminal".into(),
    ))
}

impl ChildTty {
    /// An OCI console socket (`--console-socket`, connected by the runtime): the master goes
    /// there, named by its pty path as runc sends it; `console`: the init's `/dev/console`.
    pub fn console_socket(socket: RawFd, console: bool) -> ChildTty {
        ChildTty {
            sender: socket,
            winsize: None,
            console,
        }
    }

    /// In the child, after `/dev` is populated and before exec: allocate the pty in the
    /// container's devpts, bind the slave on `/dev/console`, set the initial size, send the
    /// master (with the pty's name as payload) to the runtime or the console socket, then
    /// become a session leader with the slave as controlling terminal and stdin/stdout/stderr.
    pub fn set_up(&self) -> Result<()> {
        let flags = OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
        let master = posix_openpt(flags).ctx(|| "open /dev/ptmx")?;
        grantpt(&master).ctx(|| "grantpt")?;
        unlockpt(&master).ctx(|| "unlockpt")?;
        let name = ptsname_r(&master).ctx(|| "ptsname")?;
        let slave = nix::fcntl::open(name.as_str(), flags, nix::sys::stat::Mode::empty())
            .ctx(|| format!("open {name}"))?;
        if let Some((rows, cols)) = self.winsize {
            let size = Winsize {
                ws_row: rows,
                ws_col: cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            };
            // SAFETY: TIOCSWINSZ reads a winsize we own.
            unsafe { set_winsize(slave.as_raw_fd(), &size) }.ctx(|| "set the terminal size")?;
        }
        if self.console {
            bind_console(&name)?;
        }
        let fds = [master.as_raw_fd()];
        sendmsg::<()>(
            self.sender,
            &[IoSlice::new(name.as_bytes())],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .ctx(|| "send the terminal's master")?;
        drop(master);
        // SAFETY: the child's own copy of the socket, never used again (the receiver waits
        // for nothing more, and the command must not inherit it).
        unsafe { libc::close(self.sender) };
        nix::unistd::setsid().ctx(|| "setsid")?;
        // SAFETY: plain ioctl on a descriptor we own; 0 = do not steal it from another session.
        unsafe { set_controlling_tty(slave.as_raw_fd(), 0) }.ctx(|| "TIOCSCTTY")?;
        for target in 0..=2 {
            // SAFETY: dup2 onto the standard descriptors; `slave` stays owned and is closed
            // on exec (O_CLOEXEC), the copies are not.
            if unsafe { libc::dup2(slave.as_raw_fd(), target) } < 0 {
                return Err(Error::io(
                    "dup2 the terminal",
                    std::io::Error::last_os_error(),
                ));
            }
        }
        Ok(())
    }
}

/// `/dev/console` is the container's terminal (runc's way: a bind of the slave).
fn bind_console(slave: &str) -> Result<()> {
    let console = "/dev/console";
    std::fs::File::create(console).ctx(|| format!("create {console}"))?;
    mount(
        Some(slave),
        console,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .ctx(|| format!("bind {slave} on {console}"))
}

/// The host terminal in raw mode (keys, Ctrl-C included, go to the container as bytes); the
/// saved settings come back when dropped, on every way out of `run`.
#[derive(Debug)]
struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Raw mode on stdin when it is a terminal (else nothing to do).
    fn enter() -> Result<Option<RawMode>> {
        let stdin = std::io::stdin();
        if !is_terminal(stdin.as_fd()) {
            return Ok(None);
        }
        let saved = tcgetattr(stdin.as_fd()).ctx(|| "read the terminal's settings")?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ctx(|| "terminal raw mode")?;
        Ok(Some(RawMode { saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSADRAIN, &self.saved);
    }
}

/// The running relay. Dropping it stops the thread (after the container's last output is
/// drained) and then restores the host terminal: fields drop after [`Drop::drop`].
#[derive(Debug)]
pub struct Relay {
    stop: Option<OwnedFd>,
    thread: Option<JoinHandle<()>>,
    _raw: Option<RawMode>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        drop(self.stop.take()); // EOF on the stop pipe: drain, then end
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Copy the master to stdout, stdin (with `-i`) to the master, and the host terminal's size
/// on each SIGWINCH; until the slave is gone everywhere (EIO), or the stop pipe closed and
/// the remaining output is drained.
fn relay(master: OwnedFd, interactive: bool, winch: Option<SignalFd>, stop: OwnedFd) {
    // SAFETY: the runtime never closes its stdio.
    let (stdin, stdout) = unsafe { (BorrowedFd::borrow_raw(0), BorrowedFd::borrow_raw(1)) };
    let mut stdin_open = interactive;
    let mut pending: Vec<u8> = Vec::new();
    let mut stopping: Option<Instant> = None;
    let mut buf = [0u8; 16384];
    loop {
        let mut master_events = PollFlags::POLLIN;
        if !pending.is_empty() {
            master_events |= PollFlags::POLLOUT;
        }
        let read_stdin = stdin_open && pending.is_empty() && stopping.is_none();
        let mut fds = vec![PollFd::new(master.as_fd(), master_events)];
        let stop_at = push(&mut fds, stopping.is_none().then(|| stop.as_fd()));
        let stdin_at = push(&mut fds, read_stdin.then_some(stdin));
        let winch_at = push(&mut fds, winch.as_ref().map(|w| w.as_fd()));
        let timeout = match stopping {
            Some(_) => PollTimeout::try_from(DRAIN_IDLE).unwrap_or(PollTimeout::ZERO),
            None => PollTimeout::NONE,
        };
        match poll(&mut fds, timeout) {
            Ok(0) if stopping.is_some() => return,
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return,
        }
        let ready = |at: Option<usize>| {
            at.and_then(|i| fds[i].revents())
                .is_some_and(|r| !r.is_empty())
        };
        let (master_ready, stop_ready) = (ready(Some(0)), ready(stop_at));
        let (stdin_ready, winch_ready) = (ready(stdin_at), ready(winch_at));
        drop(fds);
        if master_ready {
            if !pending.is_empty() {
                match nix::unistd::write(&master, &pending) {
                    Ok(n) => drop(pending.drain(..n)),
                    Err(Errno::EAGAIN | Errno::EINTR) => {}
                    Err(_) => pending.clear(),
                }
            }
            match nix::unistd::read(&master, &mut buf) {
                Ok(0) | Err(Errno::EIO) => return, // no slave left anywhere
                Ok(n) => write_all(stdout, &buf[..n]),
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                Err(_) => return,
            }
        }
        if stdin_ready {
            match nix::unistd::read(stdin, &mut buf) {
                Ok(0) | Err(_) => stdin_open = false,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
        }
        if winch_ready {
            if let Some(w) = &winch {
                while let Ok(Some(_)) = w.read_signal() {}
            }
            copy_winsize(&master);
        }
        if stop_ready {
            stopping = Some(Instant::now());
        }
        if stopping.is_some_and(|since| since.elapsed() > DRAIN_MAX) {
            return;
        }
    }
}

/// Append `fd` to the poll set when there is one; its index.
fn push<'fd>(fds: &mut Vec<PollFd<'fd>>, fd: Option<BorrowedFd<'fd>>) -> Option<usize> {
    let fd = fd?;
    fds.push(PollFd::new(fd, PollFlags::POLLIN));
    Some(fds.len() - 1)
}

/// The host terminal's size onto the pty (the kernel then sends SIGWINCH inside).
fn copy_winsize(master: &OwnedFd) {
    if let Some(size) = host_terminal().and_then(winsize_of) {
        // SAFETY: TIOCSWINSZ reads a winsize we own.
        let _ = unsafe { set_winsize(master.as_raw_fd(), &size) };
    }
}

/// Write everything to the runtime's stdout; output nobody reads any more is dropped, so the
/// container never blocks on it.
fn write_all(fd: BorrowedFd, mut data: &[u8]) {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(0) => return,
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_tty_means_no_pty_whatever_interactive_says() {
        assert_eq!(mode(false, false).unwrap(), None);
        assert_eq!(mode(false, true).unwrap(), None);
        assert_eq!(
            mode(true, false).unwrap(),
            Some(TtyMode { interactive: false })
        );
    }
}
