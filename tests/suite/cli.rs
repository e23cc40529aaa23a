//! Workshop step "CLI": help and version, and every kind of bad input ending in exit code 125
//! with one clear `devoxx-docker:` line on stderr and nothing changed.

use crate::common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::run::*;
use common::*;
use rstest::rstest;
use serde_json::json;

/// The standard test image: busybox + probe, PATH set, a shell as default command.
fn image(root: &TestRoot) -> (String, String) {
    root.install_image(json!({"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]}))
}

/// `--help` (of the whole CLI or of one command) exits 0, prints nothing on stderr, and names
/// every one of `words` on stdout.
#[rstest]
#[case::help_lists_every_command(&["--help"], &["pull", "run", "images", "rmi"])]
#[case::run_help_lists_the_contract_options(
    &["run", "--help"],
    &[
        "--hostname",
        "--memory",
        "--cpus",
        "--pids-limit",
        "--volume",
        "--env",
        "--workdir",
        "--network",
        "IMAGE",
    ]
)]
#[case::pull_help_describes_the_image_argument(&["pull", "--help"], &["IMAGE"])]
fn help_names(#[case] args: &[&str], #[case] words: &[&str]) {
    let root = TestRoot::new();

    let ran = run(&root, args);

    ran.assert_code(0);
    assert_eq!(ran.stderr, "");
    for word in words {
        assert!(
            ran.stdout.contains(word),
            "{args:?} lacks {word}: {}",
            ran.stdout
        );
    }
}

#[test]
fn version_prints_name_and_version() {
    let root = TestRoot::new();

    let ran = run(&root, &["--version"]);

    ran.assert_code(0);
    assert_eq!(ran.stderr, "");
    // runc's lines: `NAME version X.Y.Z`, then the OCI runtime spec implemented.
    let lines: Vec<&str> = ran.stdout.lines().collect();
    let version = lines[0]
        .strip_prefix("devoxx-docker version ")
        .unwrap_or_else(|| panic!("{:?}", ran.stdout));
    assert!(
        version.split('.').count() >= 3 && version.split('.').all(|p| !p.is_empty()),
        "{:?}",
        ran.stdout
    );
    assert!(
        lines.iter().any(|l| l.starts_with("spec: 1.")),
        "{:?}",
        ran.stdout
    );
}

/// A usage error: exit 125, stdout empty, stderr names the offending word.
fn assert_usage_error(ran: &Ran, offending: &str) {
    ran.assert_code(125);
    assert_eq!(ran.stdout, "", "usage errors print nothing on stdout");
    assert!(
        ran.stderr.contains(offending),
        "stderr should name {offending:?}: {}",
        ran.stderr
    );
}

/// Usage errors exit 125 with nothing on stdout, name the offending word (`WORD` stands for a
/// random one, `IMAGE` for a stored image) and change nothing.
#[rstest]
#[case::unknown_run_option_exits_125_and_runs_nothing(
    &["run", "--bogus-WORD", "IMAGE", "/bin/probe", "echo", "ran"],
    "--bogus-WORD"
)]
#[case::unknown_subcommand_exits_125(&["frob-WORD"], "frob-WORD")]
#[case::run_without_an_image_exits_125(&["run"], "IMAGE")]
#[case::non_numeric_stop_timeout_exits_125(
    &["run", "--stop-timeout", "WORD", "IMAGE", "/bin/true"],
    "WORD"
)]
fn usage_error(#[case] template: &[&str], #[case] offending: &str) {
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let word = marker();
    let args: Vec<String> = template
        .iter()
        .map(|a| a.replace("WORD", &word).replace("IMAGE", &img))
        .collect();
    let offending = offending.replace("WORD", &word);
    let before = before(&root);

    let ran = run(&root, &args.iter().map(String::as_str).collect::<Vec<_>>());

    assert_usage_error(&ran, &offending);
    assert_clean(&root, &before, &[&img]);
}

#[test]
fn invalid_hostname_exits_125_with_one_line() {
    require_root!();
    let arranged = Arranged::standard();
    // The kernel caps a UTS hostname at 64 bytes.
    let too_long = "h".repeat(65 + random_in(0..=30) as usize);
    let host = host_hostname();

    let ran = arranged.run(&["--hostname", &too_long], &["/bin/probe", "echo", "ran"]);

    ran.assert_code(125).assert_one_error_line();
    assert_eq!(host_hostname(), host);
    arranged.assert_clean(&[]);
}

#[test]
fn non_root_run_exits_125_with_one_line_naming_root() {
    if !is_root() {
        skip!("needs root to switch to an unprivileged user");
    }
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let before = before(&root);

    let out = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(runtime())
        .args(["run", &img, "/bin/probe", "echo", "ran"])
        .env("DEVOXX_ROOT", root.store())
        .env("DEVOXX_VOLUMES", root.volumes())
        .output();
    let Ok(out) = out else {
        skip!("setpriv not available");
    };
    let ran = Ran::from_output(&out);

    ran.assert_code(125).assert_one_error_line();
    assert!(
        ran.stderr.contains("root"),
        "the error should say root is needed: {}",
        ran.stderr
    );
    assert_clean(&root, &before, &[&img]);
}

/// A loopback port with nothing listening (bound then released).
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[test]
fn run_of_an_image_no_registry_serves_exits_125_and_leaves_the_store_as_it_was() {
    require_root!();
    let root = TestRoot::new();
    let (img, _) = image(&root);
    let reference = format!(
        "127.0.0.1:{}/missing-{}:v{}",
        closed_port(),
        marker(),
        random_in(1..=99)
    );
    let before = before(&root);
    let started = Instant::now();

    let ran = run(&root, &["run", &reference, "/bin/probe", "echo", "ran"]);

    ran.assert_code(125).assert_one_error_line();
    assert!(
        ran.stderr.contains("missing-"),
        "the error should name the image: {}",
        ran.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "a refused connection took {:?}",
        started.elapsed()
    );
    assert_clean(&root, &before, &[&img]);
    let staging: Vec<_> = std::fs::read_dir(root.store().join(".staging"))
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(staging.is_empty(), "pull left staging files: {staging:?}");
}

#[test]
fn run_of_a_local_only_name_that_is_missing_exits_125_with_a_clear_message() {
    require_root!();
    let arranged = Arranged::standard();
    let name = format!("nosuch-{}", marker());

    let ran = run(&arranged.root, &["run", &name, "/bin/probe", "echo", "ran"]);

    ran.assert_code(125).assert_one_error_line();
    assert!(
        ran.stderr.contains(&name),
        "the error should name the image: {}",
        ran.stderr
    );
    arranged.assert_clean(&[]);
}

#[test]
fn run_pulls_a_missing_image_then_runs_it_keeping_pull_messages_off_stdout() {
    require_root!();
    let root = TestRoot::new();
    let Some(registry) = Registry::start(root.dir.path()) else {
        skip!("docker-registry not installed");
    };
    let word = marker();
    let repo = format!("suite/img-{}", marker());
    let pushed =
        registry.push_test_image(root.dir.path(), &repo, "v1", &["/bin/probe", "echo", &word]);
    let Some((reference, mark)) = pushed else {
        skip!("umoci or skopeo not installed");
    };
    let before = before(&root);

    let first = run(&root, &["run", &reference]);
    let stored = store_snapshot(&root);
    let second = run(&root, &["run", &reference, "/bin/probe", "cat", "/marker"]);

    first.assert_ok();
    assert_eq!(
        first.stdout,
        format!("{word}\n"),
        "pull output leaked onto stdout"
    );
    assert!(
        stored.len() > before.store.len(),
        "nothing was stored by the pull"
    );
    second.assert_ok();
    assert_eq!(second.stdout, mark);
    drop(registry);
    assert_no_leaks(&root, &before.mounts, &repo);
}
