//! `-t/--tty` and `-i/--interactive`: the container's own terminal, driven from an outer
//! pseudo-terminal the test owns (the runtime's stdio and controlling terminal, as a user's
//! terminal emulator would be): its `/dev/pts/0`, the outer size and its resizes, Ctrl-C, the
//! exit code, and the outer terminal back in cooked mode on every way out.

use crate::common;

use std::time::Duration;

use common::run::*;
use common::terminal::Terminal;
use common::*;
use nix::sys::signal::Signal;
use serde_json::json;

/// The standard test image: busybox + probe, PATH set, a shell as default command.
fn image(root: &TestRoot) -> (String, String) {
    root.install_image(json!({"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]}))
}

/// Generous: the suite also runs in a slow emulated VM.
const SCREEN_TIMEOUT: Duration = Duration::from_secs(30);

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

    let mut term = Terminal::spawn(&root, &["run", "-it", &img, "/bin/sh"], 24, 100).raw();
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

    let mut term = Terminal::spawn(&root, &["run", "-it", &img, "/bin/sh"], rows, cols).raw();
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

    let mut term = Terminal::spawn(&root, &["run", "-it", &img, "/bin/sh"], 24, 100).raw();
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
    )
    .raw();
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

    let mut term = Terminal::spawn(&root, &["run", "-it", &img, "/bin/sh"], 24, 100).raw();
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
    let mut term = Terminal::spawn(&root, &args, 24, 100).raw();
    term.type_line(&format!(
        "echo {tag}$((6*7)); exec /bin/probe sleep 600 {tag}"
    ));
    term.expect(&format!("{tag}42"), SCREEN_TIMEOUT);
    container_pid1(&tag);
    assert_raw(&term.stty());
    // A PID 1 without a handler ignores the forwarded SIGTERM: killed after the stop timeout.
    let runtime = nix::unistd::Pid::from_raw(term.pid() as i32);
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
    )
    .raw();
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
        let mut term = Terminal::spawn(&root, &args, 24, 80).raw();
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
