//! The runtime on an outer pseudo-terminal the test owns (its stdio and controlling terminal,
//! as a user's terminal emulator would be): type, read the screen, resize, read its settings,
//! wait for the exit code. Used by the interactive and `-t/--tty` tests.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use nix::pty::{openpty, Winsize};

use super::run::{run_args, type_into, wait_bounded, Arranged};
use super::{kill_tree, random_in, TestRoot};

/// How long a terminal test waits for an answer on the screen. Generous: the suite also runs in
/// a slow emulated VM.
pub const SCREEN_TIMEOUT: Duration = Duration::from_secs(30);

nix::ioctl_write_ptr_bad!(set_winsize, libc::TIOCSWINSZ, Winsize);

fn winsize(rows: u16, cols: u16) -> Winsize {
    Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// The runtime on an outer pseudo-terminal, with everything it printed so far.
pub struct Terminal {
    child: Child,
    master: OwnedFd,
    keyboard: File,
    /// The outer terminal's slave, for `stty -a -F` from the host.
    slave_path: PathBuf,
    screen: Receiver<Vec<u8>>,
    /// Everything the runtime printed so far (for failure messages).
    pub transcript: String,
    /// Where the next `expect` starts looking, so an old answer is never matched twice.
    seen: usize,
    /// What Enter sends: a newline, or a carriage return once the runtime made the terminal raw.
    enter: &'static str,
}

impl Terminal {
    /// Start `devoxx-docker ARGS` in a new session whose controlling terminal is a fresh pty
    /// of `rows`×`cols`.
    pub fn spawn(root: &TestRoot, args: &[&str], rows: u16, cols: u16) -> Self {
        let pty = openpty(Some(&winsize(rows, cols)), None).expect("openpty");
        let slave: OwnedFd = pty.slave;
        let slave_path = std::fs::read_link(format!("/proc/self/fd/{}", slave.as_raw_fd()))
            .expect("outer slave path");
        let mut cmd = root.std_cmd();
        cmd.args(args)
            .stdin(Stdio::from(slave.try_clone().expect("dup")))
            .stdout(Stdio::from(slave.try_clone().expect("dup")))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn runtime on a pty");
        drop(cmd); // closes our copies of the slave: EIO on the master once the runtime is gone
        let keyboard = File::from(pty.master.try_clone().expect("dup master"));
        let screen = read_master(File::from(pty.master.try_clone().expect("dup master")));
        Terminal {
            child,
            master: pty.master,
            keyboard,
            slave_path,
            screen,
            transcript: String::new(),
            seen: 0,
            enter: "\n",
        }
    }

    /// Enter as a carriage return: in raw mode the outer terminal passes bytes as typed.
    pub fn raw(mut self) -> Self {
        self.enter = "\r";
        self
    }

    /// Type `text`, then Enter.
    pub fn type_line(&mut self, text: &str) {
        type_into(&mut self.keyboard, &format!("{text}{}", self.enter));
    }

    pub fn type_raw(&mut self, bytes: &str) {
        type_into(&mut self.keyboard, bytes);
    }

    /// Resize the outer terminal (the kernel sends SIGWINCH to the runtime, its foreground).
    pub fn resize(&self, rows: u16, cols: u16) {
        // SAFETY: TIOCSWINSZ reads a winsize we own.
        unsafe { set_winsize(self.master.as_raw_fd(), &winsize(rows, cols)) }.expect("resize");
    }

    /// The outer terminal's settings as `stty -a` (the host's) prints them.
    pub fn stty(&self) -> String {
        let out = Command::new("stty")
            .arg("-a")
            .arg("-F")
            .arg(&self.slave_path)
            .output()
            .expect("run stty");
        assert!(out.status.success(), "stty -a: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Wait until `needle` shows up on the screen after the last match.
    pub fn expect(&mut self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(at) = self.transcript[self.seen..].find(needle) {
                self.seen += at + needle.len();
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.screen.recv_timeout(left) {
                Ok(chunk) => self.transcript.push_str(&String::from_utf8_lossy(&chunk)),
                Err(_) => panic!("{needle:?} never appeared; screen:\n{}", self.transcript),
            }
        }
    }

    /// Ctrl-D at the prompt until the runtime exits (bounded): busybox's line editor can drop
    /// a byte typed while it switches the terminal mode (seen once under TCG), and a repeated
    /// Ctrl-D on an empty line changes nothing else. Its exit code.
    pub fn eof_until_exit(&mut self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            self.type_raw("\x04");
            let window =
                Duration::from_secs(3).min(deadline.saturating_duration_since(Instant::now()));
            let until = Instant::now() + window;
            while Instant::now() < until {
                if let Ok(Some(status)) = self.child.try_wait() {
                    return status
                        .code()
                        .unwrap_or_else(|| panic!("runtime died of a signal: {status:?}"));
                }
                thread::sleep(Duration::from_millis(10));
            }
            if Instant::now() >= deadline {
                return self.wait(Duration::ZERO);
            }
        }
    }

    /// Wait (bounded) for the runtime to exit; its exit code.
    pub fn wait(&mut self, timeout: Duration) -> i32 {
        let status = wait_bounded(&mut self.child, timeout)
            .unwrap_or_else(|| panic!("runtime still running; screen:\n{}", self.transcript));
        status
            .code()
            .unwrap_or_else(|| panic!("runtime died of a signal: {status:?}"))
    }

    /// The runtime's pid (to signal it from outside).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Type `exit CODE` to the shell and wait for the run to end: its exit code.
    pub fn type_exit(&mut self, code: u64) -> i32 {
        self.type_line(&format!("exit {code}"));
        self.wait(SCREEN_TIMEOUT)
    }

    /// Ctrl-C a foreground job of the shell on this terminal: a `sh -c` that prints a sum and
    /// then sleeps with `tag` on its command line. Only a shell that survived and regained the
    /// terminal answers next, with the job's status: 130, it died of SIGINT.
    pub fn interrupt_a_foreground_job(&mut self, tag: &str) {
        let (a, b) = (random_in(1000..=999_999), random_in(1000..=999_999));
        self.type_line(&format!(
            "/bin/sh -c 'echo {tag}$(({a}+{b})){tag}; exec /bin/probe sleep 60 {tag}'"
        ));
        self.expect(&format!("{tag}{}{tag}", a + b), SCREEN_TIMEOUT);
        self.type_raw("\x03");
        self.type_line(&format!("echo {tag}-$?-$(({a}-{b}))"));
        self.expect(
            &format!("{tag}-130-{}", a as i64 - b as i64),
            SCREEN_TIMEOUT,
        );
    }

    /// Have the shell print `{tag}42` (computed, so the echoed typed line cannot match) and then
    /// `exec` a long sleep carrying `tag`: the container's PID 1 is then the sleeper.
    pub fn exec_a_sleeper(&mut self, tag: &str) {
        self.type_line(&format!(
            "echo {tag}$((6*7)); exec /bin/probe sleep 600 {tag}"
        ));
        self.expect(&format!("{tag}42"), SCREEN_TIMEOUT);
    }
}

impl Arranged {
    /// `run OPTIONS IMAGE COMMAND` on a fresh outer terminal of `rows`×`cols`.
    pub fn terminal(&self, options: &[&str], command: &[&str], rows: u16, cols: u16) -> Terminal {
        Terminal::spawn(
            &self.root,
            &run_args(options, &self.img, command),
            rows,
            cols,
        )
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            kill_tree(self.child.id() as i32);
            let _ = self.child.wait();
        }
    }
}

/// Pump the pty master into a channel until EOF/EIO (the last slave holder exited).
fn read_master(mut master: File) -> Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        use std::io::Read;
        let mut buf = [0u8; 4096];
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    rx
}
