//! OCI hooks (issue 31): every phase appends its name and what it read on stdin (the state's
//! `status`, `id`, `pid`) and a random value from its env to one log, bound into the
//! container so `startContainer` (run inside) writes there too; the order and the states are
//! the spec's. A failing or timed-out `createRuntime` hook leaves nothing behind.

use crate::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

use super::oci::{assert_refused, cgroup_dirs, minimal_config, wait_for, Bundle};

/// The hook's script: state fields by parameter expansion (no tool needed), then one line.
const SCRIPT: &str = r#"read -r s || true; st=${s#*\"status\":\"}; st=${st%%\"*}; id=${s#*\"id\":\"}; id=${id%%\"*}; p=${s#*\"pid\":}; p=${p%%,*}; echo "$1 $st $id $p $K" >> "$2""#;

/// A hook running busybox's sh at `shell` that logs `name` to `log`.
fn logging_hook(shell: &Path, name: &str, log: &Path, value: &str) -> Value {
    json!({"path": shell, "args": ["sh", "-c", SCRIPT, "sh", name, log],
           "env": [format!("K={value}")]})
}

/// A bundle whose config has `hooks`, and a `/logdir` bound from the bundle's `logdir`.
fn bundle_with_hooks(hooks: Value, process: Value) -> Bundle {
    let mut mounts = minimal_config()["mounts"].clone();
    mounts.as_array_mut().unwrap().push(json!({
        "destination": "/logdir", "type": "bind", "source": "logdir", "options": ["rbind", "rw"]}));
    let mut b = Bundle::new(json!({"hooks": hooks, "mounts": mounts, "process": process}));
    fs::create_dir(b.dir.join("logdir")).unwrap();
    b.mounts_before = host_mounts();
    b
}

fn log_lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn hooks_run_in_the_specs_order_with_the_state_on_stdin() {
    require_root!();
    let (mark, value) = (marker(), marker());
    // The bundle's path is only known once it exists: the config is written twice.
    let b = bundle_with_hooks(json!({}), json!({}));
    let log = b.dir.join("logdir/hooks.log");
    let shell = busybox();
    let host_hook = |name: &str| logging_hook(&shell, name, &log, &value);
    let inside = logging_hook(
        Path::new("/bin/busybox"),
        "startContainer",
        Path::new("/logdir/hooks.log"),
        &value,
    );
    let failing = json!({"path": shell, "args": ["sh", "-c", "exit 9"]});
    let mut config: Value =
        serde_json::from_str(&fs::read_to_string(b.dir.join("config.json")).unwrap()).unwrap();
    config["hooks"] = json!({
        "prestart": [host_hook("prestart")],
        "createRuntime": [host_hook("createRuntime")],
        "createContainer": [host_hook("createContainer")],
        "startContainer": [inside],
        "poststart": [host_hook("poststart"), failing],
        "poststop": [host_hook("poststop")],
    });
    config["process"]["args"] = json!([
        "/bin/sh",
        "-c",
        format!("echo program >> /logdir/hooks.log; exec sleep 30 # {mark}")
    ]);
    fs::write(b.dir.join("config.json"), config.to_string()).unwrap();
    let cgroups = cgroup_dirs(&format!("devoxx-docker-oci/{}", b.id));

    b.create().assert_code(0);
    let pid = b.state()["pid"].as_i64().unwrap();
    let id = &b.id;
    let created = [
        format!("prestart creating {id} {pid} {value}"),
        format!("createRuntime creating {id} {pid} {value}"),
        format!("createContainer creating {id} {pid} {value}"),
    ];
    assert_eq!(log_lines(&log), created);
    let start = b.oci(&["start", id]);
    start.assert_code(0);
    // A failing poststart hook: a warning, the container runs on.
    assert!(
        start.stderr.contains("warning: poststart hook #1") && start.stderr.lines().count() == 1,
        "{}",
        start.stderr
    );
    wait_for(|| log_lines(&log).len() == 6);
    b.wait_status("running");
    let lines = log_lines(&log);
    assert_eq!(lines[..3], created);
    // Inside the container the init is PID 1; then the program, poststart in any order.
    assert_eq!(lines[3], format!("startContainer created {id} 1 {value}"));
    let mut rest = lines[4..].to_vec();
    rest.sort();
    assert_eq!(
        rest,
        [
            format!("poststart running {id} {pid} {value}"),
            "program".into()
        ]
    );

    b.oci(&["delete", "--force", id]).assert_code(0);
    assert_eq!(
        log_lines(&log).last().unwrap(),
        &format!("poststop stopped {id} 0 {value}")
    );
    b.assert_clean(&mark, &cgroups);
}

/// A `createRuntime` hook that fails (`exit_code`) or outlives its timeout: create fails
/// with one line and nothing remains (no state, cgroup, init or hook process).
fn create_fails_cleanly(hook_script: &str, timeout: Option<u64>, needle: &str, leftover: &str) {
    let mark = marker();
    let mut hook = json!({"path": busybox(), "args": ["sh", "-c", hook_script]});
    if let Some(t) = timeout {
        hook["timeout"] = json!(t);
    }
    let b = bundle_with_hooks(
        json!({"createRuntime": [hook]}),
        json!({"args": ["/bin/sh", "-c", format!("exec sleep 30 # {mark}")]}),
    );
    let cgroups: Vec<PathBuf> = cgroup_dirs(&format!("devoxx-docker-oci/{}", b.id));
    let started = Instant::now();
    assert_refused(&b.create(), needle);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert!(!b.oci_state_dir().join(&b.id).exists(), "state left");
    assert!(processes_with(&b.id).is_empty(), "the init survived");
    assert!(processes_with(leftover).is_empty(), "the hook survived");
    b.assert_clean(&mark, &cgroups);
}

#[test]
fn a_failing_create_runtime_hook_leaves_no_container() {
    require_root!();
    let code = random_in(3..=99);
    create_fails_cleanly(
        &format!("exit {code}"),
        None,
        &format!(
            "createRuntime hook #0 ({}): it exited with exit status: {code}",
            busybox().display()
        ),
        "exit-never-matches-a-process",
    );
}

#[test]
fn a_hook_past_its_timeout_is_killed_with_its_children() {
    require_root!();
    let n = random_in(100_000..=999_999);
    create_fails_cleanly(
        &format!("sleep {n}; true"),
        Some(1),
        "killed after its timeout of 1 s",
        &format!("sleep {n}"),
    );
}
