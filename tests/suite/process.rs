//! Workshop step "process": what runs (image Entrypoint/Cmd/Env/WorkingDir, `-e`, `-w`, PATH
//! lookup inside the rootfs), its stdio, its exit code (own code, 128+signal, 126, 127) and the
//! signals the runtime forwards. Everything through the CLI, as root.

use crate::common;

use std::fs;
use std::time::{Duration, Instant};

use common::run::*;
use common::*;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rstest::rstest;
use serde_json::json;

/// The standard test image: busybox + probe, PATH set, a shell as default command.
fn image(root: &TestRoot) -> (String, String) {
    root.install_image(json!({"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]}))
}

// ---- exit codes -------------------------------------------------------------------------------

#[test]
fn successful_command_exits_0_with_its_output_on_stdout() {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let word = marker();
    let before = before(&root);

    let ran = run(&root, &["run", &img, "/bin/probe", "echo", &word]);

    ran.assert_ok();
    assert_eq!(ran.stdout, format!("{word}\n"));
    assert_clean(&root, &before, &[&img]);
}

#[test]
fn exit_code_is_the_commands_own() {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let code = random_in(1..=120);
    let before = before(&root);

    let ran = run(
        &root,
        &["run", &img, "/bin/probe", "exit", &code.to_string()],
    );

    ran.assert_code(code as i32).assert_stderr_only_runtime();
    assert_eq!(ran.stdout, "");
    assert_clean(&root, &before, &[&img]);
}

#[rstest]
#[case::segv("segv", 139)]
#[case::ill("ill", 132)]
#[case::trap("trap", 133)]
#[case::fpe("fpe", 136)]
fn death_by_cpu_fault_exits_128_plus_signal(#[case] fault: &str, #[case] code: i32) {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let before = before(&root);

    let ran = run(&root, &["run", &img, "/bin/probe", "fault", fault]);

    ran.assert_code(code).assert_stderr_only_runtime();
    assert_eq!(ran.stdout, "");
    assert_clean(&root, &before, &[&img]);
}

#[test]
fn sigkill_to_pid_1_from_the_host_exits_137_and_removes_its_cgroup() {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let mark = marker();
    let before = before(&root);

    let script = ready_then_sleep(&mark);
    let mut bg = Background::spawn(&root, &["run", &img, "/bin/sh", "-c", &script]);
    bg.wait_for_line("ready", RUN_TIMEOUT);
    let pid1 = container_pid1(&mark);
    let cgroups = own_cgroup_dirs(pid1);
    kill(Pid::from_raw(pid1), Signal::SIGKILL).expect("kill container");
    let ran = bg.wait(Duration::from_secs(30));

    ran.assert_code(137).assert_stderr_only_runtime();
    assert_eq!(ran.stdout, "ready\n");
    assert!(
        !cgroups.is_empty(),
        "container process is in no devoxx-docker cgroup"
    );
    let left: Vec<_> = cgroups.iter().filter(|d| d.exists()).collect();
    assert!(left.is_empty(), "cgroup dirs left: {left:?}");
    assert_clean(&root, &before, &[&img, &mark]);
}

#[rstest]
#[case::plain_file("/marker")]
#[case::directory("/bin")]
fn command_that_is_not_executable_exits_126(#[case] command: &str) {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let before = before(&root);

    let ran = run(&root, &["run", &img, command]);

    ran.assert_code(126).assert_one_error_line();
    assert!(
        ran.stderr.contains(command),
        "error should name {command}: {}",
        ran.stderr
    );
    assert_clean(&root, &before, &[&img]);
}

#[rstest]
#[case::looked_up_in_path(false)]
#[case::absolute_path(true)]
fn missing_command_exits_127(#[case] absolute: bool) {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let name = format!("cmd-{}", marker());
    let command = if absolute {
        format!("/bin/{name}")
    } else {
        name.clone()
    };
    let before = before(&root);

    let ran = run(&root, &["run", &img, &command, "arg"]);

    ran.assert_code(127).assert_one_error_line();
    assert!(
        ran.stderr.contains(&name),
        "error should name the command: {}",
        ran.stderr
    );
    assert_clean(&root, &before, &[&img]);
}

#[test]
fn command_is_looked_up_in_the_images_path_inside_the_rootfs() {
    require_root!();
    let root = TestRoot::new();
    let dir = format!("/opt/tools-{}", marker());
    let (img, _) = root.install_image(json!({"Env": [format!("PATH={dir}:/bin")]}));
    let tool = format!("tool-{}", marker());
    let host_dir = root
        .store()
        .join(&img)
        .join("rootfs")
        .join(dir.trim_start_matches('/'));
    fs::create_dir_all(&host_dir).expect("mkdir tool dir");
    fs::copy(probe(), host_dir.join(&tool)).expect("install tool");
    let word = marker();
    let before = before(&root);

    let ran = run(&root, &["run", &img, &tool, "echo", &word]);

    ran.assert_ok();
    assert_eq!(ran.stdout, format!("{word}\n"));
    assert_clean(&root, &before, &[&img]);
}

#[test]
fn arguments_after_the_image_are_passed_untouched() {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let spaced = format!("{}  {}", marker(), marker());
    let before = before(&root);

    let script = "for a in \"$@\"; do echo \"[$a]\"; done";
    let ran = run(
        &root,
        &[
            "run",
            &img,
            "/bin/sh",
            "-c",
            script,
            "sh",
            "--hostname",
            "-e",
            &spaced,
            "",
            "--help",
        ],
    );

    ran.assert_ok();
    assert_eq!(
        ran.stdout,
        format!("[--hostname]\n[-e]\n[{spaced}]\n[]\n[--help]\n")
    );
    assert_clean(&root, &before, &[&img]);
}

// ---- stdio ------------------------------------------------------------------------------------

#[test]
fn stdin_reaches_the_command() {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let input = format!(
        "{}\n{}\nno newline at end {}",
        marker(),
        marker(),
        random_in(0..=u32::MAX as u64)
    );
    let before = before(&root);

    let ran = run_with_stdin(
        &root,
        &["run", &img, "/bin/probe", "stdin"],
        input.as_bytes(),
    );

    ran.assert_ok();
    assert_eq!(ran.stdout, input);
    assert_clean(&root, &before, &[&img]);
}

#[test]
fn stderr_of_the_command_lands_on_stderr_only() {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let msg = format!("err-{}", marker());
    let before = before(&root);

    let ran = run(&root, &["run", &img, "/bin/probe", "stderr", &msg]);

    ran.assert_code(0);
    assert_eq!(ran.stdout, "", "stderr output leaked onto stdout");
    let lines: Vec<&str> = ran
        .stderr
        .lines()
        .filter(|l| !l.starts_with(PREFIX))
        .collect();
    assert_eq!(
        lines,
        [msg.as_str()],
        "container's stderr: {:?}",
        ran.stderr
    );
    assert_clean(&root, &before, &[&img]);
}

#[test]
fn stdout_and_stderr_stay_separate_in_one_run() {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let (out, err) = (format!("out-{}", marker()), format!("err-{}", marker()));
    let before = before(&root);

    let script = format!("/bin/probe echo {out}; /bin/probe stderr {err}; /bin/probe echo {out}");
    let ran = run(&root, &["run", &img, "/bin/sh", "-c", &script]);

    ran.assert_code(0);
    assert_eq!(ran.stdout, format!("{out}\n{out}\n"));
    let lines: Vec<&str> = ran
        .stderr
        .lines()
        .filter(|l| !l.starts_with(PREFIX))
        .collect();
    assert_eq!(lines, [err.as_str()]);
    assert_clean(&root, &before, &[&img]);
}

// ---- image config: Entrypoint / Cmd / Env / WorkingDir -----------------------------------------

#[test]
fn image_cmd_runs_when_no_command_is_given() {
    require_root!();
    let root = TestRoot::new();
    let word = marker();
    let (img, _) =
        root.install_image(json!({"Env": ["PATH=/bin"], "Cmd": ["/bin/probe", "echo", word]}));
    let before = before(&root);

    let ran = run(&root, &["run", &img]);

    ran.assert_ok();
    assert_eq!(ran.stdout, format!("{word}\n"));
    assert_clean(&root, &before, &[&img]);
}

#[test]
fn given_command_replaces_the_image_cmd() {
    require_root!();
    let root = TestRoot::new();
    let (unwanted, wanted) = (marker(), marker());
    let (img, _) =
        root.install_image(json!({"Env": ["PATH=/bin"], "Cmd": ["/bin/probe", "echo", unwanted]}));
    let before = before(&root);

    let ran = run(&root, &["run", &img, "probe", "echo", &wanted]);

    ran.assert_ok();
    assert_eq!(ran.stdout, format!("{wanted}\n"));
    assert_clean(&root, &before, &[&img]);
}

#[test]
fn entrypoint_is_prefixed_to_cmd_or_to_the_given_arguments() {
    require_root!();
    let root = TestRoot::new();
    let (first, default_arg, given) = (marker(), marker(), marker());
    let (img, _) = root.install_image(json!({
        "Env": ["PATH=/bin"],
        "Entrypoint": ["/bin/probe", "echo", first],
        "Cmd": [default_arg],
    }));
    let before = before(&root);

    let default = run(&root, &["run", &img]);
    let overridden = run(&root, &["run", &img, &given]);

    default.assert_ok();
    assert_eq!(default.stdout, format!("{first} {default_arg}\n"));
    overridden.assert_ok();
    assert_eq!(overridden.stdout, format!("{first} {given}\n"));
    assert_clean(&root, &before, &[&img]);
}

#[test]
fn no_command_anywhere_is_a_runtime_error_125() {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = root.install_image(json!({"Env": ["PATH=/bin"]}));
    let before = before(&root);

    let ran = run(&root, &["run", &img]);

    ran.assert_code(125).assert_one_error_line();
    assert_clean(&root, &before, &[&img]);
}

/// `KEY=VALUE` lines of `probe env` output.
fn env_of(stdout: &str) -> Vec<&str> {
    stdout.lines().collect()
}

#[test]
fn image_env_is_set() {
    require_root!();
    let root = TestRoot::new();
    let (key, value) = (
        format!("K_{}", marker().to_uppercase()),
        format!("v {}=x", marker()),
    );
    let (img, _) = root.install_image(json!({"Env": ["PATH=/bin", format!("{key}={value}")]}));
    let before = before(&root);

    let ran = run(&root, &["run", &img, "probe", "env"]);

    ran.assert_ok();
    let env = env_of(&ran.stdout);
    assert!(env.contains(&format!("{key}={value}").as_str()), "{env:?}");
    assert!(env.contains(&"PATH=/bin"), "{env:?}");
    assert!(
        !env.iter().any(|l| l.starts_with("DEVOXX_")),
        "runtime env leaked: {env:?}"
    );
    assert_clean(&root, &before, &[&img]);
}

#[test]
fn env_option_overrides_the_image_and_adds_variables() {
    require_root!();
    let root = TestRoot::new();
    let key = format!("K_{}", marker().to_uppercase());
    let added = format!("A_{}", marker().to_uppercase());
    let (old, new, add) = (marker(), marker(), marker());
    let (img, _) = root.install_image(json!({"Env": ["PATH=/bin", format!("{key}={old}")]}));
    let before = before(&root);

    let ran = run(
        &root,
        &[
            "run",
            "-e",
            &format!("{key}={new}"),
            "--env",
            &format!("{added}={add}"),
            &img,
            "probe",
            "env",
        ],
    );

    ran.assert_ok();
    let env = env_of(&ran.stdout);
    let ours: Vec<&&str> = env
        .iter()
        .filter(|l| l.starts_with(&format!("{key}=")))
        .collect();
    assert_eq!(ours, [&format!("{key}={new}").as_str()], "{env:?}");
    assert!(env.contains(&format!("{added}={add}").as_str()), "{env:?}");
    assert_clean(&root, &before, &[&img]);
}

#[test]
fn cwd_is_root_by_default() {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let before = before(&root);

    let ran = run(&root, &["run", &img, "/bin/probe", "cwd"]);

    ran.assert_ok();
    assert_eq!(ran.stdout, "/\n");
    assert_clean(&root, &before, &[&img]);
}

#[test]
fn image_workingdir_is_the_cwd() {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = root.install_image(json!({"Env": ["PATH=/bin"], "WorkingDir": "/var"}));
    let before = before(&root);

    let ran = run(&root, &["run", &img, "/bin/probe", "cwd"]);

    ran.assert_ok();
    assert_eq!(ran.stdout, "/var\n");
    assert_clean(&root, &before, &[&img]);
}

#[test]
fn workdir_option_overrides_the_image_workingdir() {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = root.install_image(json!({"Env": ["PATH=/bin"], "WorkingDir": "/var"}));
    let before = before(&root);

    let short = run(&root, &["run", "-w", "/tmp", &img, "/bin/probe", "cwd"]);
    let long = run(
        &root,
        &["run", "--workdir", "/data", &img, "/bin/probe", "cwd"],
    );

    short.assert_ok();
    assert_eq!(short.stdout, "/tmp\n");
    long.assert_ok();
    assert_eq!(long.stdout, "/data\n");
    assert_clean(&root, &before, &[&img]);
}

#[test]
fn missing_workingdir_is_created_inside_the_container_only() {
    require_root!();
    let root = TestRoot::new();
    let dir = format!("/wd-{}/sub", marker());
    let (img, _) = root.install_image(json!({"Env": ["PATH=/bin"], "WorkingDir": dir}));
    let before = before(&root);

    let ran = run(&root, &["run", &img, "/bin/probe", "cwd"]);

    ran.assert_ok();
    assert_eq!(ran.stdout, format!("{dir}\n"));
    // assert_clean proves the directory was not created in the image store.
    assert_clean(&root, &before, &[&img]);
}

// ---- signals ----------------------------------------------------------------------------------

#[rstest]
#[case::sigterm(Signal::SIGTERM)]
#[case::sigint(Signal::SIGINT)]
#[case::sighup(Signal::SIGHUP)]
#[case::sigquit(Signal::SIGQUIT)]
fn signal_to_the_runtime_is_forwarded_to_the_container(#[case] sig: Signal) {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let mark = marker();
    let before = before(&root);

    let mut bg = Background::spawn(&root, &["run", &img, "/bin/probe", "trap", &mark]);
    bg.wait_for_line("ready", RUN_TIMEOUT);
    bg.signal(sig);
    let ran = bg.wait(RUN_TIMEOUT);

    let n = sig as i32;
    ran.assert_code(100 + n).assert_stderr_only_runtime();
    assert_eq!(ran.stdout, format!("ready\ncaught={n}\n"));
    assert_clean(&root, &before, &[&img, &mark]);
}

#[rstest]
#[case::sigterm(Signal::SIGTERM)]
#[case::sigint(Signal::SIGINT)]
fn container_ignoring_the_signal_is_killed_after_stop_timeout(#[case] sig: Signal) {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let mark = marker();
    let before = before(&root);

    // A namespace's PID 1 without a handler never dies of a forwarded SIGTERM/SIGINT.
    let script = ready_then_sleep(&mark);
    let mut bg = Background::spawn(
        &root,
        &["run", "--stop-timeout", "1", &img, "/bin/sh", "-c", &script],
    );
    bg.wait_for_line("ready", RUN_TIMEOUT);
    let pid1 = container_pid1(&mark);
    let cgroups = own_cgroup_dirs(pid1);
    let sent = Instant::now();
    bg.signal(sig);
    let ran = bg.wait(Duration::from_secs(20));
    let took = sent.elapsed();

    ran.assert_code(137).assert_stderr_only_runtime();
    assert_eq!(ran.stdout, "ready\n");
    assert!(
        took >= Duration::from_millis(900),
        "killed before the stop timeout: {took:?}"
    );
    assert!(
        took < Duration::from_secs(9),
        "stop timeout of 1s not honoured (the default is 10s): {took:?}"
    );
    let left: Vec<_> = cgroups.iter().filter(|d| d.exists()).collect();
    assert!(left.is_empty(), "cgroup dirs left: {left:?}");
    assert_clean(&root, &before, &[&img, &mark]);
}

#[rstest]
#[case::next_run_starts(&["/bin/probe", "exit", "0"], 0)]
#[case::next_run_fails_to_start(&["/no/such/command"], 127)]
fn sigkill_to_the_runtime_takes_the_container_down_and_next_run_reclaims_its_state(
    #[case] next_command: &[&str],
    #[case] next_code: i32,
) {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let mark = marker();
    let before = before(&root);

    let script = ready_then_sleep(&mark);
    let mut bg = Background::spawn(&root, &["run", &img, "/bin/sh", "-c", &script]);
    bg.wait_for_line("ready", RUN_TIMEOUT);
    container_pid1(&mark);
    bg.signal(Signal::SIGKILL);
    let killed = bg.wait(RUN_TIMEOUT);
    // PR_SET_PDEATHSIG acts asynchronously: give the kernel a bounded moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_with(&mark).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let orphan_alive = !processes_with(&mark).is_empty();
    let mut next_args = vec!["run", img.as_str()];
    next_args.extend_from_slice(next_command);
    // Reclaim runs whether the next container starts or fails before its exec.
    let next = run(&root, &next_args);

    assert_eq!(killed.code, 137, "the runtime itself was SIGKILLed");
    assert!(
        !orphan_alive,
        "container PID 1 survived its runtime's SIGKILL"
    );
    next.assert_code(next_code);
    assert_clean(&root, &before, &[&img, &mark]);
}

#[test]
fn second_stop_signal_kills_at_once_despite_a_long_stop_timeout() {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let mark = marker();
    let before = before(&root);

    let script = ready_then_sleep(&mark);
    let mut bg = Background::spawn(
        &root,
        &[
            "run",
            "--stop-timeout",
            "300",
            &img,
            "/bin/sh",
            "-c",
            &script,
        ],
    );
    bg.wait_for_line("ready", RUN_TIMEOUT);
    container_pid1(&mark);
    let sent = Instant::now();
    // Two different signals: two of the same kind could coalesce into one pending signal.
    bg.signal(Signal::SIGTERM);
    bg.signal(Signal::SIGINT);
    let ran = bg.wait(Duration::from_secs(30));

    ran.assert_code(137).assert_stderr_only_runtime();
    assert_eq!(ran.stdout, "ready\n");
    assert!(
        sent.elapsed() < Duration::from_secs(9),
        "took {:?}",
        sent.elapsed()
    );
    assert_clean(&root, &before, &[&img, &mark]);
}
