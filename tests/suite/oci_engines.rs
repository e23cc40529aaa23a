//! Engines drive devoxx-docker as their OCI runtime (issue 31): Debian's podman (with conmon)
//! and containerd (ctr and the io.containerd.runc.v2 shim) run an image the test makes (an OCI
//! layout of busybox + probe), print a random marker, return a random exit code, exec into the
//! container and stop it. Each engine is isolated in the test's temp dir (its storage, state,
//! sockets and config; no host network, no host config read), and nothing is left behind: no
//! mount, no process, no runtime state, no container cgroup.
//!
//! The engines' own settings that are not runtime defects, and that runc needs too (see
//! docs/usage.md): podman's default rlimits (nofile 1048576) exceed this kind of host's hard
//! limits, hence `--ulimit nofile=1024:1024 --ulimit nproc=1024:1024`. Podman's and
//! containerd's default seccomp profiles are applied (`linux.seccomp`). The cgroup parent an engine makes for itself
//! (podman's `<parent>/conmon`, containerd's per-namespace `/<ns>`) stays with runc as well:
//! the tests remove it after checking the container's own cgroup is gone.

use crate::common;

use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::run::Ran;
use common::*;

/// How long one engine command may take (TCG guests are slow).
const ENGINE_TIMEOUT: Duration = Duration::from_secs(180);

/// True when `program` is an executable on `PATH`.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// The first of `programs` missing from `PATH`.
fn missing(programs: &[&'static str]) -> Option<&'static str> {
    programs.iter().copied().find(|p| !on_path(p))
}

/// Run `cmd` (bounded by [`ENGINE_TIMEOUT`]) and capture what it printed.
fn ran(mut cmd: assert_cmd::Command) -> Ran {
    let out = cmd
        .timeout(ENGINE_TIMEOUT)
        .write_stdin("")
        .output()
        .expect("spawn the engine");
    Ran::from_output(&out)
}

/// An OCI image layout at `layout` (tag `t`) holding the standard test rootfs, made with
/// umoci; returns the rootfs's marker.
fn make_layout(work: &Path, layout: &Path) -> String {
    let image = format!("{}:t", layout.display());
    let bundle = work.join("unpacked");
    let umoci = |args: &[&str]| {
        let out = Command::new("umoci").args(args).output().expect("umoci");
        assert!(
            out.status.success(),
            "umoci {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    umoci(&["init", "--layout", &layout.display().to_string()]);
    umoci(&["new", "--image", &image]);
    umoci(&["unpack", "--image", &image, &bundle.display().to_string()]);
    let mark = build_rootfs(&bundle.join("rootfs"));
    umoci(&["repack", "--image", &image, &bundle.display().to_string()]);
    umoci(&["config", "--image", &image, "--config.env", "PATH=/bin"]);
    fs::remove_dir_all(&bundle).expect("remove the unpacked bundle");
    mark
}

/// Mount points of every cgroup hierarchy of this host (one on v2).
fn cgroup_hierarchies() -> Vec<PathBuf> {
    host_mounts()
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let point = before.split(' ').nth(4)?;
            after.starts_with("cgroup").then(|| PathBuf::from(point))
        })
        .collect()
}

/// `rel` below every hierarchy, where it exists.
fn cgroup_dirs(rel: &str) -> Vec<PathBuf> {
    cgroup_hierarchies()
        .into_iter()
        .map(|h| h.join(rel.trim_start_matches('/')))
        .filter(|d| d.is_dir())
        .collect()
}

/// The sub-cgroups of `dir` (its child directories' names).
fn sub_cgroups(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Those of `dirs` (deepest first) that do not exist yet: what an engine will make outside
/// the test root (podman's `/run/containers/networks`, containerd 1.6's hard-coded shim socket
/// directory `/run/containerd/s`, the runtime's default state directory).
fn not_yet_made(dirs: &[&str]) -> Vec<PathBuf> {
    dirs.iter()
        .map(PathBuf::from)
        .filter(|d| !d.exists())
        .collect()
}

/// Remove `made` (deepest first); the names of those that are not empty (something left).
fn remove_made(made: &[PathBuf]) -> Vec<PathBuf> {
    made.iter()
        .filter(|d| d.exists() && fs::remove_dir(d).is_err())
        .cloned()
        .collect()
}

/// Remove the engine's own cgroup parent `rel` and what is below it (podman's `conmon`; after
/// a failed test, a container's) from every hierarchy; a cgroup with a process stays.
fn remove_engine_cgroups(rel: &str) {
    for dir in cgroup_dirs(rel) {
        for child in sub_cgroups(&dir) {
            let _ = fs::remove_dir(dir.join(child));
        }
        let _ = fs::remove_dir(&dir);
    }
}

/// Detach whatever is still mounted below `dir` (a failed test), deepest first, so removing
/// the temp dir never walks into a mount.
fn detach_mounts_below(dir: &Path) {
    let prefix = dir.display().to_string();
    let mut points: Vec<String> = host_mounts()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = nix::mount::umount2(point.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// The runtime's OCI state directories left anywhere below `store` (ctr's shim adds a level
/// per namespace): none once the engine deleted its containers.
fn oci_state_left(store: &Path) -> Vec<PathBuf> {
    let mut left = Vec::new();
    for entry in fs::read_dir(store).into_iter().flatten().flatten() {
        let path = entry.path();
        if entry.file_name() == ".oci" {
            left.extend(
                fs::read_dir(&path)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path()),
            );
        } else if path.is_dir() && !path.is_symlink() {
            left.extend(oci_state_left(&path));
        }
    }
    left
}

/// Where devoxx-docker keeps OCI state when its caller passes no `--root` (podman 4.3 drops
/// `--runtime-flag root=` from the `delete` of its `--rm` cleanup, so podman gets the default,
/// as runc gets `/run/runc`).
const DEFAULT_OCI_STATE: &str = "/fs/.oci";

/// One engine test at a time: the podman tests share that default state directory, and each
/// engine mounts in the host's mount namespace (podman's /dev/shm, containerd's rootfs), which
/// another test's before/after comparison of the host's mount table would see.
static ENGINES_SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Podman with everything of its own in a test root: storage (vfs, so no layer mounts),
/// run root, tmp dir, network config, an empty containers.conf, and devoxx-docker as its
/// runtime.
struct Podman {
    _serial: std::sync::MutexGuard<'static, ()>,
    /// The default state directory's parents this test made (removed after, once empty).
    made: Vec<PathBuf>,
    root: TestRoot,
    /// `--cgroup-parent`: random, so the test can check and remove it.
    parent: String,
    image: String,
    mark: String,
    mounts_before: String,
}

impl Podman {
    /// Err(the missing program) when podman, conmon or umoci is not installed.
    fn new() -> Result<Podman, &'static str> {
        if let Some(program) = missing(&["podman", "conmon", "umoci"]) {
            return Err(program);
        }
        let serial = ENGINES_SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let made = not_yet_made(&[
            DEFAULT_OCI_STATE,
            "/fs",
            "/run/containers/networks",
            "/run/containers",
        ]);
        let root = TestRoot::new();
        let dir = root.dir.path().to_owned();
        let dir = dir.as_path();
        for sub in ["pod/root", "pod/run", "pod/tmp", "pod/networks"] {
            fs::create_dir_all(dir.join(sub)).expect("podman dirs");
        }
        fs::write(dir.join("pod/containers.conf"), "").expect("containers.conf");
        fs::write(
            dir.join("pod/registries.conf"),
            "unqualified-search-registries = []\n",
        )
        .expect("registries.conf");
        let storage = format!(
            "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
            dir.join("pod/root").display(),
            dir.join("pod/run").display()
        );
        fs::write(dir.join("pod/storage.conf"), storage).expect("storage.conf");
        fs::write(
            dir.join("pod/policy.json"),
            r#"{"default":[{"type":"insecureAcceptAnything"}]}"#,
        )
        .expect("policy.json");
        let mounts_before = host_mounts();
        let mark = make_layout(dir, &dir.join("layout"));
        let mut podman = Podman {
            _serial: serial,
            made,
            parent: format!("devoxx-podman-{}", marker()),
            image: String::new(),
            mark,
            mounts_before,
            root,
        };
        let policy = dir.join("pod/policy.json").display().to_string();
        // podman names the image after the layout's path, which must be lowercase: a link
        // with a lowercase name, removed once pulled.
        let link = std::env::temp_dir().join(format!("devoxx-layout-{}", marker()));
        std::os::unix::fs::symlink(dir.join("layout"), &link).expect("layout link");
        let source = format!("oci:{}:t", link.display());
        let pulled = podman.podman(&["pull", "-q", "--signature-policy", &policy, &source]);
        fs::remove_file(&link).expect("remove the layout link");
        pulled.assert_code(0);
        podman.image = pulled.stdout.trim().lines().last().unwrap_or("").to_owned();
        assert!(!podman.image.is_empty(), "no image id: {}", pulled.stdout);
        Ok(podman)
    }

    /// `podman GLOBALS ARGS`: isolated, cgroupfs, no events, devoxx-docker as the runtime.
    fn podman(&self, args: &[&str]) -> Ran {
        let dir = self.root.dir.path();
        let at = |p: &str| dir.join(p).display().to_string();
        let mut cmd = assert_cmd::Command::new("podman");
        cmd.env("CONTAINERS_CONF", at("pod/containers.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", at("pod/registries.conf"))
            .env("CONTAINERS_STORAGE_CONF", at("pod/storage.conf"))
            .env("TMPDIR", at("pod/tmp"))
            .args(["--root", &at("pod/root"), "--runroot", &at("pod/run")])
            .args(["--tmpdir", &at("pod/tmp"), "--storage-driver", "vfs"])
            .args(["--network-config-dir", &at("pod/networks")])
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "none"])
            .arg("--runtime")
            .arg(runtime())
            .args(args);
        ran(cmd)
    }

    /// `podman run OPTIONS IMAGE ARGS` with the flags this host needs (module docs).
    fn run(&self, options: &[&str], args: &[&str]) -> Ran {
        let parent = format!("/{}", self.parent);
        let mut all = vec!["run", "--network", "none", "--cgroup-parent", &parent];
        all.extend([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1024:1024",
        ]);
        all.extend(options);
        all.push(&self.image);
        all.extend(args);
        self.podman(&all)
    }

    /// No container, mount, process, runtime state or container cgroup left; then podman's
    /// own cgroup parent (`<parent>/conmon`, left by runc too) is removed.
    fn assert_clean(&self) {
        let listed = self.podman(&["ps", "-a", "-q"]);
        assert_eq!(listed.stdout.trim(), "", "podman containers left behind");
        assert_no_leaks(&self.root, &self.mounts_before, &self.mark);
        let left: Vec<_> = fs::read_dir(DEFAULT_OCI_STATE)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(left.is_empty(), "runtime state left behind: {left:?}");
        for dir in cgroup_dirs(&self.parent) {
            let subs: Vec<_> = sub_cgroups(&dir)
                .into_iter()
                .filter(|s| s != "conmon")
                .collect();
            assert!(
                subs.is_empty(),
                "cgroups left in {}: {subs:?}",
                dir.display()
            );
        }
        remove_engine_cgroups(&self.parent);
        let kept = remove_made(&self.made);
        assert!(kept.is_empty(), "left behind: {kept:?}");
    }
}

impl Drop for Podman {
    /// A failed test still removes its containers, mounts and cgroups.
    fn drop(&mut self) {
        let _ = self.podman(&["rm", "-a", "-f", "-t", "0"]);
        detach_mounts_below(self.root.dir.path());
        remove_engine_cgroups(&self.parent);
        remove_made(&self.made);
    }
}

#[test]
fn podman_runs_execs_and_stops_with_the_programs_exit_codes() {
    require_root!();
    let podman = match Podman::new() {
        Ok(p) => p,
        Err(program) => skip!("{program} is not installed (apt-get install podman conmon umoci)"),
    };
    let code = random_in(1..=100) as i32;
    let script = format!("echo {}-$(cat /marker); exit {code}", podman.mark);
    let ran = podman.run(&["--rm"], &["sh", "-c", &script]);
    ran.assert_code(code);
    assert_eq!(
        ran.stdout_lines(),
        [format!("{0}-{0}", podman.mark)],
        "stderr: {}",
        ran.stderr
    );

    // One setup (image layout, pull) for both halves: engines are slow to start under TCG.
    let name = format!("c-{}", marker());
    let (on_term, exec_code) = (random_in(1..=60) as i32, random_in(61..=120) as i32);
    let waiting = format!(
        "trap 'exit {on_term}' TERM; while :; do sleep 0.1; done # {}",
        podman.mark
    );
    podman
        .run(&["-d", "--name", &name], &["sh", "-c", &waiting])
        .assert_code(0);

    let token = marker();
    let exec = podman.podman(&[
        "exec",
        &name,
        "sh",
        "-c",
        &format!("echo {token}; exit {exec_code}"),
    ]);
    exec.assert_code(exec_code);
    assert_eq!(exec.stdout_lines(), [token]);

    // stop sends TERM: the container's trap decides the exit code podman records.
    podman.podman(&["stop", "-t", "60", &name]).assert_code(0);
    let inspected = podman.podman(&["inspect", "--format", "{{.State.ExitCode}}", &name]);
    assert_eq!(inspected.stdout.trim(), on_term.to_string());
    podman.podman(&["rm", &name]).assert_code(0);
    podman.assert_clean();
}

/// A containerd daemon of the test's own (config, root, state, sockets in the test root; no
/// CRI plugin), stopped on drop, and an image imported into a random namespace.
struct Containerd {
    _serial: std::sync::MutexGuard<'static, ()>,
    /// Directories outside the test root this test will make ([`not_yet_made`]).
    made: Vec<PathBuf>,
    root: TestRoot,
    daemon: Option<Child>,
    namespace: String,
    mark: String,
    mounts_before: String,
}

/// The image's name once imported.
const CTR_IMAGE: &str = "devoxx/test:t";

impl Containerd {
    /// Err(the missing program) when containerd, ctr, the runc v2 shim or umoci is not
    /// installed.
    fn new() -> Result<Containerd, &'static str> {
        if let Some(program) = missing(&["containerd", "ctr", "containerd-shim-runc-v2", "umoci"]) {
            return Err(program);
        }
        let serial = ENGINES_SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let root = TestRoot::new();
        let dir = root.dir.path().to_owned();
        let dir = dir.as_path();
        let at = |p: &str| dir.join(p).display().to_string();
        let config = format!(
            "version = 2\nroot = \"{}\"\nstate = \"{}\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{}\"\n[ttrpc]\n  address = \"{}\"\n\
             [debug]\n  address = \"\"\n[metrics]\n  address = \"\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{}\"\n",
            at("ctd/root"),
            at("ctd/state"),
            at("ctd/sock"),
            at("ctd/sock.ttrpc"),
            at("ctd/opt"),
        );
        fs::create_dir_all(dir.join("ctd")).expect("containerd dir");
        fs::write(dir.join("ctd/config.toml"), config).expect("containerd config");
        let mounts_before = host_mounts();
        let mark = make_layout(dir, &dir.join("layout"));
        let daemon = Command::new("containerd")
            .arg("--config")
            .arg(dir.join("ctd/config.toml"))
            .stdin(Stdio::null())
            .stdout(fs::File::create(dir.join("ctd/log")).expect("log"))
            .stderr(fs::File::create(dir.join("ctd/log.err")).expect("log"))
            .spawn()
            .expect("start containerd");
        let ctd = Containerd {
            _serial: serial,
            made: not_yet_made(&["/run/containerd/s", "/run/containerd"]),
            namespace: format!("devoxx-ctr-{}", marker()),
            daemon: Some(daemon),
            mark,
            mounts_before,
            root,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while UnixStream::connect(dir.join("ctd/sock")).is_err() {
            assert!(
                Instant::now() < deadline,
                "containerd never listened: {}",
                fs::read_to_string(dir.join("ctd/log.err")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let archive = dir.join("image.tar");
        let tar = Command::new("tar")
            .arg("-C")
            .arg(dir.join("layout"))
            .arg("-cf")
            .arg(&archive)
            .arg(".")
            .status()
            .expect("tar");
        assert!(tar.success(), "tar of the layout");
        ctd.ctr(&[
            "images",
            "import",
            "--snapshotter",
            "native",
            "--base-name",
            CTR_IMAGE.trim_end_matches(":t"),
            &archive.display().to_string(),
        ])
        .assert_code(0);
        Ok(ctd)
    }

    /// `ctr --address SOCK --namespace NS ARGS`.
    fn ctr(&self, args: &[&str]) -> Ran {
        let mut cmd = assert_cmd::Command::new("ctr");
        cmd.arg("--address")
            .arg(self.root.dir.path().join("ctd/sock"))
            .args(["--namespace", &self.namespace])
            .args(args);
        ran(cmd)
    }

    /// `ctr run OPTIONS IMAGE ID ARGS` through the runc v2 shim with devoxx-docker as its
    /// runc binary, its state under the test's store, the snapshotter that mounts nothing
    /// in layers (native) and the FIFOs in the test root.
    fn run(&self, options: &[&str], id: &str, args: &[&str]) -> Ran {
        let dir = self.root.dir.path();
        let (binary, store, fifos) = (
            runtime().display().to_string(),
            self.root.store().display().to_string(),
            dir.join("fifo").display().to_string(),
        );
        let mut all = vec![
            "run",
            "--seccomp",
            "--snapshotter",
            "native",
            "--runc-binary",
            &binary,
        ];
        all.extend(["--runc-root", &store, "--fifo-dir", &fifos]);
        all.extend(options);
        all.extend([CTR_IMAGE, id]);
        all.extend(args);
        self.ctr(&all)
    }

    /// No task, container, mount, shim, runtime state or container cgroup left; then the
    /// namespace's cgroup parent (`/<ns>`, left by runc too) is removed.
    fn assert_clean(&mut self) {
        assert_eq!(self.ctr(&["tasks", "ls", "-q"]).stdout.trim(), "");
        assert_eq!(self.ctr(&["containers", "ls", "-q"]).stdout.trim(), "");
        self.stop();
        assert_no_leaks(&self.root, &self.mounts_before, &self.mark);
        let dir = self.root.dir.path().display().to_string();
        let engine_procs = processes_with(&dir);
        assert!(engine_procs.is_empty(), "shims left: {engine_procs:?}");
        let left = oci_state_left(&self.root.store());
        assert!(left.is_empty(), "runtime state left behind: {left:?}");
        for dir in cgroup_dirs(&self.namespace) {
            let subs = sub_cgroups(&dir);
            assert!(
                subs.is_empty(),
                "cgroups left in {}: {subs:?}",
                dir.display()
            );
        }
        remove_engine_cgroups(&self.namespace);
        let kept = remove_made(&self.made);
        assert!(kept.is_empty(), "left behind: {kept:?}");
    }

    /// SIGTERM the daemon and wait for it.
    fn stop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            let pid = nix::unistd::Pid::from_raw(daemon.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = daemon.wait();
        }
    }
}

impl Drop for Containerd {
    /// A failed test still takes its tasks, daemon, mounts and cgroups down.
    fn drop(&mut self) {
        if self.daemon.is_some() {
            for id in self.ctr(&["tasks", "ls", "-q"]).stdout.lines() {
                let _ = self.ctr(&["tasks", "kill", "-s", "KILL", id]);
                let _ = self.ctr(&["tasks", "delete", "-f", id]);
            }
            for id in self.ctr(&["containers", "ls", "-q"]).stdout.lines() {
                let _ = self.ctr(&["containers", "delete", id]);
            }
        }
        self.stop();
        detach_mounts_below(self.root.dir.path());
        for pid in processes_with(&self.root.dir.path().display().to_string()) {
            kill_tree(pid);
        }
        remove_engine_cgroups(&self.namespace);
        remove_made(&self.made);
    }
}

#[test]
fn ctr_runs_execs_and_kills_with_the_programs_exit_codes() {
    require_root!();
    let mut ctd = match Containerd::new() {
        Ok(c) => c,
        Err(program) => skip!("{program} is not installed (apt-get install containerd umoci)"),
    };
    let code = random_in(1..=100) as i32;
    let script = format!("echo {}-$(cat /marker); exit {code}", ctd.mark);
    let ran = ctd.run(
        &["--rm"],
        &format!("c-{}", marker()),
        &["sh", "-c", &script],
    );
    ran.assert_code(code);
    assert_eq!(
        ran.stdout_lines(),
        [format!("{0}-{0}", ctd.mark)],
        "stderr: {}",
        ran.stderr
    );

    // One daemon and import for both halves: engines are slow to start under TCG.
    let id = format!("c-{}", marker());
    let (on_term, exec_code) = (random_in(1..=60) as i32, random_in(61..=120) as i32);
    let waiting = format!(
        "trap 'exit {on_term}' TERM; while :; do sleep 0.1; done # {}",
        ctd.mark
    );
    ctd.run(&["-d"], &id, &["sh", "-c", &waiting])
        .assert_code(0);

    let token = marker();
    let fifos = ctd.root.dir.path().join("fifo").display().to_string();
    let exec = ctd.ctr(&[
        "tasks",
        "exec",
        "--fifo-dir",
        &fifos,
        "--exec-id",
        &format!("e-{}", marker()),
        &id,
        "sh",
        "-c",
        &format!("echo {token}; exit {exec_code}"),
    ]);
    exec.assert_code(exec_code);
    assert_eq!(exec.stdout_lines(), [token]);

    ctd.ctr(&["tasks", "kill", "-s", "TERM", &id])
        .assert_code(0);
    let deadline = Instant::now() + ENGINE_TIMEOUT;
    while !ctd.ctr(&["tasks", "ls"]).stdout.contains("STOPPED") {
        assert!(Instant::now() < deadline, "the task never stopped");
        std::thread::sleep(Duration::from_millis(100));
    }
    // `tasks delete` reports the exit status the shim collected.
    let deleted = ctd.ctr(&["tasks", "delete", &id]);
    assert!(
        deleted.stderr.contains(&format!("exit code {on_term}")),
        "{}",
        deleted.stderr
    );
    ctd.ctr(&["containers", "delete", &id]).assert_code(0);
    ctd.assert_clean();
}
