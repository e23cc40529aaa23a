//! `-t/--tty` and `-i/--interactive`: the container's own terminal, driven from an outer
//! pseudo-terminal the test owns (the runtime's stdio and controlling terminal, as a user's
//! terminal emulator would be): its `/dev/pts/0`, the outer size and its resizes, Ctrl-C, the
//! exit code, and the outer terminal back in cooked mode on every way out.

use crate::common;

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use common::run::*;
use common::*;
use nix::pty::{openpty, Winsize};
use nix::sys::signal::Signal;
use serde_json::json;

/// The standard test image: busybox + probe, PATH set, a shell as default command.
fn image(root: &TestRoot) -> (String, String) {
    root.install_image(json!({"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]}))
}

/// Generous: the suite also runs in a slow emulated VM.
const SCREEN_TIMEOUT: Duration = Duration::from_secs(30);

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
struct Terminal {
    child: Child,
    master: OwnedFd,
    keyboard: File,
    /// The outer terminal's slave, for `stty -a -F` from the host.
    slave_path: PathBuf,
    screen: Receiver<Vec<u8>>,
    transcript: String,
    /// Where the next `expect` starts looking, so an old answer is never matched twice.
    seen: usize,
}

impl Terminal {
    /// Start `devoxx-docker ARGS` in a new session whose controlling terminal is a fresh pty
    /// of `rows`×`cols`.
    fn spawn(root: &TestRoot, args: &[&str], rows: u16, cols: u16) -> Self {
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
        }
    }

    fn type_line(&mut self, text: &str) {
        // In raw mode the outer terminal passes bytes as typed: Enter is a carriage return.
        type_into(&mut self.keyboard, &format!("{text}\r"));
    }

    fn type_raw(&mut self, bytes: &str) {
        type_into(&mut self.keyboard, bytes);
    }

    /// Resize the outer terminal (the kernel sends SIGWINCH to the runtime, its foreground).
    fn resize(&self, rows: u16, cols: u16) {
        // SAFETY: TIOCSWINSZ reads a winsize we own.
        unsafe { set_winsize(self.master.as_raw_fd(), &winsize(rows, cols)) }.expect("resize");
    }

    /// The outer terminal's settings as `stty -a` (the host's) prints them.
    fn stty(&self) -> String {
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

/// `stty -a` says canonical mode with echo and signals: a terminal a shell can use.
fn assert_cooked(stty: &str) {
    for flag in ["icanon", "echo", "isig"] {
        assert!(
            stty.split_whitespace().any(|w| w == flag),
            "outer terminal not back in cooked mode ({flag} missing):\n{stty}"
        );
    }
}

fn assert_raw(stty: &str) {
    for flag in ["-icanon", "-echo", "-isig"] {
        assert!(
            stty.split_whitespace().any(|w| w == flag),
            "outer terminal not in raw mode ({flag} missing):\n{stty}"
        );
    }
}

fn random_size() -> (u16, u16) {
    (random_in(10..=70) as u16, random_in(40..=220) as u16)
}

#[test]
fn tty_gives_the_container_its_own_terminal_on_dev_pts_0() {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let (a, b) = (random_in(1000..=999_999), random_in(1000..=999_999));
    let tag = marker();
    let code = random_in(1..=120);
    let before = before(&root);

    let mut term = Terminal::spawn(&root, &["run", "-it", &img, "/bin/sh"], 24, 100);
    term.type_line(&format!(
        "echo {tag}$(tty)$(({a}+{b})); [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && [ -c /dev/console ] && echo {tag}-ok-$(({a}*2))"
    ));
    term.expect(&format!("{tag}/dev/pts/0{}", a + b), SCREEN_TIMEOUT);
    term.expect(&format!("{tag}-ok-{}", a * 2), SCREEN_TIMEOUT);
    assert_raw(&term.stty());
    term.type_line(&format!("exit {code}"));
    let exit = term.wait(SCREEN_TIMEOUT);

    assert_eq!(exit, code as i32, "screen:\n{}", term.transcript);
    assert_cooked(&term.stty());
    assert_clean(&root, &before, &[&img]);
}

#[test]
fn stty_size_is_the_outer_terminals_and_follows_its_resizes() {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let tag = marker();
    let (rows, cols) = random_size();
    let (rows2, cols2) = loop {
        let size = random_size();
        if size != (rows, cols) {
            break size;
        }
    };
    let before = before(&root);

    let mut term = Terminal::spawn(&root, &["run", "-it", &img, "/bin/sh"], rows, cols);
    // The product is computed inside: the echoed typed line can never match it.
    let show = format!("set -- $(stty size); echo {tag}$(($1*1000+$2))");
    term.type_line(&show);
    term.expect(
        &format!("{tag}{}", rows as u32 * 1000 + cols as u32),
        SCREEN_TIMEOUT,
    );
    term.resize(rows2, cols2);
    term.type_line(&format!(
        "until [ \"$(stty size)\" = \"{rows2} {cols2}\" ]; do sleep 0.1; done; {show}"
    ));
    term.expect(
        &format!("{tag}{}", rows2 as u32 * 1000 + cols2 as u32),
        SCREEN_TIMEOUT,
    );
    term.type_line("exit 0");
    let exit = term.wait(SCREEN_TIMEOUT);

    assert_eq!(exit, 0, "screen:\n{}", term.transcript);
    assert_clean(&root, &before, &[&img]);
}

#[test]
fn ctrl_c_interrupts_the_foreground_job_inside_not_the_runtime() {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let (a, b) = (random_in(1000..=999_999), random_in(1000..=999_999));
    let tag = marker();
    let code = random_in(1..=120);
    let before = before(&root);

    let mut term = Terminal::spawn(&root, &["run", "-it", &img, "/bin/sh"], 24, 100);
    term.type_line(&format!(
        "/bin/sh -c 'echo {tag}$(({a}+{b})){tag}; exec /bin/probe sleep 60 {tag}'"
    ));
    term.expect(&format!("{tag}{}{tag}", a + b), SCREEN_TIMEOUT);
    term.type_raw("\x03");
    // Only a shell that survived answers: the sleeper died of SIGINT (130), the runtime lives.
    term.type_line(&format!("echo {tag}-$?-$(({a}-{b}))"));
    term.expect(
        &format!("{tag}-130-{}", a as i64 - b as i64),
        SCREEN_TIMEOUT,
    );
    term.type_line(&format!("exit {code}"));
    let exit = term.wait(SCREEN_TIMEOUT);

    assert_eq!(exit, code as i32, "screen:\n{}", term.transcript);
    assert_cooked(&term.stty());
    assert_clean(&root, &before, &[&img, &tag]);
}

#[test]
fn the_commands_exit_code_passes_through_with_and_without_a_terminal() {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let code = random_in(1..=120);
    let script = format!("exit {code}");
    let before = before(&root);

    // -t alone needs no terminal: the output still goes through the container's pty.
    let tag = marker();
    let echo = format!("echo {tag}; [ -t 0 ] && exit {code}");
    let ran = run(&root, &run_args(&["-t"], &img, &["/bin/sh", "-c", &echo]));
    ran.assert_code(code as i32);
    assert!(ran.stdout.contains(&format!("{tag}\r\n")), "{ran:?}");

    let mut term = Terminal::spawn(
        &root,
        &[
            "run",
            "--tty",
            "--interactive",
            &img,
            "/bin/sh",
            "-c",
            &script,
        ],
        24,
        80,
    );
    assert_eq!(term.wait(SCREEN_TIMEOUT), code as i32);
    assert_cooked(&term.stty());
    assert_clean(&root, &before, &[&img]);
}

#[test]
fn outer_terminal_is_cooked_again_after_the_container_is_sigkilled() {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let tag = marker();
    let before = before(&root);

    let mut term = Terminal::spawn(&root, &["run", "-it", &img, "/bin/sh"], 24, 100);
    term.type_line(&format!(
        "echo {tag}$((6*7)); exec /bin/probe sleep 600 {tag}"
    ));
    term.expect(&format!("{tag}42"), SCREEN_TIMEOUT);
    let pid1 = container_pid1(&tag);
    assert_raw(&term.stty());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid1), Signal::SIGKILL).expect("kill");
    let exit = term.wait(SCREEN_TIMEOUT);

    assert_eq!(exit, 137, "screen:\n{}", term.transcript);
    assert_cooked(&term.stty());
    assert_clean(&root, &before, &[&img, &tag]);
}

#[test]
fn a_signal_to_the_runtime_stops_the_container_and_restores_the_terminal() {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let tag = marker();
    let before = before(&root);

    let args = ["run", "-it", "--stop-timeout", "1", &img, "/bin/sh"];
    let mut term = Terminal::spawn(&root, &args, 24, 100);
    term.type_line(&format!(
        "echo {tag}$((6*7)); exec /bin/probe sleep 600 {tag}"
    ));
    term.expect(&format!("{tag}42"), SCREEN_TIMEOUT);
    container_pid1(&tag);
    assert_raw(&term.stty());
    // A PID 1 without a handler ignores the forwarded SIGTERM: killed after the stop timeout.
    let runtime = nix::unistd::Pid::from_raw(term.child.id() as i32);
    nix::sys::signal::kill(runtime, Signal::SIGTERM).expect("signal the runtime");
    let exit = term.wait(SCREEN_TIMEOUT);

    assert_eq!(exit, 137, "screen:\n{}", term.transcript);
    assert_cooked(&term.stty());
    assert_clean(&root, &before, &[&img, &tag]);
}

#[test]
fn tty_without_interactive_relays_output_but_never_reads_stdin() {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let (a, b) = (random_in(1000..=999_999), random_in(1000..=999_999));
    let tag = marker();
    let before = before(&root);

    let script = format!(
        "echo {tag}-ready; if read -t 3 x; then echo {tag}-got-$x; else echo {tag}$(({a}+{b})); fi"
    );
    let mut term = Terminal::spawn(
        &root,
        &["run", "-t", &img, "/bin/sh", "-c", &script],
        24,
        80,
    );
    term.expect(&format!("{tag}-ready"), SCREEN_TIMEOUT);
    // Without -i the outer terminal stays cooked and what is typed is not the container's.
    assert_cooked(&term.stty());
    term.type_raw(&format!("{a}\n"));
    term.expect(&format!("{tag}{}", a + b), SCREEN_TIMEOUT);
    let exit = term.wait(SCREEN_TIMEOUT);

    assert_eq!(exit, 0, "screen:\n{}", term.transcript);
    assert!(!term.transcript.contains(&format!("{tag}-got-")));
    assert_clean(&root, &before, &[&img]);
}

#[test]
fn without_tty_stdio_is_the_runtimes_own_as_before() {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let (a, b) = (random_in(1000..=999_999), random_in(1000..=999_999));
    let tag = marker();
    let before = before(&root);

    let check = format!("[ -t 0 ] && echo {tag}-tty || echo {tag}$(({a}+{b}))");
    for options in [&[][..], &["-i"][..]] {
        // Not a terminal: stdin is the caller's (here empty) and stays no terminal.
        let ran = run(&root, &run_args(options, &img, &["/bin/sh", "-c", &check]));
        ran.assert_code(0);
        assert_eq!(ran.stdout, format!("{tag}{}\n", a + b), "{options:?}");
        // On a terminal: the outer one itself, untouched (cooked), as the workshop has it.
        let on_term = format!(
            "[ -t 0 ] && case \"$(stty -a)\" in *-icanon*) echo {tag}-raw;; *) echo {tag}$(({a}-{b}));; esac"
        );
        let mut args = vec!["run"];
        args.extend_from_slice(options);
        args.extend([img.as_str(), "/bin/sh", "-c", &on_term]);
        let mut term = Terminal::spawn(&root, &args, 24, 80);
        term.expect(&format!("{tag}{}", a as i64 - b as i64), SCREEN_TIMEOUT);
        assert_eq!(term.wait(SCREEN_TIMEOUT), 0, "screen:\n{}", term.transcript);
    }
    assert_clean(&root, &before, &[&img]);
}

#[test]
fn interactive_tty_on_a_stdin_that_is_no_terminal_is_one_line_and_125() {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let before = before(&root);

    for options in [&["-it"][..], &["--interactive", "--tty"][..]] {
        let ran = run(&root, &run_args(options, &img, &["/bin/true"]));
        ran.assert_code(125).assert_one_error_line();
        assert!(ran.stderr.contains("not a TTY"), "{ran:?}");
        assert!(ran.stdout.is_empty());
    }
    assert_clean(&root, &before, &[&img]);
}
