//! Workshop step "interactive": a shell in the container driven through a real pseudo-terminal
//! (openpty; the runtime's stdio is the pty slave and its controlling terminal), as a user at
//! a keyboard would: type, read the answer, Ctrl-C, exit with a code.

use crate::common;

use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use common::run::*;
use common::*;
use nix::pty::{openpty, Winsize};
use serde_json::json;

/// The standard test image: busybox + probe, PATH set, a shell as default command.
fn image(root: &TestRoot) -> (String, String) {
    root.install_image(json!({"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]}))
}

/// The runtime running on a pseudo-terminal, with everything it printed so far.
struct Terminal {
    child: Child,
    keyboard: File,
    screen: Receiver<Vec<u8>>,
    transcript: String,
    /// Where the next `expect` starts looking, so an old answer is never matched twice.
    seen: usize,
}

impl Terminal {
    /// Start `devoxx-docker ARGS` in a new session whose controlling terminal is a fresh pty.
    fn spawn(root: &TestRoot, args: &[&str]) -> Self {
        let size = Winsize {
            ws_row: 24,
            ws_col: 120,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = openpty(Some(&size), None).expect("openpty");
        let slave: OwnedFd = pty.slave;
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
        let screen = read_master(File::from(pty.master));
        Terminal {
            child,
            keyboard,
            screen,
            transcript: String::new(),
            seen: 0,
        }
    }

    fn type_line(&mut self, text: &str) {
        type_into(&mut self.keyboard, &format!("{text}\n"));
    }

    fn type_raw(&mut self, bytes: &str) {
        type_into(&mut self.keyboard, bytes);
    }

    /// Wait until `needle` shows up on the screen after the last match.
    fn expect(&mut self, needle: &str, timeout: Duration) {
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
    fn eof_until_exit(&mut self, timeout: Duration) -> i32 {
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
    fn wait(&mut self, timeout: Duration) -> i32 {
        let status = wait_bounded(&mut self.child, timeout)
            .unwrap_or_else(|| panic!("runtime still running; screen:\n{}", self.transcript));
        status
            .code()
            .unwrap_or_else(|| panic!("runtime died of a signal: {status:?}"))
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
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

/// Generous: the suite also runs in a slow emulated VM.
const SCREEN_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn shell_on_a_terminal_answers_typed_arithmetic_and_exits_with_its_code() {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let (a, b) = (random_in(1000..=999_999), random_in(1000..=999_999));
    let tag = marker();
    let code = random_in(1..=120);
    let before = before(&root);

    let mut term = Terminal::spawn(&root, &["run", &img, "/bin/sh"]);
    // The typed line is echoed too, but only the shell can print the computed sum.
    term.type_line(&format!("echo {tag}$(({a}+{b})){tag}"));
    term.expect(&format!("{tag}{}{tag}", a + b), SCREEN_TIMEOUT);
    term.type_line(&format!(
        "[ -t 0 ] && [ -t 1 ] && echo {tag}$((2*{a})){tag}"
    ));
    term.expect(&format!("{tag}{}{tag}", 2 * a), SCREEN_TIMEOUT);
    term.type_line(&format!("exit {code}"));
    let exit = term.wait(SCREEN_TIMEOUT);

    assert_eq!(exit, code as i32, "screen:\n{}", term.transcript);
    assert_clean(&root, &before, &[&img]);
}

#[test]
fn ctrl_c_interrupts_the_foreground_command_not_the_shell() {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let (a, b) = (random_in(1000..=999_999), random_in(1000..=999_999));
    let tag = marker();
    let before = before(&root);

    let mut term = Terminal::spawn(&root, &["run", &img, "/bin/sh"]);
    term.type_line(&format!(
        "/bin/sh -c 'echo {tag}$(({a}+{b})){tag}; exec /bin/probe sleep 60 {tag}'"
    ));
    term.expect(&format!("{tag}{}{tag}", a + b), SCREEN_TIMEOUT);
    term.type_raw("\x03");
    // Only a shell that survived and regained the terminal answers: the sleeper died of SIGINT.
    term.type_line(&format!("echo {tag}-$?-$(({a}-{b}))"));
    term.expect(
        &format!("{tag}-130-{}", a as i64 - b as i64),
        SCREEN_TIMEOUT,
    );
    term.type_line("exit 0");
    let exit = term.wait(SCREEN_TIMEOUT);

    assert_eq!(exit, 0, "screen:\n{}", term.transcript);
    assert_clean(&root, &before, &[&img, &tag]);
}

#[test]
fn shell_exit_status_of_last_command_is_the_runs_exit_code_on_eof() {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let code = random_in(1..=120);
    let tag = marker();
    let before = before(&root);

    let mut term = Terminal::spawn(&root, &["run", &img, "/bin/sh"]);
    term.type_line(&format!("(exit {code}); echo {tag}$((1+{code}))"));
    term.expect(&format!("{tag}{}", 1 + code), SCREEN_TIMEOUT);
    term.expect("# ", SCREEN_TIMEOUT);
    // Typed at the prompt (a line typed ahead was once lost), and proven run by its output.
    term.type_line(&format!("echo {tag}-$((2+{code})); (exit {code})"));
    term.expect(&format!("{tag}-{}", 2 + code), SCREEN_TIMEOUT);
    term.expect("# ", SCREEN_TIMEOUT);
    // Ctrl-D on an empty line: the shell exits with the last status.
    let exit = term.eof_until_exit(SCREEN_TIMEOUT);

    assert_eq!(exit, code as i32, "screen:\n{}", term.transcript);
    assert_clean(&root, &before, &[&img]);
}
