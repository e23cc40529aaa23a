//! Fixtures shared by every test file: the runtime under test (one switch: `DEVOXX_RUNTIME`),
//! the static probe, test images built locally from busybox-static + probe, leak checks, and
//! visible skips. Integration tests talk to the runtime only through its command line.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use rand::Rng;

/// The runtime under test: `$DEVOXX_RUNTIME`, default this project's binary.
pub fn runtime() -> PathBuf {
    match std::env::var_os("DEVOXX_RUNTIME") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_devoxx-docker")),
    }
}

/// A random lowercase marker, so no hard-coded output can pass a test.
pub fn marker() -> String {
    let mut rng = rand::rng();
    (0..12)
        .map(|_| rng.random_range(b'a'..=b'z') as char)
        .collect()
}

/// A random integer in `range`.
pub fn random_in(range: std::ops::RangeInclusive<u64>) -> u64 {
    rand::rng().random_range(range)
}

/// Skip a test visibly: says why on stderr and in `target/skipped.log` (the Makefile counts
/// them). With `DEVOXX_NO_SKIP=1` (the VM) a skip is a failure.
#[macro_export]
macro_rules! skip {
    ($($why:tt)*) => {{
        $crate::common::record_skip(module_path!(), &format!($($why)*));
        return;
    }};
}

/// Privileged tests need root (`sudo make test`). Without it they FAIL, so a plain
/// `cargo test` never looks green while nothing privileged ran; `DEVOXX_ALLOW_UNPRIVILEGED=1`
/// turns that into visible skips (counted by `make test`).
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::common::is_root() {
            if std::env::var("DEVOXX_ALLOW_UNPRIVILEGED").is_ok_and(|v| v == "1") {
                $crate::skip!("needs root: run under sudo make test");
            }
            panic!("needs root: nothing privileged ran. Run `sudo make test`, or set DEVOXX_ALLOW_UNPRIVILEGED=1 to skip the privileged tests visibly");
        }
    };
}

/// Implementation of [`skip!`].
pub fn record_skip(module: &str, why: &str) {
    // libtest names each test's thread after the test: the most precise name we can give.
    let thread = std::thread::current();
    let test = thread.name().filter(|n| *n != "main").unwrap_or(module);
    let line = format!("SKIPPED {test}: {why}");
    if std::env::var("DEVOXX_NO_SKIP").is_ok_and(|v| v == "1") {
        panic!("{line} (skips are failures here: DEVOXX_NO_SKIP=1)");
    }
    eprintln!("{line}");
    let log = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/skipped.log");
    if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(log) {
        use std::io::Write;
        let _ = writeln!(f, "{line}");
    }
}

/// True when running as root; privileged tests need it (they run under `sudo make test`).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The static probe binary shipped into test images: `$DEVOXX_PROBE`, else built once with
/// `+crt-static` into `target/probe`.
pub fn probe() -> &'static Path {
    static PROBE: OnceLock<PathBuf> = OnceLock::new();
    PROBE.get_or_init(|| {
        if let Some(p) = std::env::var_os("DEVOXX_PROBE") {
            return PathBuf::from(p);
        }
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let target_dir = manifest.join("target/probe");
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "build",
                "--release",
                "--quiet",
                "--target",
                "x86_64-unknown-linux-gnu",
            ])
            .arg("--manifest-path")
            .arg(manifest.join("tests/probe/Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir)
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .status()
            .expect("run cargo to build the probe");
        assert!(status.success(), "building the probe failed");
        target_dir.join("x86_64-unknown-linux-gnu/release/probe")
    })
}

/// busybox-static, the base of every test image: `$DEVOXX_BUSYBOX`, else `/bin/busybox`.
pub fn busybox() -> PathBuf {
    let p = std::env::var_os("DEVOXX_BUSYBOX")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/bin/busybox"));
    assert!(
        p.exists(),
        "{} missing: apt-get install busybox-static",
        p.display()
    );
    p
}

/// How every test root's directory name begins (in the temp dir).
pub const TEST_ROOT_PREFIX: &str = "devoxx-test-";

/// A private store + volumes root for one test; removed on drop.
pub struct TestRoot {
    pub dir: tempfile::TempDir,
}

impl TestRoot {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix(TEST_ROOT_PREFIX)
            .tempdir()
            .expect("temp dir");
        fs::create_dir_all(dir.path().join("fs")).expect("store dir");
        fs::create_dir_all(dir.path().join("volumes")).expect("volumes dir");
        TestRoot { dir }
    }

    /// The image store (`DEVOXX_ROOT`).
    pub fn store(&self) -> PathBuf {
        self.dir.path().join("fs")
    }

    /// The named-volume root (`DEVOXX_VOLUMES`).
    pub fn volumes(&self) -> PathBuf {
        self.dir.path().join("volumes")
    }

    /// A command running the runtime under test against this root.
    pub fn cmd(&self) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::new(runtime());
        cmd.env("DEVOXX_ROOT", self.store())
            .env("DEVOXX_VOLUMES", self.volumes())
            .timeout(std::time::Duration::from_secs(120));
        cmd
    }

    /// Same as [`TestRoot::cmd`] as a plain `std::process::Command` (for spawning in the
    /// background, signalling, or a pseudo-terminal).
    pub fn std_cmd(&self) -> Command {
        let mut cmd = Command::new(runtime());
        cmd.env("DEVOXX_ROOT", self.store())
            .env("DEVOXX_VOLUMES", self.volumes());
        cmd
    }

    /// Build the standard test image straight into the store (no registry involved): busybox
    /// with its applets, the probe at `/bin/probe`, a random marker file at `/marker`, and an
    /// image config. Returns the image name and the marker.
    pub fn install_image(&self, config: serde_json::Value) -> (String, String) {
        let name = format!("img-{}", marker());
        let rootfs = self.store().join(&name).join("rootfs");
        let mark = build_rootfs(&rootfs);
        let full = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": []},
        });
        fs::write(
            self.store().join(&name).join("config.json"),
            serde_json::to_vec_pretty(&full).expect("json"),
        )
        .expect("write config.json");
        (name, mark)
    }

    /// Paths of the per-container state the runtime left in this store (must be none after a run).
    pub fn leftover_containers(&self) -> Vec<PathBuf> {
        match fs::read_dir(self.store().join(".containers")) {
            Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
            Err(_) => Vec::new(),
        }
    }
}

impl Default for TestRoot {
    fn default() -> Self {
        Self::new()
    }
}

/// Populate `rootfs` with busybox (+ applet links), the probe, the usual top-level
/// directories and a random `/marker`. Returns the marker's content.
pub fn build_rootfs(rootfs: &Path) -> String {
    for dir in [
        "bin", "etc", "proc", "dev", "sys", "tmp", "root", "var", "data",
    ] {
        fs::create_dir_all(rootfs.join(dir)).expect("mkdir in rootfs");
    }
    fs::set_permissions(rootfs.join("tmp"), fs::Permissions::from_mode(0o1777)).expect("chmod tmp");
    fs::copy(busybox(), rootfs.join("bin/busybox")).expect("copy busybox");
    fs::copy(probe(), rootfs.join("bin/probe")).expect("copy probe");
    for applet in busybox_applets() {
        let link = rootfs.join("bin").join(applet);
        if !link.exists() {
            symlink("busybox", link).expect("applet link");
        }
    }
    fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    let mark = marker();
    fs::write(rootfs.join("marker"), &mark).expect("marker");
    mark
}

fn busybox_applets() -> &'static [String] {
    static APPLETS: OnceLock<Vec<String>> = OnceLock::new();
    APPLETS.get_or_init(|| {
        let out = Command::new(busybox())
            .arg("--list")
            .output()
            .expect("busybox --list");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .filter(|a| !a.is_empty() && !a.contains('/'))
            .collect()
    })
}

/// The host's mount table, to prove a run left it exactly as it was.
pub fn host_mounts() -> String {
    fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo")
}

/// Pids of host processes whose command line contains `needle` (a test's random marker).
pub fn processes_with(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}

/// Pids of the probe processes whose command line holds `needle` (not the runtime or a shell
/// whose own arguments merely mention it).
pub fn probes_with(needle: &str) -> Vec<i32> {
    processes_with(needle)
        .into_iter()
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.split(|&b| b == 0).next() == Some(b"/bin/probe".as_slice()))
        })
        .collect()
}

/// The cgroup paths (relative to each hierarchy) of `pid`, from `/proc/<pid>/cgroup`:
/// `(controllers, path)` pairs, e.g. `("memory", "/devoxx-docker/abc")` or `("", "/...")` for v2.
pub fn cgroups_of(pid: i32) -> Vec<(String, String)> {
    fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let _id = parts.next()?;
            Some((parts.next()?.to_owned(), parts.next()?.to_owned()))
        })
        .collect()
}

/// SIGKILL `pid` and every descendant (found through /proc parent links: the grader's own
/// helper, which a runtime that does not take its container down with it needs too).
pub fn kill_tree(pid: i32) {
    for p in devoxx_docker::grade::inspect::process_tree(pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// The mount-table changes this test can have caused: mounts added whose line names its own
/// directory or marker (tests run in parallel: a neighbour's leak is the neighbour's), and any
/// mount removed (no test may remove a host mount) but a neighbour's own, in its test root (an
/// engine's shm mount, gone with its container). The VM's final check sees every leak.
pub fn mount_changes(root: &TestRoot, mounts_before: &str, marker: &str) -> Vec<String> {
    let now = host_mounts();
    let before: std::collections::BTreeSet<&str> = mounts_before.lines().collect();
    let after: std::collections::BTreeSet<&str> = now.lines().collect();
    let dir = root.dir.path().display().to_string();
    let added = after
        .difference(&before)
        .filter(|l| l.contains(&dir) || l.contains(marker))
        .map(|l| format!("added: {l}"));
    let neighbours = std::env::temp_dir()
        .join(TEST_ROOT_PREFIX)
        .display()
        .to_string();
    let removed = before
        .difference(&after)
        .filter(|l| !l.contains(&neighbours))
        .map(|l| format!("removed: {l}"));
    added.chain(removed).collect()
}

/// Everything a finished run must have cleaned up: no mount change on the host, no process
/// carrying the marker (killed if there is one: a leak fails the test, never lingers), no
/// writable layer left in the store.
pub fn assert_no_leaks(root: &TestRoot, mounts_before: &str, marker: &str) {
    let changes = mount_changes(root, mounts_before, marker);
    assert!(changes.is_empty(), "host mount table changed: {changes:#?}");
    let procs = processes_with(marker);
    procs.iter().for_each(|&p| kill_tree(p));
    assert!(procs.is_empty(), "processes left behind: {procs:?}");
    let left = root.leftover_containers();
    assert!(left.is_empty(), "container state left behind: {left:?}");
}
pub mod accounts;
pub mod cgroup;
pub mod hostile;
pub mod hub;
pub mod options;
pub mod registry;
pub mod run;
pub mod terminal;
pub mod volume;

/// Visible images in a store (entries not starting with a dot).
pub fn stored_images(store: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(store)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// What `images` prints for `root`'s store (it must succeed).
pub fn images_listing(root: &TestRoot) -> String {
    let out = root.cmd().arg("images").assert().success();
    String::from_utf8(out.get_output().stdout.clone()).unwrap()
}
