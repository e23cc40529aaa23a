//! `-t/--tty` and `-i/--interactive`: the container's own terminal, driven from an outer
//! pseudo-terminal the test owns (the runtime's stdio and controlling terminal, as a user's
//! terminal emulator would be): its `/dev/pts/0`, the outer size and its resizes, Ctrl-C, the
//! exit code, and the outer terminal back in cooked mode on every way out.

use crate::common;

use common::run::*;
use common::terminal::SCREEN_TIMEOUT;
use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rstest::rstest;

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
    let arranged = Arranged::standard();
    let (a, b) = (random_in(1000..=999_999), random_in(1000..=999_999));
    let tag = marker();
    let code = random_in(1..=120);

    let mut term = arranged.terminal(&["-it"], &["/bin/sh"], 24, 100).raw();
    term.type_line(&format!(
        "echo {tag}$(tty)$(({a}+{b})); [ -t 0 ] && [ -t 1 ] && [ -t 2 ] && [ -c /dev/console ] && echo {tag}-ok-$(({a}*2))"
    ));
    term.expect(&format!("{tag}/dev/pts/0{}", a + b), SCREEN_TIMEOUT);
    term.expect(&format!("{tag}-ok-{}", a * 2), SCREEN_TIMEOUT);
    assert_raw(&term.stty());
    let exit = term.type_exit(code);

    assert_eq!(exit, code as i32, "screen:\n{}", term.transcript);
    assert_cooked(&term.stty());
    arranged.assert_clean(&[]);
}

#[test]
fn stty_size_is_the_outer_terminals_and_follows_its_resizes() {
    require_root!();
    let arranged = Arranged::standard();
    let tag = marker();
    let (rows, cols) = random_size();
    let (rows2, cols2) = loop {
        let size = random_size();
        if size != (rows, cols) {
            break size;
        }
    };

    let mut term = arranged.terminal(&["-it"], &["/bin/sh"], rows, cols).raw();
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
    arranged.assert_clean(&[]);
}

#[test]
fn ctrl_c_interrupts_the_foreground_job_inside_not_the_runtime() {
    require_root!();
    let arranged = Arranged::standard();
    let tag = marker();
    let code = random_in(1..=120);

    let mut term = arranged.terminal(&["-it"], &["/bin/sh"], 24, 100).raw();
    // Only a shell that survived answers: the sleeper died of SIGINT (130), the runtime lives.
    term.interrupt_a_foreground_job(&tag);
    let exit = term.type_exit(code);

    assert_eq!(exit, code as i32, "screen:\n{}", term.transcript);
    assert_cooked(&term.stty());
    arranged.assert_clean(&[&tag]);
}

#[test]
fn the_commands_exit_code_passes_through_with_and_without_a_terminal() {
    require_root!();
    let arranged = Arranged::standard();
    let code = random_in(1..=120);
    let script = format!("exit {code}");

    // -t alone needs no terminal: the output still goes through the container's pty.
    let tag = marker();
    let echo = format!("echo {tag}; [ -t 0 ] && exit {code}");
    let ran = arranged.run(&["-t"], &["/bin/sh", "-c", &echo]);
    ran.assert_code(code as i32);
    assert!(ran.stdout.contains(&format!("{tag}\r\n")), "{ran:?}");

    let mut term = arranged
        .terminal(
            &["--tty", "--interactive"],
            &["/bin/sh", "-c", &script],
            24,
            80,
        )
        .raw();
    assert_eq!(term.wait(SCREEN_TIMEOUT), code as i32);
    assert_cooked(&term.stty());
    arranged.assert_clean(&[]);
}

/// However the container is killed while the outer terminal is raw, the run exits 137 and the
/// outer terminal is cooked again: SIGKILL to its PID 1, or SIGTERM to the runtime, which the
/// PID 1 without a handler ignores (so it is killed after the stop timeout).
#[rstest]
#[case::outer_terminal_is_cooked_again_after_the_container_is_sigkilled(&["-it"], false)]
#[case::a_signal_to_the_runtime_stops_the_container_and_restores_the_terminal(
    &["-it", "--stop-timeout", "1"],
    true
)]
fn killed_container_exits_137_and_leaves_the_outer_terminal_cooked(
    #[case] options: &[&str],
    #[case] sigterm_to_the_runtime: bool,
) {
    require_root!();
    let arranged = Arranged::standard();
    let tag = marker();

    let mut term = arranged.terminal(options, &["/bin/sh"], 24, 100).raw();
    term.exec_a_sleeper(&tag);
    let pid1 = container_pid1(&tag);
    assert_raw(&term.stty());
    if sigterm_to_the_runtime {
        let runtime = Pid::from_raw(term.pid() as i32);
        kill(runtime, Signal::SIGTERM).expect("signal the runtime");
    } else {
        kill(Pid::from_raw(pid1), Signal::SIGKILL).expect("kill");
    }
    let exit = term.wait(SCREEN_TIMEOUT);

    assert_eq!(exit, 137, "screen:\n{}", term.transcript);
    assert_cooked(&term.stty());
    arranged.assert_clean(&[&tag]);
}

#[test]
fn tty_without_interactive_relays_output_but_never_reads_stdin() {
    require_root!();
    let arranged = Arranged::standard();
    let (a, b) = (random_in(1000..=999_999), random_in(1000..=999_999));
    let tag = marker();

    let script = format!(
        "echo {tag}-ready; if read -t 3 x; then echo {tag}-got-$x; else echo {tag}$(({a}+{b})); fi"
    );
    let mut term = arranged
        .terminal(&["-t"], &["/bin/sh", "-c", &script], 24, 80)
        .raw();
    term.expect(&format!("{tag}-ready"), SCREEN_TIMEOUT);
    // Without -i the outer terminal stays cooked and what is typed is not the container's.
    assert_cooked(&term.stty());
    term.type_raw(&format!("{a}\n"));
    term.expect(&format!("{tag}{}", a + b), SCREEN_TIMEOUT);
    let exit = term.wait(SCREEN_TIMEOUT);

    assert_eq!(exit, 0, "screen:\n{}", term.transcript);
    assert!(!term.transcript.contains(&format!("{tag}-got-")));
    arranged.assert_clean(&[]);
}

#[test]
fn without_tty_stdio_is_the_runtimes_own_as_before() {
    require_root!();
    let arranged = Arranged::standard();
    let (a, b) = (random_in(1000..=999_999), random_in(1000..=999_999));
    let tag = marker();

    let check = format!("[ -t 0 ] && echo {tag}-tty || echo {tag}$(({a}+{b}))");
    for options in [&[][..], &["-i"][..]] {
        // Not a terminal: stdin is the caller's (here empty) and stays no terminal.
        let ran = arranged.run(options, &["/bin/sh", "-c", &check]);
        ran.assert_code(0);
        assert_eq!(ran.stdout, format!("{tag}{}\n", a + b), "{options:?}");
        // On a terminal: the outer one itself, untouched (cooked), as the workshop has it.
        let on_term = format!(
            "[ -t 0 ] && case \"$(stty -a)\" in *-icanon*) echo {tag}-raw;; *) echo {tag}$(({a}-{b}));; esac"
        );
        let mut term = arranged
            .terminal(options, &["/bin/sh", "-c", &on_term], 24, 80)
            .raw();
        term.expect(&format!("{tag}{}", a as i64 - b as i64), SCREEN_TIMEOUT);
        assert_eq!(term.wait(SCREEN_TIMEOUT), 0, "screen:\n{}", term.transcript);
    }
    arranged.assert_clean(&[]);
}

#[test]
fn interactive_tty_on_a_stdin_that_is_no_terminal_is_one_line_and_125() {
    require_root!();
    let arranged = Arranged::standard();

    for options in [&["-it"][..], &["--interactive", "--tty"][..]] {
        let ran = arranged.run(options, &["/bin/true"]);
        ran.assert_code(125).assert_one_error_line();
        assert!(ran.stderr.contains("not a TTY"), "{ran:?}");
        assert!(ran.stdout.is_empty());
    }
    arranged.assert_clean(&[]);
}
