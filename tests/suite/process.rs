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

// ---- exit codes -------------------------------------------------------------------------------

#[test]
fn successful_command_exits_0_with_its_output_on_stdout() {
    require_root!();
    let word = marker();

    let ran = clean_run(standard_config(), &[], &["/bin/probe", "echo", &word]);

    assert_eq!(ran.stdout, format!("{word}\n"));
}

#[test]
fn exit_code_is_the_commands_own() {
    require_root!();
    let arranged = Arranged::standard();
    let code = random_in(1..=120);

    let ran = arranged.run(&[], &["/bin/probe", "exit", &code.to_string()]);

    ran.assert_code(code as i32).assert_stderr_only_runtime();
    assert_eq!(ran.stdout, "");
    arranged.assert_clean(&[]);
}

#[rstest]
#[case::segv("segv", 139)]
#[case::ill("ill", 132)]
#[case::trap("trap", 133)]
#[case::fpe("fpe", 136)]
fn death_by_cpu_fault_exits_128_plus_signal(#[case] fault: &str, #[case] code: i32) {
    require_root!();
    let arranged = Arranged::standard();

    let ran = arranged.run(&[], &["/bin/probe", "fault", fault]);

    ran.assert_code(code).assert_stderr_only_runtime();
    assert_eq!(ran.stdout, "");
    arranged.assert_clean(&[]);
}

#[test]
fn sigkill_to_pid_1_from_the_host_exits_137_and_removes_its_cgroup() {
    require_root!();
    let arranged = Arranged::standard();
    let mark = marker();

    let (mut bg, pid1) = arranged.spawn_sleeper(&[], &mark);
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
    arranged.assert_clean(&[&mark]);
}

#[rstest]
#[case::plain_file("/marker")]
#[case::directory("/bin")]
fn command_that_is_not_executable_exits_126(#[case] command: &str) {
    require_root!();
    let arranged = Arranged::standard();

    let ran = arranged.run(&[], &[command]);

    ran.assert_code(126).assert_one_error_line();
    assert!(
        ran.stderr.contains(command),
        "error should name {command}: {}",
        ran.stderr
    );
    arranged.assert_clean(&[]);
}

#[rstest]
#[case::looked_up_in_path(false)]
#[case::absolute_path(true)]
fn missing_command_exits_127(#[case] absolute: bool) {
    require_root!();
    let arranged = Arranged::standard();
    let name = format!("cmd-{}", marker());
    let command = if absolute {
        format!("/bin/{name}")
    } else {
        name.clone()
    };

    let ran = arranged.run(&[], &[&command, "arg"]);

    ran.assert_code(127).assert_one_error_line();
    assert!(
        ran.stderr.contains(&name),
        "error should name the command: {}",
        ran.stderr
    );
    arranged.assert_clean(&[]);
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
    let spaced = format!("{}  {}", marker(), marker());

    let script = "for a in \"$@\"; do echo \"[$a]\"; done";
    let ran = clean_run(
        standard_config(),
        &[],
        &[
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

    assert_eq!(
        ran.stdout,
        format!("[--hostname]\n[-e]\n[{spaced}]\n[]\n[--help]\n")
    );
}

// ---- stdio ------------------------------------------------------------------------------------

#[test]
fn stdin_reaches_the_command() {
    require_root!();
    let arranged = Arranged::standard();
    let input = format!(
        "{}\n{}\nno newline at end {}",
        marker(),
        marker(),
        random_in(0..=u32::MAX as u64)
    );

    let ran = run_with_stdin(
        &arranged.root,
        &["run", &arranged.img, "/bin/probe", "stdin"],
        input.as_bytes(),
    );

    ran.assert_ok();
    assert_eq!(ran.stdout, input);
    arranged.assert_clean(&[]);
}

#[test]
fn stderr_of_the_command_lands_on_stderr_only() {
    require_root!();
    let arranged = Arranged::standard();
    let msg = format!("err-{}", marker());

    let ran = arranged.run(&[], &["/bin/probe", "stderr", &msg]);

    ran.assert_code(0);
    assert_eq!(ran.stdout, "", "stderr output leaked onto stdout");
    assert_eq!(
        ran.container_stderr(),
        [msg.as_str()],
        "container's stderr: {:?}",
        ran.stderr
    );
    arranged.assert_clean(&[]);
}

#[test]
fn stdout_and_stderr_stay_separate_in_one_run() {
    require_root!();
    let arranged = Arranged::standard();
    let (out, err) = (format!("out-{}", marker()), format!("err-{}", marker()));

    let script = format!("/bin/probe echo {out}; /bin/probe stderr {err}; /bin/probe echo {out}");
    let ran = arranged.run(&[], &["/bin/sh", "-c", &script]);

    ran.assert_code(0);
    assert_eq!(ran.stdout, format!("{out}\n{out}\n"));
    assert_eq!(ran.container_stderr(), [err.as_str()]);
    arranged.assert_clean(&[]);
}

// ---- image config: Entrypoint / Cmd / Env / WorkingDir -----------------------------------------

#[test]
fn image_cmd_runs_when_no_command_is_given() {
    require_root!();
    let word = marker();
    let config = json!({"Env": ["PATH=/bin"], "Cmd": ["/bin/probe", "echo", word]});

    let ran = clean_run(config, &[], &[]);

    assert_eq!(ran.stdout, format!("{word}\n"));
}

#[test]
fn given_command_replaces_the_image_cmd() {
    require_root!();
    let (unwanted, wanted) = (marker(), marker());
    let config = json!({"Env": ["PATH=/bin"], "Cmd": ["/bin/probe", "echo", unwanted]});

    let ran = clean_run(config, &[], &["probe", "echo", &wanted]);

    assert_eq!(ran.stdout, format!("{wanted}\n"));
}

#[test]
fn entrypoint_is_prefixed_to_cmd_or_to_the_given_arguments() {
    require_root!();
    let (first, default_arg, given) = (marker(), marker(), marker());
    let arranged = Arranged::new(json!({
        "Env": ["PATH=/bin"],
        "Entrypoint": ["/bin/probe", "echo", first],
        "Cmd": [default_arg],
    }));

    let default = arranged.run(&[], &[]);
    let overridden = arranged.run(&[], &[&given]);

    default.assert_ok();
    assert_eq!(default.stdout, format!("{first} {default_arg}\n"));
    overridden.assert_ok();
    assert_eq!(overridden.stdout, format!("{first} {given}\n"));
    arranged.assert_clean(&[]);
}

#[test]
fn no_command_anywhere_is_a_runtime_error_125() {
    require_root!();
    let arranged = Arranged::new(json!({"Env": ["PATH=/bin"]}));

    let ran = arranged.run(&[], &[]);

    ran.assert_code(125).assert_one_error_line();
    arranged.assert_clean(&[]);
}

/// `KEY=VALUE` lines of `probe env` output.
fn env_of(stdout: &str) -> Vec<&str> {
    stdout.lines().collect()
}

#[test]
fn image_env_is_set() {
    require_root!();
    let (key, value) = (
        format!("K_{}", marker().to_uppercase()),
        format!("v {}=x", marker()),
    );
    let config = json!({"Env": ["PATH=/bin", format!("{key}={value}")]});

    let ran = clean_run(config, &[], &["probe", "env"]);

    let env = env_of(&ran.stdout);
    assert!(env.contains(&format!("{key}={value}").as_str()), "{env:?}");
    assert!(env.contains(&"PATH=/bin"), "{env:?}");
    assert!(
        !env.iter().any(|l| l.starts_with("DEVOXX_")),
        "runtime env leaked: {env:?}"
    );
}

#[test]
fn env_option_overrides_the_image_and_adds_variables() {
    require_root!();
    let key = format!("K_{}", marker().to_uppercase());
    let added = format!("A_{}", marker().to_uppercase());
    let (old, new, add) = (marker(), marker(), marker());
    let config = json!({"Env": ["PATH=/bin", format!("{key}={old}")]});

    let (new_env, added_env) = (format!("{key}={new}"), format!("{added}={add}"));
    let ran = clean_run(
        config,
        &["-e", &new_env, "--env", &added_env],
        &["probe", "env"],
    );

    let env = env_of(&ran.stdout);
    let ours: Vec<&&str> = env
        .iter()
        .filter(|l| l.starts_with(&format!("{key}=")))
        .collect();
    assert_eq!(ours, [&new_env.as_str()], "{env:?}");
    assert!(env.contains(&added_env.as_str()), "{env:?}");
}

/// The command starts in `-w`/`--workdir` if given, else in the image's WorkingDir, else in `/`.
#[rstest]
#[case::root_by_default(standard_config(), &[], "/")]
#[case::image_workingdir_is_the_cwd(json!({"Env": ["PATH=/bin"], "WorkingDir": "/var"}), &[], "/var")]
#[case::short_workdir_option_overrides_the_image_workingdir(
    json!({"Env": ["PATH=/bin"], "WorkingDir": "/var"}),
    &["-w", "/tmp"],
    "/tmp"
)]
#[case::long_workdir_option_overrides_the_image_workingdir(
    json!({"Env": ["PATH=/bin"], "WorkingDir": "/var"}),
    &["--workdir", "/data"],
    "/data"
)]
fn cwd_is_the_workdir_option_else_the_images_workingdir_else_root(
    #[case] config: serde_json::Value,
    #[case] options: &[&str],
    #[case] cwd: &str,
) {
    require_root!();

    let ran = clean_run(config, options, &["/bin/probe", "cwd"]);

    assert_eq!(ran.stdout, format!("{cwd}\n"));
}

#[test]
fn missing_workingdir_is_created_inside_the_container_only() {
    require_root!();
    let dir = format!("/wd-{}/sub", marker());
    let config = json!({"Env": ["PATH=/bin"], "WorkingDir": dir});

    // clean_run_stdout's store check proves the directory was not created in the image store.
    let ran = clean_run(config, &[], &["/bin/probe", "cwd"]);

    assert_eq!(ran.stdout, format!("{dir}\n"));
}

// ---- signals ----------------------------------------------------------------------------------

#[rstest]
#[case::sigterm(Signal::SIGTERM)]
#[case::sigint(Signal::SIGINT)]
#[case::sighup(Signal::SIGHUP)]
#[case::sigquit(Signal::SIGQUIT)]
fn signal_to_the_runtime_is_forwarded_to_the_container(#[case] sig: Signal) {
    require_root!();
    let arranged = Arranged::standard();
    let mark = marker();

    let mut bg = arranged.spawn(&[], &["/bin/probe", "trap", &mark]);
    bg.wait_for_line("ready", RUN_TIMEOUT);
    bg.signal(sig);
    let ran = bg.wait(RUN_TIMEOUT);

    let n = sig as i32;
    ran.assert_code(100 + n).assert_stderr_only_runtime();
    assert_eq!(ran.stdout, format!("ready\ncaught={n}\n"));
    arranged.assert_clean(&[&mark]);
}

#[rstest]
#[case::sigterm(Signal::SIGTERM)]
#[case::sigint(Signal::SIGINT)]
fn container_ignoring_the_signal_is_killed_after_stop_timeout(#[case] sig: Signal) {
    require_root!();
    let arranged = Arranged::standard();
    let mark = marker();

    // A namespace's PID 1 without a handler never dies of a forwarded SIGTERM/SIGINT.
    let (mut bg, pid1) = arranged.spawn_sleeper(&["--stop-timeout", "1"], &mark);
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
    arranged.assert_clean(&[&mark]);
}

#[rstest]
#[case::next_run_starts(&["/bin/probe", "exit", "0"], 0)]
#[case::next_run_fails_to_start(&["/no/such/command"], 127)]
fn sigkill_to_the_runtime_takes_the_container_down_and_next_run_reclaims_its_state(
    #[case] next_command: &[&str],
    #[case] next_code: i32,
) {
    require_root!();
    let arranged = Arranged::standard();
    let mark = marker();

    let (mut bg, _) = arranged.spawn_sleeper(&[], &mark);
    bg.signal(Signal::SIGKILL);
    let killed = bg.wait(RUN_TIMEOUT);
    // PR_SET_PDEATHSIG acts asynchronously: give the kernel a bounded moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_with(&mark).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let orphan_alive = !processes_with(&mark).is_empty();
    // Reclaim runs whether the next container starts or fails before its exec.
    let next = arranged.run(&[], next_command);

    assert_eq!(killed.code, 137, "the runtime itself was SIGKILLed");
    assert!(
        !orphan_alive,
        "container PID 1 survived its runtime's SIGKILL"
    );
    next.assert_code(next_code);
    arranged.assert_clean(&[&mark]);
}

#[test]
fn second_stop_signal_kills_at_once_despite_a_long_stop_timeout() {
    require_root!();
    let arranged = Arranged::standard();
    let mark = marker();

    let (mut bg, _) = arranged.spawn_sleeper(&["--stop-timeout", "300"], &mark);
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
    arranged.assert_clean(&[&mark]);
}
