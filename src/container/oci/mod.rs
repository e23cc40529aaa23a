//! The OCI runtime front end: runc's `create`, `start`, `state`, `kill`, `delete`, `ps`,
//! `features`, driven by engines (podman/conmon, containerd's shim) on a bundle.
//!
//! One core, two front ends: [`bundle`] turns `config.json` into the same types `run` builds
//! from an image ([`super::spec::ProcessSpec`], [`super::cgroup::Limits`],
//! [`super::security::Security`], namespaces, mounts), and `create` starts the container's init
//! through the same [`super::process`] code, with one difference: the init stops at a gate
//! (the state directory's `exec.fifo`) once everything is set up, `create` writes the pid file
//! and exits, and `start` opens the gate. No process of ours stays between the caller and the
//! container: the caller (a subreaper) reaps the init.
//!
//! State lives in `<root>/.oci/<id>/` ([`state`]); the status is read from the kernel.

pub mod bundle;
pub mod console;
pub mod devices;
pub mod fields;
pub mod hooks;
pub mod host_mounts;
pub mod log;
pub mod propagation;
pub mod seccomp;
pub mod signal;
pub mod state;
pub mod sysctl;

use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::sys::stat::Mode;

use super::cgroup::devices::Devices;
use super::cgroup::{self, Cgroup, CgroupDir};
use super::mounts;
use super::namespaces::Join;
use super::process::{self, ChildConfig, Filesystems};
use super::rootfs::Root;
use crate::config::Paths;
use crate::{require_root, Error, Result};
use console::Console;
use state::{Record, StateDir, Status};

/// `create`'s options as runc takes them.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    /// `--no-pivot`: move and chroot instead of pivot_root ([`super::no_pivot`]).
    pub no_pivot: bool,
    pub preserve_fds: u32,
}

/// `create`: set the container up and leave its init waiting for `start`.
pub fn create(paths: &Paths, options: &CreateOptions) -> Result<()> {
    require_root("create")?;
    let state = StateDir::of(paths, &options.id)?;
    let host_is_v2 = matches!(cgroup::layout::host(), cgroup::layout::Layout::V2 { .. });
    let bundle = bundle::load(&options.bundle, &options.id, host_is_v2)?;
    if state.exists() {
        return Err(Error::Usage(format!(
            "container {} already exists",
            options.id
        )));
    }
    if options.no_pivot {
        // Read by the container's init (a clone of this process) at its root switch.
        std::env::set_var(super::no_pivot::FORCE_ENV, "1");
    }
    let console = Console::connect(bundle.terminal, options.console_socket.as_deref(), true)?;
    state.claim()?;
    let claimed = Claimed(Some(&state));
    let gate = make_gate(&state.fifo())?;
    // Declared before the cgroup guards, so dropped after them: a failed `create` takes the
    // default parent it made with its cgroup (a successful one leaves it non-empty).
    let _parents = DefaultParents(cgroup_places(&bundle.cgroup_path));
    let place = || Cgroup::create_at(&bundle.cgroup_path, &options.id, &bundle.limits);
    let cgroup = match place() {
        // A `delete` removed the empty default parent between our mkdirs: once more.
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => place()?,
        other => other?,
    };
    let devices = devices(&bundle, &cgroup)?;
    for join in bundle
        .joins
        .iter()
        .filter(|j| j.kind == nix::sched::CloneFlags::CLONE_NEWPID)
    {
        join.enter()?;
    }
    process::block_signals()?;
    let mut mounts = mounts::with_cgroup_dirs(&bundle.mounts, &cgroup.paths(), &bundle.cgroup_path);
    if bundle.user_namespace.is_some() {
        let new_netns = bundle
            .clone_flags
            .contains(nix::sched::CloneFlags::CLONE_NEWNET);
        let v2_dir = cgroup.paths().into_iter().next().filter(|_| host_is_v2);
        mounts = super::userns::adapt_mounts(&mounts, new_netns, v2_dir.as_deref());
    }
    if bundle.shares_mount_ns {
        // A shared or slave mount in the host's table would tie it to the host's peers.
        for m in &mut mounts {
            m.propagation = nix::mount::MsFlags::MS_PRIVATE | nix::mount::MsFlags::MS_REC;
        }
    }
    // Completed (pid, start time) once the init exists; hooks read it before that.
    let mut record = Record {
        id: options.id.clone(),
        pid: 0,
        start_time: 0,
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: state::now_rfc3339(),
        annotations: bundle.annotations.clone(),
        cgroup_paths: cgroup
            .paths()
            .into_iter()
            .chain(devices.as_ref().and_then(Devices::path))
            .collect(),
        host_mounts: Vec::new(),
    };
    let start_state = state_document(&options.id, Status::Created, 0, Some(&record));
    let config = ChildConfig {
        spec: &bundle.process,
        root: Root::Bundle(&bundle.rootfs),
        volumes: &[],
        network: bundle.network,
        etc: None,
        security: &bundle.security,
        tty: console.as_ref().map(Console::child_side),
        tmpfs: &[],
        read_only: bundle.readonly,
        cgroupns: bundle.cgroupns,
        filesystems: Filesystems::Oci {
            mounts: &mounts,
            masked: &bundle.masked,
            readonly: &bundle.readonly_paths,
            sysctl: &bundle.sysctl,
            devices: &bundle.devices,
            propagation: bundle.propagation,
            shares_mount_ns: bundle.shares_mount_ns,
        },
        joins: &bundle.joins,
        user_namespace: bundle.user_namespace.is_some(),
        gate: Some(gate.as_raw_fd()),
        preserve_fds: options.preserve_fds,
        hooks: Some(hooks::ChildHooks {
            pause_before_root: bundle.hooks.at_create(),
            start_container: &bundle.hooks.start_container,
            state: &start_state,
        }),
    };
    // Declared before the child: dropped after it (killed, reaped) when create fails.
    let host_mounts = match bundle.shares_mount_ns {
        true => Some(host_mounts::Watch::start(&bundle.rootfs)?),
        false => None,
    };
    let mut child = process::start(&config, bundle.clone_flags, cgroup.clone_target())?;
    let pid = child.pid().as_raw();
    if !child.born_in_cgroup() {
        if let Err(e) = cgroup.add_process(pid) {
            return Err(child.earlier_failure().unwrap_or(e));
        }
    }
    record.pid = pid;
    if let Some(devices) = &devices {
        if let Err(e) = devices.add_process(pid) {
            return Err(child.earlier_failure().unwrap_or(e));
        }
    }
    if let Some(userns) = &bundle.user_namespace {
        if let Err(e) = child.map_user_namespace(userns) {
            return Err(child.earlier_failure().unwrap_or(e));
        }
    }
    if bundle.hooks.at_create() {
        child.wait_hook_point()?;
        let creating = state_document(&options.id, Status::Creating, pid, Some(&record));
        run_create_hooks(&bundle.hooks, &creating.to_string(), pid)?;
        child.resume_after_hooks()?;
    }
    child.release_and_wait_exec()?;
    record.start_time = state::start_time(pid)
        .ok_or_else(|| Error::Runtime("the container's init died during create".into()))?;
    if let Some(watch) = &host_mounts {
        record.host_mounts = watch.made()?;
    }
    bundle.hooks.save(&state.dir)?;
    state.save(&record)?;
    if let Some(pid_file) = &options.pid_file {
        state::write_atomically(pid_file, pid.to_string().as_bytes())?;
    }
    cgroup.keep();
    if let Some(devices) = devices {
        devices.keep();
    }
    child.detach();
    claimed.disarm();
    if let Some(watch) = host_mounts {
        watch.keep();
    }
    Ok(())
}

/// `prestart` and `createRuntime` in the runtime's namespaces, then `createContainer` in the
/// init's mount namespace (it waits before its root switch meanwhile).
fn run_create_hooks(hooks: &hooks::Hooks, state: &str, pid: i32) -> Result<()> {
    hooks::run("prestart", &hooks.prestart, state, None)?;
    hooks::run("createRuntime", &hooks.create_runtime, state, None)?;
    if hooks.create_container.is_empty() {
        return Ok(());
    }
    let path = format!("/proc/{pid}/ns/mnt");
    let mount_ns: OwnedFd = std::fs::File::open(&path)
        .map_err(|e| Error::path("open", &path, e))?
        .into();
    hooks::run(
        "createContainer",
        &hooks.create_container,
        state,
        Some(&mount_ns),
    )
}

/// The spec's state document, as `state` prints it and hooks read it on stdin (`record`
/// None: a container still being created, known by its id only).
fn state_document(
    id: &str,
    status: Status,
    pid: i32,
    record: Option<&Record>,
) -> serde_json::Value {
    serde_json::json!({
        "ociVersion": state::OCI_VERSION,
        "id": id,
        "status": status.as_str(),
        "pid": pid,
        "bundle": record.map(|r| r.bundle.clone()).unwrap_or_default(),
        "rootfs": record.map(|r| r.rootfs.clone()).unwrap_or_default(),
        "created": record.map(|r| r.created.clone()).unwrap_or_default(),
        "owner": "",
        "annotations": record.map(|r| r.annotations.clone()).unwrap_or_default(),
    })
}

/// The config's device rules enforced on the container's cgroup (none: no device cgroup, as
/// before; `run` never has rules, it drops `CAP_MKNOD` instead).
fn devices(bundle: &bundle::Bundle, cgroup: &Cgroup) -> Result<Option<Devices>> {
    if bundle.device_rules.is_empty() {
        return Ok(None);
    }
    let paths = cgroup.paths();
    let install = || Devices::install(&bundle.cgroup_path, paths.first(), &bundle.device_rules);
    match install() {
        // A `delete` removed the empty default parent between our mkdirs: once more.
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            install().map(Some)
        }
        other => other.map(Some),
    }
}

/// Removes a claimed state directory unless `create` got to the end.
struct Claimed<'a>(Option<&'a StateDir>);

impl Claimed<'_> {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for Claimed<'_> {
    fn drop(&mut self) {
        if let Some(state) = self.0 {
            let _ = state.remove();
        }
    }
}

/// The FIFO `start` writes to, and its read end for the init (non-blocking: opening it needs
/// no writer; the init polls it).
fn make_gate(path: &Path) -> Result<OwnedFd> {
    nix::unistd::mkfifo(path, Mode::from_bits_truncate(0o600))
        .map_err(|e| Error::path("mkfifo", path, e.into()))?;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::path("open", path, e))?;
    Ok(file.into())
}

/// `exec`'s options as runc takes them.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub id: String,
    /// `--process FILE`; else `args` replace the bundle's process args.
    pub process: Option<PathBuf>,
    pub args: Vec<String>,
    pub pid_file: Option<PathBuf>,
    pub detach: bool,
    pub preserve_fds: u32,
    /// `--tty`: the short form's process gets a terminal (sent to `console_socket`).
    pub tty: bool,
    pub console_socket: Option<PathBuf>,
}

/// How long a forwarded SIGTERM/SIGINT gives an exec'd process before SIGKILL.
const EXEC_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// `exec`: run a process in a running container (its namespaces, cgroup, the process's
/// identity and limits); without `--detach`, wait for it and return its exit code.
pub fn exec(paths: &Paths, options: &ExecOptions) -> Result<i32> {
    require_root("exec")?;
    let state = StateDir::of(paths, &options.id)?;
    let (record, status) = loaded(&state)?;
    if status != Status::Running {
        return Err(Error::Usage(format!(
            "cannot exec in container {}: it is {}, not running",
            options.id,
            status.as_str()
        )));
    }
    let process = bundle::exec_process(
        &record.bundle,
        options.process.as_deref(),
        &options.args,
        options.tty,
    )?;
    let console = Console::connect(process.terminal, options.console_socket.as_deref(), false)?;
    let (pid_ns, joins) = container_namespaces(record.pid)?;
    if !state::is_alive(record.pid, record.start_time) {
        return Err(Error::Usage(format!(
            "cannot exec in container {}: it stopped",
            options.id
        )));
    }
    if let Some(pid_ns) = pid_ns {
        pid_ns.enter()?;
    }
    process::block_signals()?;
    let config = process::ExecConfig {
        spec: &process.spec,
        security: &process.security,
        tty: console.as_ref().map(Console::child_side),
        joins: &joins,
        detach: options.detach,
        preserve_fds: options.preserve_fds,
        chroot: (!joins
            .iter()
            .any(|j| j.kind == nix::sched::CloneFlags::CLONE_NEWNS))
        .then(|| PathBuf::from(format!("/proc/{}/root", record.pid))),
    };
    let target = v2_target(&record);
    let mut child = process::start_exec(&config, target.as_ref().map(|fd| fd.as_fd()))?;
    let pid = child.pid().as_raw();
    if !child.born_in_cgroup() {
        for dir in &record.cgroup_paths {
            if let Err(e) = CgroupDir::new(dir).add(pid) {
                return Err(child.earlier_failure().unwrap_or(e));
            }
        }
    }
    child.release_and_wait_exec()?;
    if let Some(pid_file) = &options.pid_file {
        state::write_atomically(pid_file, pid.to_string().as_bytes())?;
    }
    if options.detach {
        child.detach();
        return Ok(0);
    }
    let exit = child.wait(EXEC_STOP_TIMEOUT)?;
    Ok(process::exit_code(exit.status))
}

/// The namespaces of `pid` that differ from ours: the PID one apart (the runtime joins it so
/// its child is born there), the others in the order the child joins them, mount last.
fn container_namespaces(pid: i32) -> Result<(Option<Join>, Vec<Join>)> {
    use nix::sched::CloneFlags as F;
    let kinds = [
        ("pid", F::CLONE_NEWPID),
        // First: the others belong to it, and its capabilities are needed to join them.
        ("user", F::CLONE_NEWUSER),
        ("ipc", F::CLONE_NEWIPC),
        ("uts", F::CLONE_NEWUTS),
        ("net", F::CLONE_NEWNET),
        ("cgroup", F::CLONE_NEWCGROUP),
        ("mnt", F::CLONE_NEWNS),
    ];
    let mut pid_ns = None;
    let mut joins = Vec::new();
    for (name, kind) in kinds {
        let theirs = PathBuf::from(format!("/proc/{pid}/ns/{name}"));
        let ours = PathBuf::from(format!("/proc/self/ns/{name}"));
        let inode =
            |p: &Path| std::fs::metadata(p).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        let theirs_ino = inode(&theirs).map_err(|e| Error::path("open namespace", &theirs, e))?;
        if inode(&ours).ok() == Some(theirs_ino) {
            continue;
        }
        let join = Join { kind, path: theirs };
        match kind {
            F::CLONE_NEWPID => pid_ns = Some(join),
            _ => joins.push(join),
        }
    }
    Ok((pid_ns, joins))
}

/// On cgroup v2, the container's cgroup opened for clone3 (the exec'd process is born there).
fn v2_target(record: &Record) -> Option<OwnedFd> {
    if !matches!(cgroup::layout::host(), cgroup::layout::Layout::V2 { .. }) {
        return None;
    }
    let dir = record.cgroup_paths.first()?;
    let flags =
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC;
    nix::fcntl::open(dir.as_path(), flags, Mode::empty()).ok()
}

/// `start`: release a `created` container's init (it then execs the user's program).
pub fn start(paths: &Paths, id: &str) -> Result<()> {
    let state = StateDir::of(paths, id)?;
    let record = state.load()?;
    let status = state.status(record.as_ref());
    if status != Status::Created {
        return Err(Error::Usage(format!(
            "cannot start container {id}: it is {}, not created",
            status.as_str()
        )));
    }
    let mut fifo = match OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(state.fifo())
    {
        Ok(fifo) => fifo,
        // No reader: the init is gone.
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
            return Err(Error::Runtime(format!(
                "cannot start container {id}: its init is not running"
            )))
        }
        Err(e) => return Err(Error::path("open", state.fifo(), e)),
    };
    // Gone before the byte is sent: `state` says running as soon as the init may exec.
    std::fs::remove_file(state.fifo()).map_err(|e| Error::path("remove", state.fifo(), e))?;
    fifo.write_all(b"0")
        .map_err(|e| Error::io(format!("start container {id}"), e))?;
    // As runc's `start` (it reads the FIFO until the init's end closes at exec): return once
    // the program runs, so a signal sent next reaches it, not the init still on its way.
    if let Some(record) = &record {
        wait_for_exec(record);
    }
    let hooks = hooks::Hooks::load(&state.dir)?;
    if !hooks.poststart.is_empty() {
        hooks::run_warning_only("poststart", &hooks.poststart, &state_of(paths, id)?);
    }
    Ok(())
}

/// How long `start` waits for the exec: a program that is this very binary cannot be told
/// from the init before it, and must not hang `start`.
const EXEC_WAIT: Duration = Duration::from_secs(10);

/// Until the released init has exec'd the program (its executable is no longer the
/// runtime's: `startContainer` hooks ran first) or died, at most [`EXEC_WAIT`]: `start`
/// returns, and `poststart` runs, after that.
fn wait_for_exec(record: &Record) {
    use std::os::unix::fs::MetadataExt;
    let identity = |path: &str| std::fs::metadata(path).map(|m| (m.dev(), m.ino())).ok();
    let ours = identity("/proc/self/exe");
    let theirs = format!("/proc/{}/exe", record.pid);
    let deadline = Instant::now() + EXEC_WAIT;
    while state::is_alive(record.pid, record.start_time)
        && identity(&theirs) == ours
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The state document now, compact (a hook's stdin).
fn state_of(paths: &Paths, id: &str) -> Result<String> {
    let pretty = state(paths, id)?;
    let value: serde_json::Value =
        serde_json::from_str(&pretty).map_err(|e| Error::Runtime(format!("state: {e}")))?;
    Ok(value.to_string())
}

/// `state`: the spec's state JSON.
pub fn state(paths: &Paths, id: &str) -> Result<String> {
    let state = StateDir::of(paths, id)?;
    let record = state.load()?;
    let status = state.status(record.as_ref());
    let pid = match (&record, status) {
        (Some(r), Status::Created | Status::Running) => r.pid,
        _ => 0,
    };
    let value = state_document(id, status, pid, record.as_ref());
    serde_json::to_string_pretty(&value).map_err(|e| Error::Runtime(format!("encode state: {e}")))
}

/// `kill [--all] ID [SIGNAL]`: signal the init (or every process of the container's cgroup).
pub fn kill(paths: &Paths, id: &str, signal: &str, all: bool) -> Result<()> {
    let signal = signal::parse(signal)?;
    let state = StateDir::of(paths, id)?;
    let (record, status) = loaded(&state)?;
    if !matches!(status, Status::Created | Status::Running) {
        return Err(Error::Usage(format!(
            "cannot kill container {id}: it is {}",
            status.as_str()
        )));
    }
    if all {
        for pid in processes(&record) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        }
        return Ok(());
    }
    signal_init(&record, signal)
}

/// Signal the init through a pidfd opened while it is known to be the same process.
fn signal_init(record: &Record, signal: Signal) -> Result<()> {
    let pid = rustix::process::Pid::from_raw(record.pid)
        .ok_or_else(|| Error::Runtime("invalid pid in state".into()))?;
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        .map_err(|e| Error::io("pidfd_open the container's init", e.into()))?;
    if !state::is_alive(record.pid, record.start_time) {
        return Err(Error::Usage(format!(
            "cannot kill container {}: it is stopped",
            record.id
        )));
    }
    let signal = rustix::process::Signal::from_named_raw(signal as i32)
        .ok_or_else(|| Error::Usage(format!("invalid signal {signal}")))?;
    rustix::process::pidfd_send_signal(pidfd.as_fd(), signal)
        .map_err(|e| Error::io("signal the container's init", e.into()))
}

/// The record of a container `create` finished, and its status now.
fn loaded(state: &StateDir) -> Result<(Record, Status)> {
    match state.load()? {
        Some(record) => {
            let status = state.status(Some(&record));
            Ok((record, status))
        }
        None => Err(Error::Usage(format!(
            "container {} is still being created",
            state.id
        ))),
    }
}

/// Every pid in the container's cgroups (each hierarchy lists the same processes on v1).
fn processes(record: &Record) -> Vec<i32> {
    let mut pids: Vec<i32> = record
        .cgroup_paths
        .iter()
        .flat_map(|p| CgroupDir::new(p).subtree())
        .flat_map(|d| d.pids())
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// How long `delete --force` waits for a SIGKILLed init to die.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// `delete [--force] ID`: remove a stopped container's cgroup and state (`--force`: kill it
/// first, whatever its status).
pub fn delete(paths: &Paths, id: &str, force: bool) -> Result<()> {
    let state = StateDir::of(paths, id)?;
    if force && !state.exists() {
        // runc's `delete --force` of an unknown id succeeds: podman runs it to clean up after
        // a `create` that failed, and would otherwise report our cleanup instead of the cause.
        return Ok(());
    }
    let record = state.load()?;
    let status = state.status(record.as_ref());
    if status != Status::Stopped && !force {
        return Err(Error::Usage(format!(
            "cannot delete container {id}: it is {}, not stopped (use --force)",
            status.as_str()
        )));
    }
    let hooks = hooks::Hooks::load(&state.dir)?;
    let last_state = match hooks.poststop.is_empty() {
        true => String::new(),
        false => state_of(paths, id)?,
    };
    if let Some(record) = &record {
        if status != Status::Stopped {
            kill_and_wait(record)?;
        }
        cgroup::remove_paths(&record.cgroup_paths);
        remove_default_parents(&record.cgroup_paths);
        // The state stays for another `delete` if a mount could not be undone.
        host_mounts::unmount(&record.host_mounts)?;
    }
    // Other mounts and namespaces need nothing: they lived in the container's own namespaces.
    state.remove()?;
    if !hooks.poststop.is_empty() {
        let mut stopped: serde_json::Value =
            serde_json::from_str(&last_state).map_err(|e| Error::Runtime(format!("state: {e}")))?;
        stopped["status"] = Status::Stopped.as_str().into();
        stopped["pid"] = 0.into();
        hooks::run_warning_only("poststop", &hooks.poststop, &stopped.to_string());
    }
    Ok(())
}

/// Where a `create` in progress may put its cgroup; on drop (after the cgroup guards removed
/// the container's directories, or with them still there when `create` succeeded) the default
/// parent in each hierarchy goes if it is empty, as [`remove_default_parents`] does at `delete`.
struct DefaultParents(Vec<PathBuf>);

impl Drop for DefaultParents {
    fn drop(&mut self) {
        remove_default_parents(&self.0);
    }
}

/// The cgroup at `rel` in every hierarchy a container may join (v2: one; v1: each
/// controller's, and the devices one).
fn cgroup_places(rel: &Path) -> Vec<PathBuf> {
    let roots: Vec<PathBuf> = match cgroup::layout::host() {
        cgroup::layout::Layout::V2 { root, .. } => vec![root.clone()],
        cgroup::layout::Layout::V1 { hierarchies } => hierarchies
            .iter()
            .map(|(_, m)| m.clone())
            .chain(cgroup::devices::v1_mount())
            .collect(),
        cgroup::layout::Layout::None => Vec::new(),
    };
    roots.iter().map(|r| r.join(rel)).collect()
}

/// The default parent (`devoxx-docker-oci/`) goes with its last container, so an idle host has
/// no trace of OCI containers; a parent named by a config's `cgroupsPath` stays, as with runc.
fn remove_default_parents(paths: &[PathBuf]) {
    for parent in paths.iter().filter_map(|p| p.parent()) {
        if parent.file_name() == Some(std::ffi::OsStr::new(bundle::DEFAULT_CGROUP_PARENT)) {
            // Fails (EBUSY, ENOTEMPTY) while another container lives there: that is fine.
            let _ = std::fs::remove_dir(parent);
        }
    }
}

/// SIGKILL every process of the container, then wait for the init to be gone.
fn kill_and_wait(record: &Record) -> Result<()> {
    let _ = signal_init(record, Signal::SIGKILL);
    for pid in processes(record) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
    }
    let deadline = Instant::now() + KILL_WAIT;
    while state::is_alive(record.pid, record.start_time) {
        if Instant::now() > deadline {
            return Err(Error::Runtime(format!(
                "container {}: its init survived SIGKILL for {} s",
                record.id,
                KILL_WAIT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// `ps --format json ID`: the container's pids, as a JSON array.
pub fn ps(paths: &Paths, id: &str, format: &str) -> Result<String> {
    let state = StateDir::of(paths, id)?;
    let (record, _) = loaded(&state)?;
    let pids = processes(&record);
    match format {
        "json" => serde_json::to_string(&pids).map_err(|e| Error::Runtime(e.to_string())),
        "table" => Ok(std::iter::once("PID".to_owned())
            .chain(pids.iter().map(i32::to_string))
            .collect::<Vec<_>>()
            .join("\n")),
        other => Err(Error::Usage(format!(
            "invalid --format {other:?}: expected json or table"
        ))),
    }
}

/// `features`: what this runtime implements (the spec's features document).
pub fn features() -> String {
    let value = serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": state::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer",
                  "poststart", "poststop"],
        "mountOptions": [
            "ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec", "sync", "async",
            "dirsync", "mand", "nomand", "atime", "noatime", "diratime", "nodiratime",
            "relatime", "norelatime", "strictatime", "nostrictatime", "bind", "rbind",
            "private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable",
            "runbindable"
        ],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": caps::all().iter().map(|c| c.to_string()).collect::<std::collections::BTreeSet<_>>(),
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL",
                            "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG",
                            "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE",
                              "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_X86_64"],
                "supportedFlags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                                   "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false}
        }
    });
    serde_json::to_string_pretty(&value).unwrap_or_default()
}
