//! Step "process": the command runs with its arguments, the three standard streams pass
//! through, and success and failure can be told apart.

use super::{fail, pass, verdict, with_effects, Ctx, Job};
use crate::grade::invoke::random_word;
use crate::grade::report::Check;

pub fn grade(ctx: &mut Ctx) -> Vec<Check> {
    vec![arguments(ctx), stdin(ctx), stderr(ctx), exit_status(ctx)]
}

fn arguments(ctx: &mut Ctx) -> Check {
    let (one, two) = (
        random_word("a"),
        format!("{} {}", random_word("b"), random_word("c")),
    );
    // The only check that passes arguments: the probe prints those it was given.
    let (out, fx) = ctx.run(Job::of(&[&["args"]]).args(&[&one, &two]));
    let first = out.stdout.contains(&format!("arg1={one}"));
    let second = out.stdout.contains(&format!("arg2={two}"));
    let expected = format!("stdout has the probe's lines arg1={one} and arg2={two}");
    let check = match (first, second) {
        (true, true) => pass("runs-command-with-arguments", &expected, out.describe()),
        (true, false) => fail(
            "runs-command-with-arguments",
            &expected,
            out.describe(),
            "an argument containing a space was split or lost: pass os.Args[3:] as a list (exec.Command(args[0], args[1:]...)), never joined into one string",
        ),
        // The probe ran (it left its mark, seen on the host) but got no argument.
        (false, _) if ctx.commands_ran && out.success() && !out.stdout.contains("arg1=") => fail(
            "runs-command-with-arguments",
            &expected,
            out.describe(),
            "step 1 (process): the command ran without its arguments: pass every word after the command, exec.Command(args[0], args[1:]...), not exec.Command(args[0])",
        ),
        _ => fail(
            "runs-command-with-arguments",
            &expected,
            out.describe(),
            "step 1 (process): run the command given after the image with exec.Command and connect cmd.Stdout to os.Stdout",
        ),
    };
    with_effects(check, &fx)
}

fn stdin(ctx: &mut Ctx) -> Check {
    let word = random_word("in");
    let input = format!("{word}\n");
    let (out, fx) = ctx.run(Job::of(&[&["stdin"]]).stdin(input.as_bytes()));
    let check = verdict(
        out.stdout.contains(&word),
        "stdin-reaches-command",
        &format!("what the grader writes on stdin ({word}) comes back on stdout"),
        out.describe(),
        "step 1 (process): connect cmd.Stdin to os.Stdin",
    );
    with_effects(check, &fx)
}

fn stderr(ctx: &mut Ctx) -> Check {
    let word = random_word("err");
    let (out, fx) = ctx.run(Job::of(&[&["stderr", &word]]));
    let expected = format!("{word} on stderr");
    let check = if out.stderr.contains(&word) {
        pass("stderr-passes-through", &expected, "on stderr")
    } else if out.stdout.contains(&word) {
        fail(
            "stderr-passes-through",
            &expected,
            "on stdout instead",
            "step 1 (process): connect cmd.Stderr to os.Stderr, not to os.Stdout",
        )
    } else {
        fail(
            "stderr-passes-through",
            &expected,
            out.describe(),
            "step 1 (process): connect cmd.Stderr to os.Stderr",
        )
    };
    with_effects(check, &fx)
}

/// 0 must look like success and N like failure; the exact N is an extra.
fn exit_status(ctx: &mut Ctx) -> Check {
    let code = 3 + (rand::random::<u8>() % 100) as i32;
    let code_s = code.to_string();
    let (ok, fx_ok) = ctx.run(Job::of(&[&["exit", "0"]]));
    let (bad, fx_bad) = ctx.run(Job::of(&[&["exit", &code_s]]));
    let seen = format!("exit 0 → {:?}; exit {code} → {:?}", ok.code, bad.code);
    ctx.extra(verdict(
        bad.code == Some(code),
        "exit-code-propagated",
        &format!("the command's exit code {code} is the runtime's"),
        format!("{:?}", bad.code),
        "exit with the command's code: os.Exit(cmd.ProcessState.ExitCode())",
    ));
    let check = match (ok.code, bad.code) {
        (Some(0), Some(c)) if c != 0 => pass("exit-status-distinguishable", "exit 0 on success, non-zero on failure", seen),
        _ => fail(
            "exit-status-distinguishable",
            "exit 0 on success, non-zero on failure",
            seen,
            "step 1 (process): when cmd.Run() returns an error, exit non-zero (ideally with the command's own code)",
        ),
    };
    with_effects(with_effects(check, &fx_ok), &fx_bad)
}
