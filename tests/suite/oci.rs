//! The OCI runtime command line (issue 31): `create`/`start`/`state`/`kill`/`delete`/`ps` on a
//! bundle the tests make (busybox + probe laid out as `rootfs/`, a `config.json` per test),
//! driven the way engines drive runc: `--root DIR` before the subcommand, options after the id.
//! The spec's lifecycle and each MUST-error, the state JSON, config fields seen from inside
//! the container, unsupported fields refused; every test checks nothing is left behind.

use crate::common;

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::run::{Ran, PREFIX};
use common::*;
use serde_json::{json, Value};

/// A test's bundle under its own root, plus where the container's stdout/stderr go.
pub(super) struct Bundle {
    pub(super) root: TestRoot,
    pub(super) dir: PathBuf,
    pub(super) id: String,
    pub(super) mounts_before: String,
}

impl Bundle {
    /// A bundle whose config is the minimal one with `extra` merged in.
    pub(super) fn new(extra: Value) -> Bundle {
        let root = TestRoot::new();
        let dir = root.dir.path().join("bundle");
        build_rootfs(&dir.join("rootfs"));
        let mut config = minimal_config();
        merge(&mut config, extra);
        fs::write(dir.join("config.json"), config.to_string()).expect("config.json");
        Bundle {
            mounts_before: host_mounts(),
            id: format!("oci-{}", marker()),
            root,
            dir,
        }
    }

    /// `devoxx-docker --root STORE ARGS...`, both streams captured.
    pub(super) fn oci(&self, args: &[&str]) -> Ran {
        let out = Command::new(runtime())
            .arg("--root")
            .arg(self.root.store())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("spawn the runtime");
        Ran::from_output(&out)
    }

    /// `create ID --bundle DIR --pid-file FILE` (options after the id, as some callers write
    /// it); the container's stdout/stderr go to files (it keeps them open after create).
    pub(super) fn create(&self) -> Ran {
        self.create_as(&self.id)
    }

    pub(super) fn create_as(&self, id: &str) -> Ran {
        let status = Command::new(runtime())
            .arg("--root")
            .arg(self.root.store())
            .args(["create", id, "--bundle"])
            .arg(&self.dir)
            .arg("--pid-file")
            .arg(self.pid_file())
            .stdin(Stdio::null())
            .stdout(File::create(self.dir.join("out")).expect("out"))
            .stderr(File::create(self.dir.join("err")).expect("err"))
            .status()
            .expect("spawn create");
        Ran {
            code: status.code().unwrap_or(-1),
            stdout: String::new(),
            stderr: fs::read_to_string(self.dir.join("err")).unwrap_or_default(),
        }
    }

    pub(super) fn pid_file(&self) -> PathBuf {
        self.dir.join("pid")
    }

    /// What the container printed so far.
    pub(super) fn output(&self) -> String {
        fs::read_to_string(self.dir.join("out")).unwrap_or_default()
    }

    pub(super) fn state(&self) -> Value {
        let ran = self.oci(&["state", &self.id]);
        ran.assert_code(0);
        serde_json::from_str(&ran.stdout).unwrap_or_else(|e| panic!("{e}: {}", ran.stdout))
    }

    pub(super) fn status(&self) -> String {
        self.state()["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Wait until `state` says `want`.
    pub(super) fn wait_status(&self, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let now = self.status();
            if now == want {
                return;
            }
            assert!(Instant::now() < deadline, "status {now}, wanted {want}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(super) fn oci_state_dir(&self) -> PathBuf {
        self.root.store().join(".oci")
    }

    /// Nothing left: no mount, no process with `marker`, no state, no cgroup at `cgroup`.
    pub(super) fn assert_clean(&self, marker: &str, cgroups: &[PathBuf]) {
        assert_no_leaks(&self.root, &self.mounts_before, marker);
        let left: Vec<_> = fs::read_dir(self.oci_state_dir())
            .map(|rd| rd.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "OCI state left behind: {left:?}");
        for dir in cgroups {
            assert!(!dir.exists(), "cgroup {} left behind", dir.display());
        }
    }
}

impl Drop for Bundle {
    /// A failed test still takes its container down.
    fn drop(&mut self) {
        let _ = self.oci(&["delete", "--force", &self.id]);
    }
}

/// The smallest useful config: the spec's namespaces and /proc, /dev, /sys mounts.
pub(super) fn minimal_config() -> Value {
    json!({
        "ociVersion": "1.1.0",
        "root": {"path": "rootfs"},
        "process": {
            "args": ["/bin/true"],
            "env": ["PATH=/bin"],
            "cwd": "/",
            "user": {"uid": 0, "gid": 0},
        },
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
        ],
        "linux": {
            "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"},
                           {"type": "ipc"}, {"type": "network"}],
            "maskedPaths": ["/proc/kcore"],
            "readonlyPaths": ["/proc/sys"],
        },
    })
}

pub(super) fn merge(into: &mut Value, extra: Value) {
    match (into, extra) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, value) => *slot = value,
    }
}

/// A script as the container's process.
pub(super) fn script(text: &str) -> Value {
    json!({"process": {"args": ["/bin/sh", "-c", text]}})
}

/// The container's cgroup directories under `rel` (each v1 hierarchy, or the v2 tree).
pub(super) fn cgroup_dirs(rel: &str) -> Vec<PathBuf> {
    if common::cgroup::is_v2() {
        return vec![Path::new(common::cgroup::V2_ROOT).join(rel)];
    }
    ["memory", "cpu", "pids"]
        .into_iter()
        .filter_map(common::cgroup::v1_mount)
        .map(|m| m.join(rel))
        .collect()
}

pub(super) fn assert_refused(ran: &Ran, needle: &str) {
    ran.assert_code(125);
    let lines: Vec<&str> = ran.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {:?}", ran.stderr);
    assert!(
        lines[0].starts_with(PREFIX) && lines[0].contains(needle),
        "{needle:?} in {:?}",
        lines[0]
    );
}

#[test]
fn create_waits_for_start_then_runs_the_program_and_delete_cleans_up() {
    require_root!();
    let mark = marker();
    let b = Bundle::new(script(&format!("echo {mark}-$$")));
    let cgroups = cgroup_dirs(&format!("devoxx-docker-oci/{}", b.id));

    b.create().assert_code(0);

    let state = b.state();
    assert_eq!(state["status"], "created");
    let pid = state["pid"].as_i64().expect("pid") as i32;
    assert_eq!(
        fs::read_to_string(b.pid_file()).expect("pid file").trim(),
        pid.to_string()
    );
    assert!(Path::new(&format!("/proc/{pid}")).exists(), "init alive");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(b.output(), "", "nothing runs before start");
    assert!(cgroups.iter().all(|d| d.is_dir()), "cgroup made at create");
    b.oci(&["start", &b.id]).assert_code(0);
    b.wait_status("stopped");
    // PID 1 of its own PID namespace.
    assert_eq!(b.output(), format!("{mark}-1\n"));
    b.oci(&["delete", &b.id]).assert_code(0);
    let gone = b.oci(&["state", &b.id]);
    assert_refused(&gone, "container does not exist");
    b.assert_clean(&mark, &cgroups);
}

#[test]
fn must_errors_change_nothing() {
    require_root!();
    let mark = marker();
    let b = Bundle::new(script(&format!("echo {mark}; exec sleep 30")));
    let cgroups = cgroup_dirs(&format!("devoxx-docker-oci/{}", b.id));
    b.create().assert_code(0);
    let pid = b.state()["pid"].clone();

    // A duplicate id: refused, the first container untouched (same pid, still created).
    let other_pid_file = b.pid_file();
    fs::write(&other_pid_file, "keep").expect("pid file");
    assert_refused(&b.create(), "already exists");
    assert_eq!(fs::read_to_string(&other_pid_file).unwrap(), "keep");
    assert_eq!(b.state()["pid"], pid);
    assert_eq!(b.status(), "created");
    // delete of a created container without --force.
    assert_refused(&b.oci(&["delete", &b.id]), "not stopped");
    assert_eq!(b.status(), "created");

    b.oci(&["start", &b.id]).assert_code(0);
    b.wait_status("running");
    // start again, delete of a running one.
    assert_refused(&b.oci(&["start", &b.id]), "not created");
    assert_refused(&b.oci(&["delete", &b.id]), "not stopped");
    assert_eq!(b.status(), "running");
    assert_eq!(b.state()["pid"], pid);

    b.oci(&["kill", &b.id, "KILL"]).assert_code(0);
    b.wait_status("stopped");
    assert_refused(&b.oci(&["start", &b.id]), "not created");
    assert_refused(&b.oci(&["kill", &b.id]), "stopped");
    b.oci(&["delete", &b.id]).assert_code(0);

    // Unknown ids: the spec's words, which engines match on.
    let unknown = format!("none-{}", marker());
    for args in [
        vec!["state", &unknown],
        vec!["start", &unknown],
        vec!["kill", &unknown, "TERM"],
        vec!["delete", &unknown],
    ] {
        assert_refused(&b.oci(&args), "container does not exist");
    }
    // ...except `delete --force`, which succeeds as runc's does (podman's cleanup after a
    // failed create).
    b.oci(&["delete", "--force", &unknown]).assert_code(0);
    b.assert_clean(&mark, &cgroups);
}

#[test]
fn state_has_every_field_of_the_spec() {
    require_root!();
    let (mark, note) = (marker(), marker());
    let b = Bundle::new(json!({
        "annotations": {"org.example.note": note},
        "process": {"args": ["/bin/sh", "-c", format!("exec sleep 30 # {mark}")]},
    }));
    let before = std::time::SystemTime::now();
    b.create().assert_code(0);

    let state = b.state();

    let keys: Vec<&String> = state.as_object().expect("object").keys().collect();
    for key in [
        "ociVersion",
        "id",
        "status",
        "pid",
        "bundle",
        "rootfs",
        "created",
        "owner",
        "annotations",
    ] {
        assert!(state.get(key).is_some(), "{key} missing in {keys:?}");
    }
    assert!(state["ociVersion"].as_str().unwrap().starts_with("1."));
    assert_eq!(state["id"], b.id.as_str());
    assert_eq!(state["status"], "created");
    assert!(state["pid"].as_i64().unwrap() > 1);
    let bundle = b.dir.canonicalize().unwrap();
    assert_eq!(state["bundle"], bundle.to_str().unwrap());
    assert_eq!(state["rootfs"], bundle.join("rootfs").to_str().unwrap());
    assert_eq!(state["annotations"]["org.example.note"], note.as_str());
    let created = chrono::DateTime::parse_from_rfc3339(state["created"].as_str().unwrap())
        .expect("created is RFC 3339");
    let created = std::time::SystemTime::from(created);
    assert!(created >= before - Duration::from_secs(1));
    // ps lists the init.
    let ps = b.oci(&["ps", "--format", "json", &b.id]);
    ps.assert_code(0);
    let pids: Vec<i64> = serde_json::from_str(&ps.stdout).expect("json array");
    assert_eq!(pids, vec![state["pid"].as_i64().unwrap()]);

    b.oci(&["delete", "--force", &b.id]).assert_code(0);
    b.assert_clean(&mark, &[]);
}

#[test]
fn kill_takes_numbers_and_names_and_delete_force_kills() {
    require_root!();
    let (mark, code) = (marker(), random_in(3..=99));
    // PID 1 only gets the signals it handles: the trap proves which one came.
    let b = Bundle::new(script(&format!(
        "trap 'echo got-usr1-{mark}' USR1; trap 'echo got-term; exit {code}' TERM; \
         echo ready; while :; do sleep 0.05; done"
    )));
    let cgroups = cgroup_dirs(&format!("devoxx-docker-oci/{}", b.id));
    b.create().assert_code(0);
    b.oci(&["start", &b.id]).assert_code(0);
    wait_for(|| b.output().contains("ready"));

    for usr1 in ["USR1", "SIGUSR1", &(libc::SIGUSR1).to_string()] {
        let before = b.output().matches("got-usr1").count();
        b.oci(&["kill", &b.id, usr1]).assert_code(0);
        wait_for(|| b.output().matches("got-usr1").count() == before + 1);
    }
    assert_refused(&b.oci(&["kill", &b.id, "NOSUCHSIG"]), "invalid signal");
    b.oci(&["kill", &b.id]).assert_code(0); // TERM by default
    b.wait_status("stopped");
    assert!(b.output().contains("got-term"), "{}", b.output());
    b.oci(&["delete", &b.id]).assert_code(0);

    // delete --force of a running container (and kill --all).
    let b2 = Bundle::new(script(&format!("exec sleep 300 # {mark}")));
    b2.create().assert_code(0);
    b2.oci(&["start", &b2.id]).assert_code(0);
    b2.wait_status("running");
    b2.oci(&["kill", "--all", &b2.id, "STOP"]).assert_code(0);
    b2.oci(&["delete", "--force", &b2.id]).assert_code(0);
    assert_refused(&b2.oci(&["state", &b2.id]), "does not exist");
    b.assert_clean(&mark, &cgroups);
    b2.assert_clean(&mark, &cgroup_dirs(&format!("devoxx-docker-oci/{}", b2.id)));
}

#[test]
fn config_fields_reach_the_container() {
    require_root!();
    let (mark, host, value) = (marker(), format!("h-{}", marker()), marker());
    let nofile = random_in(100..=900);
    let memory: u64 = random_in(64..=128) << 20;
    let cwd = format!("/w-{}", marker());
    let cgroup_rel = format!("oci-test-{}/{}", marker(), marker());
    let text = format!(
        "hostname; echo $V; pwd; ulimit -n; grep -c ' /scratch tmpfs ' /proc/mounts; \
         touch /scratch/ok && echo tmpfs-writable; touch /x 2>/dev/null || echo root-ro; \
         cat /proc/self/oom_score_adj; # {mark}"
    );
    let oom = random_in(1..=500) as i64;
    let b = Bundle::new(json!({
        "root": {"readonly": true},
        "hostname": host,
        "process": {
            "args": ["/bin/sh", "-c", text],
            "env": ["PATH=/bin", format!("V={value}")],
            "cwd": cwd,
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": nofile, "hard": nofile}],
            "oomScoreAdj": oom,
        },
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["mode=755"]},
            {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m"]},
        ],
        "linux": {
            "cgroupsPath": format!("/{cgroup_rel}"),
            "resources": {"memory": {"limit": memory}, "pids": {"limit": 50}},
        },
    }));
    fs::create_dir(b.dir.join("rootfs").join(cwd.trim_start_matches('/'))).unwrap();
    let cgroups = cgroup_dirs(&cgroup_rel);
    b.create().assert_code(0);

    let limit_file = if common::cgroup::is_v2() {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    let written = cgroups
        .iter()
        .find_map(|d| fs::read_to_string(d.join(limit_file)).ok())
        .expect("memory limit file");
    assert_eq!(written.trim(), memory.to_string());
    b.oci(&["start", &b.id]).assert_code(0);
    b.wait_status("stopped");
    let out = b.output();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            host.as_str(),
            &value,
            &cwd,
            &nofile.to_string(),
            "1",
            "tmpfs-writable",
            "root-ro",
            &oom.to_string()
        ],
        "stderr: {}",
        fs::read_to_string(b.dir.join("err")).unwrap_or_default()
    );
    b.oci(&["delete", &b.id]).assert_code(0);
    b.assert_clean(&mark, &cgroups);
    // Its parent stays, as with runc; remove it.
    for d in &cgroups {
        let _ = fs::remove_dir(d.parent().unwrap());
    }
}

#[test]
fn binds_masks_identity_and_capabilities_follow_the_config() {
    require_root!();
    let mark = marker();
    let (uid, gid, extra) = (
        random_in(1000..=60000),
        random_in(1000..=60000),
        random_in(1000..=60000),
    );
    let text = format!(
        "cat /data/{mark}; opts() {{ awk -v m=$1 '$2 == m {{ print $4 }}' /proc/mounts | cut -d, -f1; }}; \
         opts /data; stat -c %t:%T /proc/version; opts /proc/sys; \
         grep -E '^(Uid|Gid|Groups|CapEff|CapBnd|CapAmb|NoNewPrivs):' /proc/self/status"
    );
    let mut b = Bundle::new(json!({
        "process": {
            "args": ["/bin/sh", "-c", text],
            "user": {"uid": uid, "gid": gid, "additionalGids": [extra]},
            "noNewPrivileges": true,
            // A non-root process keeps across exec only its ambient capabilities.
            "capabilities": {"bounding": ["CAP_KILL", "CAP_CHOWN"], "effective": ["CAP_KILL"],
                             "permitted": ["CAP_KILL"], "inheritable": ["CAP_KILL"],
                             "ambient": ["CAP_KILL"]},
        },
        "linux": {"maskedPaths": ["/proc/version"], "readonlyPaths": ["/proc/sys"]},
    }));
    let data = b.dir.join("data");
    fs::create_dir(&data).unwrap();
    fs::write(data.join(&mark), format!("{mark}\n")).unwrap();
    let mut config: Value =
        serde_json::from_str(&fs::read_to_string(b.dir.join("config.json")).unwrap()).unwrap();
    config["mounts"].as_array_mut().unwrap().push(
        json!({"destination": "/data", "type": "bind", "source": "data", "options": ["rbind", "ro"]}),
    );
    fs::write(b.dir.join("config.json"), config.to_string()).unwrap();
    b.mounts_before = host_mounts();
    b.create().assert_code(0);
    b.oci(&["start", &b.id]).assert_code(0);
    b.wait_status("stopped");

    let out = b.output();
    let lines: Vec<&str> = out.lines().collect();
    // Bit numbers from capability.h: CAP_CHOWN 0, CAP_KILL 5.
    let (kill, chown) = (1u64 << 5, 1u64 << 0);
    assert_eq!(
        lines,
        [
            mark.clone(),
            "ro".into(),
            "1:3".into(),
            "ro".into(),
            format!("Uid:\t{uid}\t{uid}\t{uid}\t{uid}"),
            format!("Gid:\t{gid}\t{gid}\t{gid}\t{gid}"),
            format!("Groups:\t{extra} "),
            format!("CapEff:\t{kill:016x}"),
            format!("CapBnd:\t{:016x}", kill | chown),
            format!("CapAmb:\t{kill:016x}"),
            "NoNewPrivs:\t1".into(),
        ],
        "stderr: {}",
        fs::read_to_string(b.dir.join("err")).unwrap_or_default()
    );
    b.oci(&["delete", &b.id]).assert_code(0);
    b.assert_clean(&mark, &[]);
}

#[test]
fn devpts_mqueue_and_cgroup_mounts_land_at_their_destinations() {
    require_root!();
    let mark = marker();
    let mut mounts = minimal_config()["mounts"].clone();
    let extra = [
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    ];
    mounts.as_array_mut().unwrap().extend(extra);
    // On v1 hierarchies, runc's layout: a read-only tmpfs holding the container's own cgroup
    // of each hierarchy (its init is pid 1 of the memory cgroup's cgroup.procs).
    let v1 = !common::cgroup::is_v2();
    let v1_view = if v1 {
        "; awk '$2 == \"/sys/fs/cgroup/memory\" { print $2, $3, substr($4, 1, 2) }' /proc/mounts; \
         cat /sys/fs/cgroup/memory/cgroup.procs"
    } else {
        ""
    };
    let text = format!(
        "for m in /dev/pts /dev/mqueue /sys/fs/cgroup; do \
         awk -v m=$m '$2 == m {{ print $2, $3, substr($4, 1, 2) }}' /proc/mounts; done{v1_view} # {mark}"
    );
    let b = Bundle::new(json!({
        "mounts": mounts,
        "process": {"args": ["/bin/sh", "-c", text]},
        "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"},
                                 {"type": "cgroup"}]},
    }));
    b.create().assert_code(0);
    b.oci(&["start", &b.id]).assert_code(0);
    b.wait_status("stopped");
    let expected: &[&str] = if v1 {
        &[
            "/dev/pts devpts rw",
            "/dev/mqueue mqueue rw",
            "/sys/fs/cgroup tmpfs ro",
            "/sys/fs/cgroup/memory cgroup ro",
            "1",
        ]
    } else {
        &[
            "/dev/pts devpts rw",
            "/dev/mqueue mqueue rw",
            "/sys/fs/cgroup cgroup2 ro",
        ]
    };
    assert_eq!(
        b.output().lines().collect::<Vec<_>>(),
        expected,
        "stderr: {}",
        fs::read_to_string(b.dir.join("err")).unwrap_or_default()
    );
    b.oci(&["delete", &b.id]).assert_code(0);
    b.assert_clean(&mark, &[]);
}

#[test]
fn unsupported_fields_are_refused_with_one_line_naming_them() {
    require_root!();
    let mark = marker();
    for (extra, field) in [
        (
            json!({"linux": {"devices": [{"path": "/dev/x", "type": "c", "major": 1, "minor": 3}]}}),
            "linux.devices",
        ),
        (
            json!({"hooks": {"prestart": [{"path": "/bin/true"}]}}),
            "hooks",
        ),
        (
            json!({"process": {"apparmorProfile": mark}}),
            "process.apparmorProfile",
        ),
        (
            json!({"linux": {"resources": {"memory": {"reservation": 1}}}}),
            "linux.resources.memory.reservation",
        ),
        (
            json!({"linux": {"namespaces": [{"type": "mount"}, {"type": "user"}]}}),
            "user namespace",
        ),
    ] {
        let b = Bundle::new(extra);
        let ran = b.create();
        assert_refused(&ran, field);
        assert!(
            !b.oci_state_dir().join(&b.id).exists(),
            "{field}: nothing created"
        );
        b.assert_clean(&mark, &cgroup_dirs(&format!("devoxx-docker-oci/{}", b.id)));
    }
}

#[test]
fn run_and_oci_containers_share_one_root() {
    require_root!();
    let mark = marker();
    let b = Bundle::new(script(&format!("exec sleep 30 # {mark}")));
    b.create().assert_code(0);
    // `run` with the same --root, while the OCI container exists: neither disturbs the other.
    let rootfs = b.root.store().join("img").join("rootfs");
    build_rootfs(&rootfs);
    fs::write(
        b.root.store().join("img/config.json"),
        json!({"architecture": "amd64", "os": "linux", "config": {"Env": ["PATH=/bin"]},
               "rootfs": {"type": "layers", "diff_ids": []}})
        .to_string(),
    )
    .unwrap();
    let ran = b.oci(&["run", "--memory", "0", "--cpus", "0", "img", "echo", &mark]);
    ran.assert_code(0);
    assert_eq!(ran.stdout, format!("{mark}\n"));
    assert_eq!(b.status(), "created");
    let features = b.oci(&["features"]);
    features.assert_code(0);
    let features: Value = serde_json::from_str(&features.stdout).expect("features JSON");
    assert!(features["linux"]["namespaces"].as_array().unwrap().len() >= 5);
    b.oci(&["delete", "--force", &b.id]).assert_code(0);
    b.assert_clean(&mark, &[]);
}

#[test]
fn exec_runs_in_the_containers_namespaces_and_cgroup_with_its_exit_code() {
    require_root!();
    let (mark, host, value) = (marker(), format!("h-{}", marker()), marker());
    let code = random_in(3..=99);
    let b = Bundle::new(json!({
        "hostname": host,
        "process": {"args": ["/bin/sh", "-c", format!("exec sleep 60 # {mark}")]},
    }));
    let cgroups = cgroup_dirs(&format!("devoxx-docker-oci/{}", b.id));
    b.create().assert_code(0);
    assert_refused(&b.oci(&["exec", &b.id, "/bin/true"]), "not running");
    b.oci(&["start", &b.id]).assert_code(0);
    b.wait_status("running");

    // Short form: the bundle's process with these args.
    let ran = b.oci(&[
        "exec",
        &b.id,
        "/bin/sh",
        "-c",
        &format!("hostname; cat /marker; echo; tr '\\0' ' ' < /proc/1/cmdline; echo; exit {code}"),
    ]);
    ran.assert_code(code as i32);
    let rootfs_marker = fs::read_to_string(b.dir.join("rootfs/marker")).unwrap();
    let lines = ran.stdout_lines();
    assert_eq!(lines[..2], [host.clone(), rootfs_marker]);
    assert!(lines[2].starts_with("sleep 60"), "{lines:?}");

    // --process FILE, detached, with its pid file: the process is in the container's cgroup.
    let process = json!({"args": ["/bin/sh", "-c", format!("echo $V > /tmp/{mark}; exec sleep 30")],
                         "env": ["PATH=/bin", format!("V={value}")], "cwd": "/tmp",
                         "user": {"uid": 0, "gid": 0}});
    let file = b.dir.join("process.json");
    fs::write(&file, process.to_string()).unwrap();
    let pid_file = b.dir.join("exec.pid");
    // The detached process keeps its stdio: files here, so nobody waits for their EOF.
    let status = Command::new(runtime())
        .arg("--root")
        .arg(b.root.store())
        .args(["exec", "--detach", "--process"])
        .arg(&file)
        .arg("--pid-file")
        .arg(&pid_file)
        .arg(&b.id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(b.dir.join("exec.err")).unwrap())
        .status()
        .unwrap();
    assert!(
        status.success(),
        "{}",
        fs::read_to_string(b.dir.join("exec.err")).unwrap_or_default()
    );
    let pid: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let rel = format!("/devoxx-docker-oci/{}", b.id);
    assert!(
        cgroups_of(pid).iter().any(|(_, path)| *path == rel),
        "{:?}",
        cgroups_of(pid)
    );
    // The shell creates the file before it writes the line: wait for the whole line.
    wait_for(|| {
        fs::read_to_string(b.dir.join(format!("rootfs/tmp/{mark}")))
            .is_ok_and(|s| s.ends_with('\n'))
    });
    assert_eq!(
        fs::read_to_string(b.dir.join(format!("rootfs/tmp/{mark}"))).unwrap(),
        format!("{value}\n")
    );
    let ps = b.oci(&["ps", "--format", "json", &b.id]);
    let pids: Vec<i32> = serde_json::from_str(&ps.stdout).expect("json");
    assert!(pids.contains(&pid), "{pids:?} lacks {pid}");
    b.oci(&["delete", "--force", &b.id]).assert_code(0);
    b.assert_clean(&mark, &cgroups);
}

#[test]
fn log_json_records_the_error_and_systemd_cgroup_is_refused() {
    let root = TestRoot::new();
    let log = root.dir.path().join("log.json");
    let unknown = format!("none-{}", marker());
    let out = Command::new(runtime())
        .arg("--root")
        .arg(root.store())
        .args(["--log"])
        .arg(&log)
        .args(["--log-format", "json", "state", &unknown])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(125));
    let text = fs::read_to_string(&log).expect("log written");
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).expect("json line");
    assert_eq!(last["level"], "error");
    assert!(last["msg"].as_str().unwrap().contains(&unknown), "{last}");
    assert!(last["time"].as_str().is_some());
    let refused = Command::new(runtime())
        .args(["--systemd-cgroup", "state", &unknown])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--systemd-cgroup"));
}

pub(super) fn wait_for(mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out");
        std::thread::sleep(Duration::from_millis(20));
    }
}
