//! Containers: resolve what to run, start it in new namespaces on its own root, limit it with
//! a cgroup, give it its volumes and network, wait for it, and clean everything up.
//!
//! Resources are guards declared in creation order (state → cgroup → child → network), so
//! any failure drops exactly what exists so far, the container process first.

pub mod cgroup;
pub mod clone3;
pub mod etc_files;
pub mod id;
pub mod mounts;
pub mod namespaces;
pub mod network;
pub mod no_pivot;
pub mod oci;
pub mod process;
pub mod rlimit;
pub mod rootfs;
pub mod security;
pub mod spec;
pub mod state;
pub mod tmpfs;
pub mod tty;
pub mod user;
pub mod userns;
pub mod volume;

use std::path::Path;
use std::time::Duration;

use crate::config::Paths;
use crate::error::IoContext;
use crate::image::{self, Image};
use crate::{require_root, trace, Result};
use cgroup::{Cgroup, Limits};
use etc_files::EtcFiles;
use namespaces::CgroupNs;
use network::NetworkMode;
use process::{ChildConfig, Filesystems, TerminalGuard};
use rootfs::{Layer, Root};
use security::Security;
use spec::{ProcessSpec, RunOptions};
use state::ContainerState;

/// Everything `run` needs, validated before anything is created.
struct Plan {
    image: Image,
    process: ProcessSpec,
    limits: Limits,
    volumes: Vec<volume::Volume>,
    network: NetworkMode,
    stop_timeout: Duration,
    security: Security,
    tmpfs: Vec<tmpfs::Tmpfs>,
    read_only: bool,
    cgroupns: CgroupNs,
    tty: Option<tty::TtyMode>,
}

/// `devoxx-docker run`: returns the container's exit code (128+N on signal N).
pub fn run(paths: &Paths, options: RunOptions) -> Result<i32> {
    require_root("run")?;
    trace::mark("main");
    let plan = plan(paths, &options)?;
    trace::mark("planned");
    process::block_signals()?;
    let result = execute(paths, &plan);
    if result.is_err() {
        // A start that failed never reached the reclaim after release.
        state::reclaim_stale(paths);
    }
    // When this container was the last user of a retired image tree (rmi --force, re-pull).
    image::in_use::reclaim_retired(paths, &id::is_live);
    trace::mark("done");
    result
}

/// Validate every option (exit 125, nothing created), then find or pull the image.
fn plan(paths: &Paths, options: &RunOptions) -> Result<Plan> {
    let limits = Limits::parse(
        &options.memory,
        &options.cpus,
        options.pids_limit.as_deref(),
    )?;
    let network = NetworkMode::parse(&options.network)?;
    let security = Security::resolve(&options.security)?;
    let tty = tty::mode(options.tty, options.interactive)?;
    spec::validate(options)?;
    let tmpfs = tmpfs::parse_all(&options.tmpfs, &volume::targets(&options.volumes)?)?;
    let host_is_v2 = matches!(cgroup::layout::host(), cgroup::layout::Layout::V2 { .. });
    let cgroupns = CgroupNs::parse(options.cgroupns.as_deref(), host_is_v2)?;
    let volumes = volume::parse_all(&options.volumes, &paths.volumes)?;
    let mut image = image::ensure(
        paths,
        &options.image,
        &options.registry_mirrors,
        &id::is_live,
    )?;
    image.rootfs = absolute(&image.rootfs)?;
    // docker's TERM for a pty when the caller has none.
    let term = std::env::var("TERM")
        .ok()
        .or_else(|| tty.map(|_| "xterm".to_owned()));
    let user_spec = spec::user_spec(options, &image.config)?;
    let user = user::resolve_in_image(user_spec.as_ref(), &image.rootfs)?;
    let process = spec::resolve(options, &image.config, term.as_deref(), user)?;
    Ok(Plan {
        image,
        process,
        limits,
        volumes,
        network,
        stop_timeout: Duration::from_secs(options.stop_timeout),
        security,
        tmpfs,
        read_only: options.read_only,
        cgroupns,
        tty,
    })
}

fn absolute(path: &Path) -> Result<std::path::PathBuf> {
    path.canonicalize()
        .ctx(|| format!("resolve {}", path.display()))
}

/// Create the container, run it to completion, clean up; the container's exit code.
fn execute(paths: &Paths, plan: &Plan) -> Result<i32> {
    // Held until the overlay is mounted, so no rmi or pull can retire the tree in between.
    let image_lock = image::store::lock(paths, &plan.image.name)?;
    let state = ContainerState::create(paths)?;
    let state_dir = absolute(&state.dir)?;
    image::in_use::record(&state_dir, &plan.image.name, &plan.image.rootfs)?;
    let layer = Layer::new(&plan.image.rootfs, &state_dir);
    layer.create_dirs()?;
    let etc = EtcFiles::for_container(&plan.process.hostname, !plan.network.needs_netns());
    trace::mark("prepared");
    let cgroup = Cgroup::create(&state.id, &plan.limits)?;
    trace::mark("cgroup");
    let tty = plan.tty.map(tty::Tty::prepare).transpose()?;
    let config = ChildConfig {
        spec: &plan.process,
        root: Root::Layer(&layer),
        volumes: &plan.volumes,
        network: plan.network,
        etc: Some(&etc),
        security: &plan.security,
        tmpfs: &plan.tmpfs,
        read_only: plan.read_only,
        cgroupns: plan.cgroupns,
        tty: tty.as_ref().map(tty::Tty::child_side),
        filesystems: Filesystems::Docker,
        joins: &[],
        user_namespace: false,
        gate: None,
        preserve_fds: 0,
        hooks: None,
    };
    let terminal = TerminalGuard::capture();
    let flags = namespaces::clone_flags(plan.network.needs_netns());
    let mut child = process::start(&config, flags, cgroup.clone_target())?;
    trace::mark("cloned");
    let pid = child.pid().as_raw();
    let network = match place_in_cgroup(&cgroup, &child)
        .and_then(|()| network::setup_host_side(plan.network, &state.id, pid))
    {
        Ok(network) => network,
        Err(e) => return Err(child.earlier_failure().unwrap_or(e)),
    };
    trace::mark("placed");
    child.release_and_wait_exec()?;
    trace::mark("execed");
    // Dropped before `child` on every way out: the host terminal is restored.
    let relay = tty.map(tty::Tty::attach).transpose()?;
    drop(image_lock);
    // Off the start path: the command already runs; our own state is locked, so kept.
    state::reclaim_stale(paths);
    trace::mark("reclaimed");
    let exit = child.wait(plan.stop_timeout)?;
    trace::mark("exited");
    drop(relay);
    drop(terminal);
    let code = process::exit_code(exit.status);
    if code == 128 + libc::SIGKILL && !exit.killed_by_runtime && cgroup.oom_killed() {
        report_oom(&plan.limits);
    }
    // Tear down in reverse creation order: network, child, cgroup, state (the writable layer).
    drop(network);
    drop(child);
    drop(cgroup);
    trace::mark("uncgrouped");
    drop(state);
    trace::mark("unlayered");
    Ok(code)
}

/// Move the child into its cgroup unless clone3 created it there.
fn place_in_cgroup(cgroup: &Cgroup, child: &process::Child) -> Result<()> {
    if child.born_in_cgroup() {
        return Ok(());
    }
    cgroup.add_process(child.pid().as_raw())
}

/// The contract's one line when the kernel OOM-killed the container.
fn report_oom(limits: &Limits) {
    let limit = limits
        .memory
        .map_or_else(|| "unknown".to_owned(), |bytes| bytes.to_string());
    crate::note!(
        "container was killed: memory limit ({limit} bytes) reached; raise it with --memory"
    );
}
