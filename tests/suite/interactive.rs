//! Workshop step "interactive": a shell in the container driven through a real pseudo-terminal
//! (openpty; the runtime's stdio is the pty slave and its controlling terminal), as a user at
//! a keyboard would: type, read the answer, Ctrl-C, exit with a code.

use crate::common;

use common::run::*;
use common::terminal::SCREEN_TIMEOUT;
use common::*;

#[test]
fn shell_on_a_terminal_answers_typed_arithmetic_and_exits_with_its_code() {
    require_root!();
    let arranged = Arranged::standard();
    let (a, b) = (random_in(1000..=999_999), random_in(1000..=999_999));
    let tag = marker();
    let code = random_in(1..=120);

    let mut term = arranged.terminal(&[], &["/bin/sh"], 24, 120);
    // The typed line is echoed too, but only the shell can print the computed sum.
    term.type_line(&format!("echo {tag}$(({a}+{b})){tag}"));
    term.expect(&format!("{tag}{}{tag}", a + b), SCREEN_TIMEOUT);
    term.type_line(&format!(
        "[ -t 0 ] && [ -t 1 ] && echo {tag}$((2*{a})){tag}"
    ));
    term.expect(&format!("{tag}{}{tag}", 2 * a), SCREEN_TIMEOUT);
    let exit = term.type_exit(code);

    assert_eq!(exit, code as i32, "screen:\n{}", term.transcript);
    arranged.assert_clean(&[]);
}

#[test]
fn ctrl_c_interrupts_the_foreground_command_not_the_shell() {
    require_root!();
    let arranged = Arranged::standard();
    let tag = marker();

    let mut term = arranged.terminal(&[], &["/bin/sh"], 24, 120);
    // Only a shell that survived and regained the terminal answers: the sleeper died of SIGINT.
    term.interrupt_a_foreground_job(&tag);
    let exit = term.type_exit(0);

    assert_eq!(exit, 0, "screen:\n{}", term.transcript);
    arranged.assert_clean(&[&tag]);
}

#[test]
fn shell_exit_status_of_last_command_is_the_runs_exit_code_on_eof() {
    require_root!();
    let arranged = Arranged::standard();
    let code = random_in(1..=120);
    let tag = marker();

    let mut term = arranged.terminal(&[], &["/bin/sh"], 24, 120);
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
    arranged.assert_clean(&[]);
}
