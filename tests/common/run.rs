//! Helpers for the `run` suite (process, namespaces, rootfs, cli, interactive): run a container
//! and capture both streams, keep one running in the background and synchronise on a `ready`
//! line, find its PID 1 from the host, and check everything a run must leave as it found it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::{host_mounts, processes_with, TestRoot};

/// Prefix every runtime message carries, so it can never be mistaken for container output.
pub const PREFIX: &str = "devoxx-docker:";

/// Longest a single container run may take before the test calls it hung.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// What one finished `devoxx-docker` invocation produced.
#[derive(Debug)]
pub struct Ran {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    /// What a finished process printed (128 + the signal when a signal ended it).
    pub fn from_output(out: &std::process::Output) -> Ran {
        Ran {
            code: code_of(out.status),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Container output lines (stdout), trimmed, for order-insensitive checks.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lines().map(|l| l.trim().to_owned()).collect()
    }

    /// Assert the exit code, printing both streams on failure (the only useful debug info).
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout:\n{}\n--- stderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// The run printed nothing on stderr except runtime messages (prefixed `devoxx-docker:`).
    pub fn assert_stderr_only_runtime(&self) -> &Self {
        for line in self.stderr.lines().filter(|l| !l.trim().is_empty()) {
            assert!(
                line.starts_with(PREFIX),
                "unexpected stderr line {line:?} (only `{PREFIX}` messages allowed)\n--- stdout:\n{}",
                self.stdout
            );
        }
        self
    }

    /// A runtime failure: nothing on stdout and exactly one prefixed line on stderr.
    pub fn assert_one_error_line(&self) -> &Self {
        assert!(
            self.stdout.is_empty(),
            "stdout must stay empty on a runtime error: {:?}",
            self.stdout
        );
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "expected one error line on stderr, got {:?}",
            self.stderr
        );
        assert!(
            lines[0].starts_with(PREFIX),
            "error line not prefixed `{PREFIX}`: {:?}",
            lines[0]
        );
        self
    }

    /// The container's own stderr lines (the runtime's `devoxx-docker:` messages left out).
    pub fn container_stderr(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| !l.starts_with(PREFIX))
            .collect()
    }

    /// The run succeeded: code 0 and stderr holds nothing but runtime messages.
    pub fn assert_ok(&self) -> &Self {
        self.assert_code(0).assert_stderr_only_runtime()
    }
}

/// Exit code of a finished child: its code, or 128+N when the runtime itself died of signal N.
fn code_of(status: std::process::ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// `devoxx-docker ARGS` against `root`, stdin empty; waits (bounded) and captures both streams.
pub fn run(root: &TestRoot, args: &[&str]) -> Ran {
    run_with_stdin(root, args, b"")
}

/// Same as [`run`] with `input` fed on stdin.
pub fn run_with_stdin(root: &TestRoot, args: &[&str], input: &[u8]) -> Ran {
    let out = root
        .cmd()
        .args(args)
        .write_stdin(input.to_vec())
        .timeout(RUN_TIMEOUT)
        .output()
        .expect("spawn the runtime");
    Ran::from_output(&out)
}

/// `run ARGS...` helper building the argument vector: `["run", extra..., image, cmd...]`.
pub fn run_args<'a>(options: &[&'a str], image: &'a str, cmd: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["run"];
    v.extend_from_slice(options);
    v.push(image);
    v.extend_from_slice(cmd);
    v
}

/// A runtime started in the background, its stdout readable line by line as it comes.
pub struct Background {
    pub child: Child,
    lines: Receiver<String>,
    stdout: Arc<Mutex<String>>,
    stdout_reader: Option<JoinHandle<()>>,
    stderr_reader: Option<JoinHandle<String>>,
}

impl Background {
    /// Start `devoxx-docker ARGS` with piped stdout/stderr and an empty stdin.
    pub fn spawn(root: &TestRoot, args: &[&str]) -> Self {
        let mut child = root
            .std_cmd()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the runtime");
        let (tx, lines) = mpsc::channel();
        let stdout = Arc::new(Mutex::new(String::new()));
        let all = Arc::clone(&stdout);
        let out = child.stdout.take().expect("piped stdout");
        let stdout_reader = thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                all.lock().expect("lock").push_str(&format!("{line}\n"));
                let _ = tx.send(line);
            }
        });
        let mut err = child.stderr.take().expect("piped stderr");
        let stderr_reader = thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        Background {
            child,
            lines,
            stdout,
            stdout_reader: Some(stdout_reader),
            stderr_reader: Some(stderr_reader),
        }
    }

    /// Block until the container prints `line` on stdout (the synchronisation point; no sleeps).
    pub fn wait_for_line(&mut self, line: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) if l.trim() == line => return,
                Ok(_) => continue,
                Err(_) => {
                    let _ = self.child.kill();
                    let ran = self.wait(Duration::from_secs(10));
                    panic!("container never printed {line:?}: {ran:?}");
                }
            }
        }
    }

    /// Host pid of the runtime process.
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Send `sig` to the runtime process.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig)
            .expect("signal the runtime");
    }

    /// Wait (bounded) for the runtime to exit and collect what it printed. On timeout it is
    /// SIGKILLed and the test fails.
    pub fn wait(&mut self, timeout: Duration) -> Ran {
        let status = wait_bounded(&mut self.child, timeout);
        if let Some(h) = self.stdout_reader.take() {
            let _ = h.join();
        }
        let stderr = self
            .stderr_reader
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        let stdout = self.stdout.lock().expect("lock").clone();
        let ran = Ran {
            code: status.map(code_of).unwrap_or(-1),
            stdout,
            stderr,
        };
        assert!(
            ran.code != -1,
            "runtime did not exit within {timeout:?}: {ran:?}"
        );
        ran
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            super::kill_tree(self.child.id() as i32);
            let _ = self.child.wait();
        }
    }
}

/// Wait for `child` at most `timeout`; on timeout kill it with every process it started (a
/// runtime under test need not take its container down with it) and return None.
pub fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            super::kill_tree(child.id() as i32);
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Collect a spawned runtime's output like `wait_with_output`, but within `timeout`: on expiry
/// the runtime and everything it started are killed and the test fails; a process that keeps
/// the pipes open after the runtime exited cannot block the test either.
pub fn output_within(mut child: Child, timeout: Duration) -> std::process::Output {
    use std::io::Read;
    let reader = |pipe: Option<Box<dyn Read + Send>>| {
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = std::sync::Arc::clone(&buf);
        let handle = thread::spawn(move || {
            let Some(mut pipe) = pipe else { return };
            let mut chunk = [0u8; 8192];
            while let Ok(n) = pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                sink.lock().expect("buffer").extend_from_slice(&chunk[..n]);
            }
        });
        (buf, handle)
    };
    let out = reader(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = reader(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = wait_bounded(&mut child, timeout).unwrap_or_else(|| {
        panic!("the runtime did not exit within {timeout:?}: killed with every process it started")
    });
    let grace = Instant::now() + Duration::from_secs(10);
    for (_, handle) in [&out, &err] {
        while !handle.is_finished() && Instant::now() < grace {
            thread::sleep(Duration::from_millis(10));
        }
    }
    let take = |b: &std::sync::Arc<std::sync::Mutex<Vec<u8>>>| b.lock().expect("buffer").clone();
    std::process::Output {
        status,
        stdout: take(&out.0),
        stderr: take(&err.0),
    }
}

/// `sh -c` script that prints `ready` then becomes a long sleep whose command line carries
/// `marker` (so the host can find it with [`processes_with`]).
pub fn ready_then_sleep(marker: &str) -> String {
    format!("echo ready && exec /bin/probe sleep 30 {marker}")
}

/// The container's PID 1 as seen from the host once it runs `/bin/probe` (the `exec` in
/// [`ready_then_sleep`] is done, so no shell signal handler is left): the process carrying
/// `marker` whose innermost pid (last `NSpid` field) is 1 in a nested namespace. Polls
/// briefly: `ready` is printed just before that `exec`.
pub fn container_pid1(marker: &str) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = processes_with(marker)
            .into_iter()
            .find(|&p| is_namespace_init(p) && runs_probe(p));
        if let Some(pid) = found {
            return pid;
        }
        assert!(
            Instant::now() < deadline,
            "no container PID 1 carrying {marker}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// True when the program of `pid` is the probe (argv[0] `/bin/probe`).
fn runs_probe(pid: i32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| c.starts_with(b"/bin/probe\0"))
        .unwrap_or(false)
}

/// True when `pid` is PID 1 of a PID namespace nested below ours.
pub fn is_namespace_init(pid: i32) -> bool {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("NSpid:"))
        .map(|ids| {
            let ids: Vec<&str> = ids.split_whitespace().collect();
            ids.len() > 1 && ids.last() == Some(&"1")
        })
        .unwrap_or(false)
}

/// The namespace identity (`/proc/<pid>/ns/<kind>` link target) of a process.
pub fn namespace_of(pid: &str, kind: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| panic!("read ns/{kind} of {pid}: {e}"))
}

/// The container's own cgroup directories (those under `devoxx-docker`) as host paths, taken
/// while it runs, so the test can prove they are gone after exit.
/// An empty list would make "none left afterwards" pass vacuously: it fails instead.
pub fn own_cgroup_dirs(pid: i32) -> Vec<PathBuf> {
    let dirs: Vec<PathBuf> = super::cgroups_of(pid)
        .into_iter()
        .filter(|(_, path)| path.contains("devoxx-docker"))
        .flat_map(|(controllers, path)| cgroup_mount_candidates(&controllers, &path))
        .filter(|p| p.is_dir())
        .collect();
    assert!(
        !dirs.is_empty(),
        "container process {pid} is in no devoxx-docker cgroup: {:?}",
        super::cgroups_of(pid)
    );
    dirs
}

fn cgroup_mount_candidates(controllers: &str, path: &str) -> Vec<PathBuf> {
    let rel = path.trim_start_matches('/');
    let base = Path::new("/sys/fs/cgroup");
    if controllers.is_empty() {
        return vec![base.join("unified").join(rel), base.join(rel)];
    }
    let mut v = vec![base.join(controllers).join(rel)];
    v.extend(controllers.split(',').map(|c| base.join(c).join(rel)));
    v
}

/// A fingerprint of the image store (path → kind, size, mode, content hash of small files),
/// excluding the runtime's own `.containers`/`.staging` areas: a container must never change it.
pub fn store_snapshot(root: &TestRoot) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    snapshot_dir(&root.store(), &root.store(), &mut map);
    map
}

fn snapshot_dir(base: &Path, dir: &Path, map: &mut BTreeMap<String, String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let rel = path
            .strip_prefix(base)
            .expect("under base")
            .display()
            .to_string();
        if rel == ".containers" || rel == ".staging" {
            continue;
        }
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let mut desc = format!("{:o} {}", meta.mode(), meta.len());
        if meta.is_file() && meta.len() < 4096 {
            desc.push_str(&format!(" {:?}", fs::read(&path).unwrap_or_default()));
        }
        map.insert(rel, desc);
        if meta.is_dir() {
            snapshot_dir(base, &path, map);
        }
    }
}

/// Everything a test must find unchanged, captured before the runs.
pub struct Before {
    pub mounts: String,
    pub store: BTreeMap<String, String>,
}

/// Capture the host mount table and the store fingerprint before running anything.
pub fn before(root: &TestRoot) -> Before {
    Before {
        mounts: host_mounts(),
        store: store_snapshot(root),
    }
}

/// The common leak check (for every marker: no process carrying it, no mount change, no state
/// dir) plus: the image store is byte-for-byte as before. Pass the image name (it is on the
/// runtime's command line) and any marker put on the container's command line.
pub fn assert_clean(root: &TestRoot, before: &Before, markers: &[&str]) {
    for marker in markers {
        super::assert_no_leaks(root, &before.mounts, marker);
    }
    let now = store_snapshot(root);
    let changed: Vec<_> = now
        .iter()
        .filter(|(k, v)| before.store.get(*k) != Some(*v))
        .map(|(k, _)| k.clone())
        .chain(
            before
                .store
                .keys()
                .filter(|k| !now.contains_key(*k))
                .cloned(),
        )
        .collect();
    assert!(changed.is_empty(), "image store changed: {changed:?}");
}

/// The image most run tests use: busybox + probe, PATH set, a shell as default command.
pub fn standard_config() -> serde_json::Value {
    serde_json::json!({"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]})
}

/// The arrange step of most run tests: a fresh root, one image installed from its config, and
/// what the runs must leave unchanged ([`Before`], taken right after the install).
pub struct Arranged {
    pub root: TestRoot,
    pub img: String,
    /// The image's random `/marker`.
    pub mark: String,
    pub before: Before,
}

impl Arranged {
    /// A fresh root holding one image made from `config`.
    pub fn new(config: serde_json::Value) -> Self {
        Self::prepared(config, |_, _| {})
    }

    /// Same as [`Arranged::new`], with `prepare(root, image)` run on the installed image (extra
    /// files in its rootfs) before what must stay unchanged is taken.
    pub fn prepared(config: serde_json::Value, prepare: impl FnOnce(&TestRoot, &str)) -> Self {
        let root = TestRoot::new();
        let (img, mark) = root.install_image(config);
        prepare(&root, &img);
        let before = before(&root);
        Arranged {
            root,
            img,
            mark,
            before,
        }
    }

    /// A fresh root holding the [`standard_config`] image.
    pub fn standard() -> Self {
        Self::new(standard_config())
    }

    /// `devoxx-docker run OPTIONS... IMAGE COMMAND...`, stdin empty.
    pub fn run(&self, options: &[&str], command: &[&str]) -> Ran {
        run(&self.root, &run_args(options, &self.img, command))
    }

    /// Same as [`Arranged::run`] in the background.
    pub fn spawn(&self, options: &[&str], command: &[&str]) -> Background {
        Background::spawn(&self.root, &run_args(options, &self.img, command))
    }

    /// `run OPTIONS IMAGE sh -c` [`ready_then_sleep`]`(marker)` in the background, once it
    /// printed `ready`: the runtime, and the container's PID 1 as the host sees it.
    pub fn spawn_sleeper(&self, options: &[&str], marker: &str) -> (Background, i32) {
        let script = ready_then_sleep(marker);
        let mut bg = self.spawn(options, &["/bin/sh", "-c", &script]);
        bg.wait_for_line("ready", RUN_TIMEOUT);
        (bg, container_pid1(marker))
    }

    /// [`assert_clean`] for the image and every one of `markers`.
    pub fn assert_clean(&self, markers: &[&str]) {
        let mut all = vec![self.img.as_str()];
        all.extend_from_slice(markers);
        assert_clean(&self.root, &self.before, &all);
    }
}

/// One run that must succeed on a fresh root: `run OPTIONS IMAGE COMMAND` with the image made
/// from `config` exits 0 with nothing but runtime messages on stderr, and leaves everything as
/// it was ([`assert_clean`]).
pub fn clean_run(config: serde_json::Value, options: &[&str], command: &[&str]) -> Ran {
    let arranged = Arranged::new(config);
    let ran = arranged.run(options, command);
    ran.assert_ok();
    arranged.assert_clean(&[]);
    ran
}

/// Host-side view of the `/` listing of an image in the store (what `ls /` must show inside).
pub fn image_top_level(root: &TestRoot, image: &str) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(root.store().join(image).join("rootfs"))
        .expect("read image rootfs")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    names
}

/// The host's hostname, read without changing anything.
pub fn host_hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("read hostname")
        .trim_end()
        .to_owned()
}

/// Write `data` to `w` and flush (pty/pipe input for interactive tests).
pub fn type_into(w: &mut impl Write, data: &str) {
    w.write_all(data.as_bytes()).expect("write input");
    w.flush().expect("flush input");
}

/// A private CNCF distribution registry on a loopback port (plain HTTP, as the contract allows
/// for loopback), storing under `dir`; killed on drop.
pub struct Registry {
    child: Child,
    pub addr: String,
}

impl Registry {
    /// Start `docker-registry` and wait until it accepts connections; None when not installed.
    pub fn start(dir: &Path) -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let storage = dir.join("registry");
        fs::create_dir_all(&storage).expect("registry dir");
        let config = dir.join("registry.yml");
        let yaml = format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            storage.display()
        );
        fs::write(&config, yaml).expect("registry config");
        let child = std::process::Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let registry = Registry { child, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(&registry.addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "registry never listened on {}",
                registry.addr
            );
            thread::sleep(Duration::from_millis(20));
        }
        Some(registry)
    }

    /// Build the standard test rootfs (busybox + probe + random /marker) as an OCI image with
    /// `cmd` as its Cmd and push it as `<addr>/<repo>:<tag>` (umoci + skopeo). Returns the
    /// reference and the marker; None when the tools are missing.
    pub fn push_test_image(
        &self,
        work: &Path,
        repo: &str,
        tag: &str,
        cmd: &[&str],
    ) -> Option<(String, String)> {
        let layout = work.join("layout");
        let bundle = work.join("bundle");
        let image = format!("{}:{tag}", layout.display());
        tool(
            "umoci",
            &["init", "--layout", &layout.display().to_string()],
        )?;
        tool("umoci", &["new", "--image", &image])?;
        tool(
            "umoci",
            &["unpack", "--image", &image, &bundle.display().to_string()],
        )?;
        let mark = super::build_rootfs(&bundle.join("rootfs"));
        tool(
            "umoci",
            &["repack", "--image", &image, &bundle.display().to_string()],
        )?;
        let mut config = vec!["config", "--image", &image, "--config.env", "PATH=/bin"];
        for arg in cmd {
            config.extend(["--config.cmd", arg]);
        }
        tool("umoci", &config)?;
        let reference = format!("{}/{repo}:{tag}", self.addr);
        let dest = format!("docker://{reference}");
        tool(
            "skopeo",
            &[
                "copy",
                "-q",
                "--dest-tls-verify=false",
                &format!("oci:{image}"),
                &dest,
            ],
        )?;
        Some((reference, mark))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run a host tool; None when it is not installed, panic when it fails.
fn tool(program: &str, args: &[&str]) -> Option<()> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(())
}
