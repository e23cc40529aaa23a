//! An OCI bundle's `config.json`, read once and translated into the runtime's own types: the
//! same [`ProcessSpec`], [`Limits`], [`Security`], namespaces and mounts `run` builds from an
//! image, so both front ends share one container core. Unsupported fields are refused by
//! [`super::fields`] before the typed parse; unsupported values here, each with one line.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use caps::CapsHashSet;
use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxCapabilities, LinuxNamespaceType, LinuxResources, Spec};

use crate::container::cgroup::{
    devices, parse_cpu_list, CpuMax, Limits, CPU_PERIOD, CPU_SHARES_RANGE,
};
use crate::container::mounts::{self, Mount};
use crate::container::namespaces::{CgroupNs, Join};
use crate::container::network::NetworkMode;
use crate::container::rlimit::{self, Rlimit};
use crate::container::security::capabilities::CapSets;
use crate::container::security::Security;
use crate::container::spec::{ProcessSpec, DEFAULT_UMASK};
use crate::container::user::{User, MAX_ID};
use crate::container::userns::{IdMap, IdRange, UserNamespace};
use crate::{Error, Result};

/// Everything `create` needs, validated before anything is created.
#[derive(Debug)]
pub struct Bundle {
    /// The bundle directory, absolute.
    pub dir: PathBuf,
    /// `root.path` resolved against the bundle, canonical.
    pub rootfs: PathBuf,
    /// `root.readonly`.
    pub readonly: bool,
    pub process: ProcessSpec,
    /// `process.terminal`: the process gets a pty, its master sent to `--console-socket`.
    pub terminal: bool,
    pub mounts: Vec<Mount>,
    pub masked: Vec<String>,
    pub readonly_paths: Vec<String>,
    /// New namespaces (clone flags; the cgroup namespace is [`Bundle::cgroupns`]).
    pub clone_flags: CloneFlags,
    /// Existing namespaces to join.
    pub joins: Vec<Join>,
    /// `None`: a new network namespace (loopback brought up); `Host`: none or a joined one.
    pub network: NetworkMode,
    pub cgroupns: CgroupNs,
    /// Relative to each cgroup hierarchy's root.
    pub cgroup_path: PathBuf,
    pub limits: Limits,
    /// `linux.resources.devices` (empty: no device cgroup, today's behaviour).
    pub device_rules: Vec<devices::Rule>,
    pub security: Security,
    pub annotations: BTreeMap<String, String>,
    pub hooks: super::hooks::Hooks,
    /// `linux.sysctl`, each key isolated by a new namespace of the container's.
    pub sysctl: Vec<super::sysctl::Sysctl>,
    /// `linux.devices`: nodes made in the container's `/dev`.
    pub devices: Vec<super::devices::Device>,
    /// A new user namespace (`CLONE_NEWUSER` is then in [`Bundle::clone_flags`]) and its maps.
    pub user_namespace: Option<UserNamespace>,
    /// `linux.rootfsPropagation`.
    pub propagation: super::propagation::RootPropagation,
    /// No mount namespace listed: the container lives in the runtime's (the host's), its
    /// mounts recorded and undone by the runtime ([`super::host_mounts`]).
    pub shares_mount_ns: bool,
}

/// Where a container's cgroup goes when the config has no `cgroupsPath`.
pub const DEFAULT_CGROUP_PARENT: &str = "devoxx-docker-oci";

/// Read and translate `<dir>/config.json` for container `id`.
pub fn load(dir: &Path, id: &str, host_is_v2: bool) -> Result<Bundle> {
    let dir = dir
        .canonicalize()
        .map_err(|e| Error::path("bundle", dir, e))?;
    let path = dir.join("config.json");
    let text = std::fs::read(&path).map_err(|e| Error::path("read", &path, e))?;
    let raw: serde_json::Value = serde_json::from_slice(&text)
        .map_err(|e| Error::Usage(format!("config.json: not valid JSON: {e}")))?;
    super::fields::check(&raw)?;
    let spec: Spec =
        serde_json::from_value(raw).map_err(|e| Error::Usage(format!("config.json: {e}")))?;
    translate(&spec, &dir, id, host_is_v2)
}

/// `exec`'s process in the runtime's types.
#[derive(Debug)]
pub struct ExecProcess {
    pub spec: ProcessSpec,
    pub security: Security,
    /// `process.terminal` (`exec --tty` in the short form).
    pub terminal: bool,
}

/// `exec`'s process: `process_file` (a `process` object, `exec --process`) or the bundle's own
/// `process` with `args` in place of its args and `tty` as its terminal (`exec [-t] ID
/// CMD...`, runc's rule), as the runtime's types.
pub fn exec_process(
    dir: &Path,
    process_file: Option<&Path>,
    args: &[String],
    tty: bool,
) -> Result<ExecProcess> {
    let path = dir.join("config.json");
    let text = std::fs::read(&path).map_err(|e| Error::path("read", &path, e))?;
    let mut spec: Spec =
        serde_json::from_slice(&text).map_err(|e| Error::Usage(format!("config.json: {e}")))?;
    let process: oci_spec::runtime::Process = match process_file {
        Some(file) => {
            let text = std::fs::read(file).map_err(|e| Error::path("read", file, e))?;
            let raw: serde_json::Value = serde_json::from_slice(&text)
                .map_err(|e| Error::Usage(format!("--process: not valid JSON: {e}")))?;
            super::fields::check_process(&raw)?;
            serde_json::from_value(raw).map_err(|e| Error::Usage(format!("--process: {e}")))?
        }
        None if args.is_empty() => {
            return Err(Error::Usage(
                "exec needs --process FILE or a command after the id".into(),
            ))
        }
        None => {
            let mut process = spec.process().clone().unwrap_or_default();
            process.set_args(Some(args.to_vec()));
            process.set_terminal(Some(tty));
            process
        }
    };
    let terminal = process.terminal().unwrap_or(false);
    spec.set_process(Some(process));
    Ok(ExecProcess {
        spec: process_spec(&spec, String::new())?,
        security: security(&spec)?,
        terminal,
    })
}

/// The typed config → the runtime's types (each unsupported value: one line, exit 125).
pub fn translate(spec: &Spec, dir: &Path, id: &str, host_is_v2: bool) -> Result<Bundle> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| usage("root is required"))?;
    let rootfs = dir
        .join(root.path())
        .canonicalize()
        .map_err(|e| usage(&format!("root.path {}: {e}", root.path().display())))?;
    if !rootfs.is_dir() {
        return Err(usage("root.path must be a directory"));
    }
    let linux = spec.linux().clone().unwrap_or_default();
    let namespaces = Namespaces::from_config(linux.namespaces().as_deref().unwrap_or_default())?;
    let hostname = spec.hostname().clone().unwrap_or_default();
    let joined_uts = namespaces
        .joins
        .iter()
        .any(|j| j.kind == CloneFlags::CLONE_NEWUTS);
    if !hostname.is_empty() && !namespaces.flags.contains(CloneFlags::CLONE_NEWUTS) && !joined_uts {
        return Err(usage(
            "hostname needs a uts namespace in linux.namespaces, new or joined by path (it \
             would rename the host)",
        ));
    }
    if !hostname.is_empty() {
        // runc sets it in a joined one too, but never in the runtime's own (the host's).
        namespaces.refuse_own(CloneFlags::CLONE_NEWUTS, "a hostname")?;
    }
    if hostname.len() > 64 {
        return Err(usage("hostname is longer than 64 bytes"));
    }
    let propagation =
        super::propagation::RootPropagation::parse(linux.rootfs_propagation().as_deref())?;
    let process = process_spec(spec, hostname)?;
    let user_namespace = user_namespace(&linux, namespaces.flags, &process.user)?;
    if user_namespace.is_some() && !namespaces.flags.contains(CloneFlags::CLONE_NEWNS) {
        // The mapped root could mount nothing in a mount namespace its own does not own.
        return Err(usage(
            "a user namespace needs a new mount namespace in linux.namespaces",
        ));
    }
    if let Some(userns) = &user_namespace {
        userns.check_reachable(&rootfs)?;
    }
    let mounts = spec
        .mounts()
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, m)| {
            mounts::parse(
                i,
                m.destination(),
                m.typ().as_deref(),
                m.source().as_deref(),
                m.options().as_deref().unwrap_or_default(),
                dir,
                host_is_v2,
            )
        })
        .collect::<Result<Vec<_>>>()?;
    let masked = absolute_paths("linux.maskedPaths", linux.masked_paths())?;
    let readonly_paths = absolute_paths("linux.readonlyPaths", linux.readonly_paths())?;
    let limits = match linux.resources() {
        Some(resources) => limits(resources, host_is_v2)?,
        None => Limits::default(),
    };
    let device_rules = device_rules(linux.resources().as_ref())?;
    let cgroup_path = cgroup_path(linux.cgroups_path().as_deref(), id)?;
    let security = security(spec)?;
    let hooks = super::hooks::Hooks::from_config(spec.hooks().as_ref())?;
    let devices = super::devices::parse(linux.devices().as_deref().unwrap_or_default())?;
    if user_namespace.is_some() {
        for (i, device) in devices.iter().enumerate() {
            device.check_host_node(i)?;
        }
    }
    let mut device_rules = device_rules;
    if !device_rules.is_empty() {
        device_rules.extend(
            devices
                .iter()
                .filter_map(super::devices::Device::allow_rule),
        );
    }
    let sysctl = super::sysctl::parse(
        &linux.sysctl().clone().unwrap_or_default(),
        namespaces.flags,
    )?;
    let annotations = spec
        .annotations()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    Ok(Bundle {
        dir: dir.to_owned(),
        rootfs,
        readonly: root.readonly().unwrap_or(false),
        terminal: spec
            .process()
            .as_ref()
            .and_then(|p| p.terminal())
            .unwrap_or(false),
        process,
        mounts,
        masked,
        readonly_paths,
        clone_flags: namespaces.flags,
        shares_mount_ns: !namespaces.flags.contains(CloneFlags::CLONE_NEWNS)
            && !namespaces
                .joins
                .iter()
                .any(|j| j.kind == CloneFlags::CLONE_NEWNS),
        joins: namespaces.joins,
        network: namespaces.network,
        cgroupns: namespaces.cgroupns,
        cgroup_path,
        limits,
        device_rules,
        security,
        annotations,
        hooks,
        sysctl,
        devices,
        user_namespace,
        propagation,
    })
}

fn usage(why: &str) -> Error {
    Error::Usage(format!("config.json: {why}"))
}

/// `process`: args, env and cwd as given (no image defaults: the config is the whole truth).
fn process_spec(spec: &Spec, hostname: String) -> Result<ProcessSpec> {
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| usage("process is required"))?;
    let argv = process.args().clone().unwrap_or_default();
    if argv.first().map_or(true, |a| a.is_empty()) {
        return Err(usage("process.args must name a program"));
    }
    let cwd = process.cwd().to_string_lossy().into_owned();
    if !cwd.starts_with('/') {
        return Err(usage(&format!("process.cwd {cwd:?} must be absolute")));
    }
    let user = process.user();
    let ids = std::iter::once(user.uid())
        .chain([user.gid()])
        .chain(user.additional_gids().clone().unwrap_or_default());
    if let Some(id) = ids.into_iter().find(|&id| id > MAX_ID) {
        return Err(usage(&format!("process.user: id {id} is above {MAX_ID}")));
    }
    let umask = user.umask().unwrap_or(DEFAULT_UMASK);
    if umask > 0o777 {
        return Err(usage(&format!("process.user.umask {umask} is not a umask")));
    }
    Ok(ProcessSpec {
        argv,
        env: process.env().clone().unwrap_or_default(),
        workdir: cwd,
        hostname,
        user: User {
            uid: user.uid(),
            gid: user.gid(),
            groups: user.additional_gids().clone().unwrap_or_default(),
            home: String::new(),
        },
        rlimits: rlimits(process.rlimits().as_deref().unwrap_or_default())?,
        umask,
        oom_score_adj: process.oom_score_adj(),
    })
}

/// The spec's rlimits docker's `--ulimit` has no name for.
const OCI_ONLY_RLIMITS: [(&str, nix::sys::resource::Resource); 1] =
    [("as", nix::sys::resource::Resource::RLIMIT_AS)];

/// `process.rlimits`: `RLIMIT_NOFILE`, `RLIMIT_AS`... each within the runtime's own hard limit (a container
/// never gets more than its caller), checked now rather than failing after `start`.
fn rlimits(given: &[oci_spec::runtime::PosixRlimit]) -> Result<Vec<Rlimit>> {
    let mut out: Vec<Rlimit> = Vec::new();
    for limit in given {
        let typ = serde_json::to_value(limit.typ())
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let short = typ.strip_prefix("RLIMIT_").unwrap_or(&typ).to_lowercase();
        let (name, resource) = rlimit::NAMES
            .iter()
            .chain(&OCI_ONLY_RLIMITS)
            .find(|(n, _)| *n == short)
            .ok_or_else(|| usage(&format!("process.rlimits: {typ} is not supported")))?;
        let ceiling = rlimit::own_hard_limit(*resource)?;
        if limit.hard() > ceiling || limit.soft() > limit.hard() {
            return Err(usage(&format!(
                "process.rlimits: {typ} soft {} hard {}: the hard limit must be at most the \
                 runtime's own ({ceiling}) and the soft one at most the hard one",
                limit.soft(),
                limit.hard()
            )));
        }
        out.retain(|l| l.name != *name);
        out.push(Rlimit {
            name,
            resource: *resource,
            soft: limit.soft(),
            hard: limit.hard(),
        });
    }
    Ok(out)
}

/// `process.capabilities`, `process.noNewPrivileges` and `linux.seccomp` (no filter without
/// it, as runc).
fn security(spec: &Spec) -> Result<Security> {
    let process = spec.process().as_ref();
    let no_new_privileges = process.and_then(|p| p.no_new_privileges()).unwrap_or(false);
    let sets = match process.and_then(|p| p.capabilities().as_ref()) {
        Some(given) => cap_sets(given)?,
        None => CapSets::default(),
    };
    let seccomp = spec
        .linux()
        .as_ref()
        .and_then(|l| l.seccomp().as_ref())
        .map(super::seccomp::profile)
        .transpose()?;
    Ok(Security::explicit(sets, seccomp, no_new_privileges))
}

fn cap_sets(given: &LinuxCapabilities) -> Result<CapSets> {
    let set =
        |field: &str, value: &Option<oci_spec::runtime::Capabilities>| -> Result<CapsHashSet> {
            value
                .iter()
                .flatten()
                .map(|cap| {
                    let name = serde_json::to_value(cap)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default();
                    caps::Capability::from_str(&name).map_err(|_| {
                        usage(&format!(
                        "process.capabilities.{field}: {name} is unknown to this kernel interface"
                    ))
                    })
                })
                .collect()
        };
    Ok(CapSets {
        bounding: set("bounding", given.bounding())?,
        effective: set("effective", given.effective())?,
        permitted: set("permitted", given.permitted())?,
        inheritable: set("inheritable", given.inheritable())?,
        ambient: set("ambient", given.ambient())?,
    })
}

/// `linux.resources`: memory limit (swap only as "none beyond the limit"), `disableOOMKiller`
/// (cgroup v1 only), CPU quota, period,
/// shares, CPUs and memory nodes, pids limit (device rules: [`device_rules`]).
fn limits(resources: &LinuxResources, host_is_v2: bool) -> Result<Limits> {
    let mut limits = Limits::default();
    if let Some(memory) = resources.memory() {
        limits.oom_kill_disable = memory.disable_oom_killer().unwrap_or(false);
        if limits.oom_kill_disable && host_is_v2 {
            // runc ignores it there; a runtime that cannot do what the config asks says so.
            return Err(usage(
                "linux.resources.memory.disableOOMKiller is not available on cgroup v2 \
                 (the kernel has no switch for it)",
            ));
        }
        limits.memory = match memory.limit() {
            Some(bytes) if bytes > 0 => Some(bytes as u64),
            _ => None,
        };
        match (memory.swap(), memory.limit()) {
            (None, _) => {}
            (Some(swap), Some(limit)) if swap == limit && limit > 0 => {}
            (Some(_), _) => {
                return Err(usage(
                    "linux.resources.memory.swap is only supported equal to the limit (no swap)",
                ))
            }
        }
    }
    if let Some(cpu) = resources.cpu() {
        limits.cpu_shares = match cpu.shares() {
            None | Some(0) => None,
            Some(s) if CPU_SHARES_RANGE.contains(&s) => Some(s),
            Some(s) => {
                return Err(usage(&format!(
                    "linux.resources.cpu.shares {s} is out of range (2..=262144)"
                )))
            }
        };
        let list = |field: &str, value: &Option<String>| -> Result<Option<String>> {
            match value.as_deref() {
                None | Some("") => Ok(None),
                Some(text) => parse_cpu_list(text)
                    .map(Some)
                    .map_err(|why| usage(&format!("linux.resources.cpu.{field}: {why}"))),
            }
        };
        limits.cpuset.cpus = list("cpus", cpu.cpus())?;
        limits.cpuset.mems = list("mems", cpu.mems())?;
        let period = cpu.period().unwrap_or(CPU_PERIOD);
        limits.cpu = match cpu.quota() {
            Some(quota) if quota > 0 => {
                if !(1_000..=1_000_000).contains(&period) || quota < 1_000 {
                    return Err(usage(
                        "linux.resources.cpu: period must be 1000..=1000000 and quota at least 1000 µs",
                    ));
                }
                Some(CpuMax {
                    quota: quota as u64,
                    period,
                })
            }
            _ => None,
        };
    }
    if let Some(pids) = resources.pids() {
        limits.pids = (pids.limit() > 0).then_some(pids.limit() as u64);
    }
    Ok(limits)
}

/// `linux.resources.devices`, checked rule by rule (enforced by [`devices`]); a rule that
/// cannot be enforced is refused with one line naming it.
fn device_rules(resources: Option<&LinuxResources>) -> Result<Vec<devices::Rule>> {
    let rules = resources.and_then(|r| r.devices().as_ref());
    rules
        .iter()
        .copied()
        .flatten()
        .enumerate()
        .map(|(i, rule)| {
            let typ = rule.typ().map(|t| t.as_str().chars().next().unwrap_or('?'));
            devices::Rule::parse(
                rule.allow(),
                typ,
                rule.major(),
                rule.minor(),
                rule.access().as_deref(),
            )
            .map_err(|why| usage(&format!("linux.resources.devices[{i}]: {why}")))
        })
        .collect()
}

/// `linux.cgroupsPath` (absolute or relative, both under each hierarchy's root), default
/// `devoxx-docker-oci/<id>`; systemd's `slice:prefix:name` needs `--systemd-cgroup`.
fn cgroup_path(given: Option<&Path>, id: &str) -> Result<PathBuf> {
    let Some(path) = given.filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(Path::new(DEFAULT_CGROUP_PARENT).join(id));
    };
    if path.to_string_lossy().contains(':') {
        return Err(usage(
            "linux.cgroupsPath in systemd's slice:prefix:name form is not supported",
        ));
    }
    let mut rel = PathBuf::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => rel.push(name),
            _ => return Err(usage("linux.cgroupsPath must not contain '..'")),
        }
    }
    if rel.as_os_str().is_empty() {
        return Err(usage("linux.cgroupsPath must name a cgroup below the root"));
    }
    if rel.starts_with(crate::container::cgroup::layout::PARENT) {
        return Err(usage(&format!(
            "linux.cgroupsPath: {} is reserved for run's containers",
            crate::container::cgroup::layout::PARENT
        )));
    }
    Ok(rel)
}

/// `linux.uidMappings`/`gidMappings` with a new user namespace, as runc: both maps with it,
/// neither without it; the process's own ids must be mapped (else it could not become them).
fn user_namespace(
    linux: &oci_spec::runtime::Linux,
    flags: CloneFlags,
    user: &User,
) -> Result<Option<UserNamespace>> {
    let ranges = |given: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| -> Vec<IdRange> {
        given
            .iter()
            .flatten()
            .map(|m| IdRange {
                container: m.container_id(),
                host: m.host_id(),
                size: m.size(),
            })
            .collect()
    };
    let (uids, gids) = (ranges(linux.uid_mappings()), ranges(linux.gid_mappings()));
    if !flags.contains(CloneFlags::CLONE_NEWUSER) {
        if !uids.is_empty() || !gids.is_empty() {
            return Err(usage(
                "linux.uidMappings and linux.gidMappings need a user namespace in linux.namespaces",
            ));
        }
        return Ok(None);
    }
    let userns = UserNamespace {
        uids: IdMap::parse("linux.uidMappings", &uids)?,
        gids: IdMap::parse("linux.gidMappings", &gids)?,
    };
    let unmapped_uid = Some(user.uid).filter(|&id| userns.uids.host_of(id).is_none());
    if let Some(uid) = unmapped_uid {
        return Err(usage(&format!(
            "process.user.uid {uid} is not mapped by linux.uidMappings"
        )));
    }
    let gids_given = std::iter::once(user.gid).chain(user.groups.iter().copied());
    if let Some(gid) = gids_given
        .into_iter()
        .find(|&id| userns.gids.host_of(id).is_none())
    {
        return Err(usage(&format!(
            "process.user gid {gid} is not mapped by linux.gidMappings"
        )));
    }
    Ok(Some(userns))
}

fn absolute_paths(field: &str, given: &Option<Vec<String>>) -> Result<Vec<String>> {
    let paths = given.clone().unwrap_or_default();
    match paths
        .iter()
        .find(|p| !p.starts_with('/') || p.contains("/../"))
    {
        Some(bad) => Err(usage(&format!("{field}: {bad:?} must be absolute"))),
        None => Ok(paths),
    }
}

/// `linux.namespaces` sorted into clone flags, joins, the network mode and the cgroup
/// namespace. A joined mount namespace must not be the runtime's own; none listed means the
/// runtime's, set up as [`super::host_mounts`] says.
#[derive(Debug)]
struct Namespaces {
    flags: CloneFlags,
    joins: Vec<Join>,
    network: NetworkMode,
    cgroupns: CgroupNs,
}

impl Namespaces {
    fn from_config(list: &[oci_spec::runtime::LinuxNamespace]) -> Result<Namespaces> {
        let mut out = Namespaces {
            flags: CloneFlags::empty(),
            joins: Vec::new(),
            network: NetworkMode::Host,
            cgroupns: CgroupNs::Host,
        };
        let mut seen = Vec::new();
        for ns in list {
            let typ = ns.typ();
            if seen.contains(&typ) {
                return Err(usage(&format!("linux.namespaces: {typ} is listed twice")));
            }
            seen.push(typ);
            let flag = match typ {
                LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
                LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
                LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
                LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
                LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
                LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
                LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
                LinuxNamespaceType::Time => {
                    return Err(usage(&format!(
                        "linux.namespaces: a {typ} namespace is not supported"
                    )))
                }
            };
            match ns.path().as_ref().filter(|p| !p.as_os_str().is_empty()) {
                // The other new namespaces would belong to the host's user namespace.
                Some(_) if flag == CloneFlags::CLONE_NEWUSER => {
                    return Err(usage(
                        "linux.namespaces: joining a user namespace by path is not supported",
                    ))
                }
                Some(path) => out.joins.push(Join {
                    kind: flag,
                    path: path.clone(),
                }),
                None if flag == CloneFlags::CLONE_NEWCGROUP => out.cgroupns = CgroupNs::Private,
                None if flag == CloneFlags::CLONE_NEWNET => {
                    out.network = NetworkMode::None;
                    out.flags |= flag;
                }
                None => out.flags |= flag,
            }
        }
        // runc switches the root inside a joined one too: never in the runtime's own.
        out.refuse_own(CloneFlags::CLONE_NEWNS, "the root switch")?;
        Ok(out)
    }

    /// Refuse a join of `kind` whose path is the runtime's own namespace of that kind (for
    /// `create`: the host's), where `what` would change the host; an unreadable path is
    /// refused too, naming it, rather than failing later in the init.
    fn refuse_own(&self, kind: CloneFlags, what: &str) -> Result<()> {
        let Some(join) = self.joins.iter().find(|j| j.kind == kind) else {
            return Ok(());
        };
        let name = if kind == CloneFlags::CLONE_NEWNS {
            "mnt"
        } else {
            "uts"
        };
        let id = |path: &Path| std::fs::metadata(path).map(|m| (m.dev(), m.ino()));
        let given = id(&join.path).map_err(|e| {
            usage(&format!(
                "linux.namespaces: path {}: {e}",
                join.path.display()
            ))
        })?;
        let own = id(Path::new(&format!("/proc/self/ns/{name}")))
            .map_err(|e| Error::io(format!("stat /proc/self/ns/{name}"), e))?;
        if given == own {
            return Err(usage(&format!(
                "linux.namespaces: {} is the runtime's own {name} namespace: {what} would \
                 change the host's",
                join.path.display()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::resource::Resource;
    use serde_json::json;

    fn bundle_with(config: serde_json::Value) -> (tempfile::TempDir, Result<Bundle>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        let loaded = load(dir.path(), "c1", false);
        (dir, loaded)
    }

    fn minimal(extra: serde_json::Value) -> serde_json::Value {
        let mut config = json!({
            "ociVersion": "1.1.0",
            "root": {"path": "rootfs"},
            "process": {"args": ["/bin/sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
            "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}, {"type": "uts"}]},
        });
        merge(&mut config, extra);
        config
    }

    fn merge(into: &mut serde_json::Value, extra: serde_json::Value) {
        match (into, extra) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (slot, value) => *slot = value,
        }
    }

    #[test]
    fn a_minimal_config_translates_to_the_runtime_types() {
        let uid = 1000 + std::process::id() % 1000;
        let (dir, bundle) = bundle_with(minimal(json!({
            "hostname": "h1",
            "process": {"env": ["A=1"], "cwd": "/w", "user": {"uid": uid, "gid": 7, "additionalGids": [8]},
                        "capabilities": {"bounding": ["CAP_KILL"], "permitted": ["CAP_KILL"]},
                        "noNewPrivileges": true, "oomScoreAdj": 5},
            "linux": {"resources": {"memory": {"limit": 64 << 20}, "cpu": {"quota": 20000, "period": 100000}, "pids": {"limit": 9}},
                      "cgroupsPath": "/a/b"},
        })));
        let bundle = bundle.unwrap();
        assert_eq!(
            bundle.rootfs,
            dir.path().canonicalize().unwrap().join("rootfs")
        );
        assert_eq!(bundle.process.hostname, "h1");
        assert_eq!(bundle.process.env, vec!["A=1".to_string()]);
        assert_eq!(bundle.process.workdir, "/w");
        assert_eq!((bundle.process.user.uid, bundle.process.user.gid), (uid, 7));
        assert_eq!(bundle.process.user.groups, vec![8]);
        assert_eq!(bundle.process.oom_score_adj, Some(5));
        assert_eq!(bundle.limits.memory, Some(64 << 20));
        assert_eq!(
            bundle.limits.cpu,
            Some(CpuMax {
                quota: 20000,
                period: 100000
            })
        );
        assert_eq!(bundle.limits.pids, Some(9));
        assert_eq!(bundle.cgroup_path, Path::new("a/b"));
        assert!(bundle
            .clone_flags
            .contains(CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWUTS));
        assert_eq!(bundle.network, NetworkMode::Host);
    }

    #[test]
    fn a_user_namespace_takes_both_maps_and_clones_with_the_other_namespaces() {
        use std::os::unix::fs::PermissionsExt;
        let (uid_host, gid_host) = (
            100_000 + std::process::id() % 100_000,
            300_000 + std::process::id() % 100_000,
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        let config = minimal(json!({
            "process": {"user": {"uid": 7, "gid": 8, "additionalGids": [9]}},
            "linux": {"namespaces": [{"type": "mount"}, {"type": "pid"}, {"type": "user"}],
                      "uidMappings": [{"containerID": 0, "hostID": uid_host, "size": 65536}],
                      "gidMappings": [{"containerID": 0, "hostID": gid_host, "size": 10}]},
        }));
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        let bundle = load(dir.path(), "c1", false).unwrap();
        assert!(bundle
            .clone_flags
            .contains(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWPID));
        let userns = bundle.user_namespace.unwrap();
        assert_eq!(userns.uids.host_of(7), Some(uid_host + 7));
        assert_eq!(userns.gids.host_of(9), Some(gid_host + 9));
        assert_eq!(userns.gids.host_of(10), None);
    }

    #[test]
    fn containerds_default_shares_and_device_rules_are_accepted() {
        let minor = [3, 5, 7, 8, 9][std::process::id() as usize % 5];
        let (_dir, bundle) = bundle_with(minimal(json!({
            "linux": {"resources": {"cpu": {"shares": 1024}, "devices": [
                {"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": minor, "access": "rwm"},
                {"allow": true, "type": "c", "major": 136, "access": "rwm"}]}},
        })));
        assert_eq!(bundle.unwrap().limits.cpu, None);
    }

    #[test]
    fn shares_cpus_and_mems_are_taken_as_given() {
        let n = std::process::id() % 4;
        let cpus = format!("0-{},{}", n + 1, n + 3);
        let shares = 2 + u64::from(std::process::id()) % 262_000;
        let (_dir, bundle) = bundle_with(minimal(json!({
            "linux": {"resources": {"cpu": {"shares": shares, "cpus": cpus, "mems": "0"}}},
        })));
        let limits = bundle.unwrap().limits;
        assert_eq!(limits.cpu_shares, Some(shares));
        assert_eq!(limits.cpuset.cpus.as_deref(), Some(cpus.as_str()));
        assert_eq!(limits.cpuset.mems.as_deref(), Some("0"));
        assert_eq!(limits.cpu, None);
        let (_dir, bundle) = bundle_with(minimal(json!({
            "linux": {"resources": {"cpu": {"cpus": "", "mems": ""}}},
        })));
        assert!(
            bundle.unwrap().limits.is_unlimited(),
            "empty lists: the parent's"
        );
    }

    #[test]
    fn disabling_the_oom_killer_is_a_v1_switch() {
        let config = minimal(json!({
            "linux": {"resources": {"memory": {"limit": 64 << 20, "disableOOMKiller": true}}},
        }));
        let (_dir, bundle) = bundle_with(config.clone());
        assert!(bundle.unwrap().limits.oom_kill_disable);
        let spec: Spec = serde_json::from_value(config).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("rootfs")).unwrap();
        let err = translate(&spec, dir.path(), "c1", true).unwrap_err();
        assert!(err.to_string().contains("disableOOMKiller"), "{err}");
        assert_eq!(err.exit_code(), 125);
    }

    #[test]
    fn the_address_space_rlimit_is_taken_within_the_runtimes_own() {
        let (_, hard) = nix::sys::resource::getrlimit(Resource::RLIMIT_AS).unwrap();
        let soft = (64u64 << 20) + u64::from(std::process::id());
        let soft = soft.min(hard);
        let (_dir, bundle) = bundle_with(minimal(json!({
            "process": {"rlimits": [{"type": "RLIMIT_AS", "soft": soft, "hard": hard}]},
        })));
        let limits = bundle.unwrap().process.rlimits;
        assert_eq!(
            limits
                .iter()
                .map(|l| (l.resource, l.soft, l.hard))
                .collect::<Vec<_>>(),
            [(Resource::RLIMIT_AS, soft, hard)]
        );
    }

    #[test]
    fn only_a_config_without_a_mount_namespace_shares_the_runtimes() {
        for (namespaces, shares) in [
            (json!([{"type": "pid"}]), true),
            (json!([]), true),
            (json!([{"type": "mount"}]), false),
            (json!([{"type": "mount", "path": "/proc/1/ns/mnt"}]), false),
        ] {
            let mut config = minimal(json!({}));
            config["linux"]["namespaces"] = namespaces.clone();
            let (_dir, bundle) = bundle_with(config);
            match bundle {
                Ok(b) => assert_eq!(b.shares_mount_ns, shares, "{namespaces}"),
                // pid 1's namespace may be ours (refused as the runtime's own) or unreadable.
                Err(e) => assert!(!shares && e.to_string().contains("mnt"), "{e}"),
            }
        }
    }

    #[test]
    fn unsupported_values_are_refused_with_one_line() {
        for (extra, needle) in [
            (
                json!({"linux": {"namespaces": [{"type": "mount"}, {"type": "user"}]}}),
                "user namespace",
            ),
            (
                json!({"hostname": "x", "linux": {"namespaces": [{"type": "mount"}]}}),
                "uts",
            ),
            (
                json!({"linux": {"uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}}),
                "linux.uidMappings and linux.gidMappings need a user namespace",
            ),
            (
                json!({"linux": {"namespaces": [{"type": "mount"}, {"type": "user"}],
                                 "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}}),
                "linux.gidMappings: a user namespace needs at least one mapping",
            ),
            (
                json!({"linux": {"namespaces": [{"type": "mount"},
                                                {"type": "user", "path": "/proc/1/ns/user"}]}}),
                "joining a user namespace by path",
            ),
            (
                json!({"process": {"user": {"uid": 5, "gid": 0}},
                       "linux": {"namespaces": [{"type": "mount"}, {"type": "user"}],
                                 "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 5}],
                                 "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 5}]}}),
                "process.user.uid 5 is not mapped",
            ),
            (
                json!({"linux": {"cgroupsPath": "system.slice:x:y"}}),
                "cgroupsPath",
            ),
            (
                json!({"linux": {"resources": {"devices": [{"allow": false, "type": "c", "major": 1}]}}}),
                "devices[0]",
            ),
            (
                json!({"linux": {"resources": {"devices": [
                    {"allow": false, "access": "rwm"},
                    {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                    {"allow": true, "type": "u", "major": 8, "minor": 0, "access": "rwm"}]}}}),
                "devices[2]",
            ),
            (
                json!({"linux": {"resources": {"cpu": {"shares": 1}}}}),
                "cpu.shares",
            ),
            (
                json!({"linux": {"resources": {"cpu": {"cpus": "0-"}}}}),
                "linux.resources.cpu.cpus",
            ),
            (
                json!({"linux": {"resources": {"cpu": {"mems": "x"}}}}),
                "linux.resources.cpu.mems",
            ),
            (
                json!({"linux": {"resources": {"cpu": {"realtimeRuntime": 950000}}}}),
                "linux.resources.cpu.realtimeRuntime",
            ),
            (
                json!({"linux": {"rootfsPropagation": "master"}}),
                "rootfsPropagation",
            ),
            (
                json!({"linux": {"namespaces": [{"type": "user"}],
                    "uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
                    "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]}}),
                "a user namespace needs a new mount namespace",
            ),
            (
                json!({"linux": {"namespaces": [{"type": "mount", "path": "/proc/self/ns/mnt"}]}}),
                "the runtime's own mnt namespace",
            ),
            (
                json!({"hostname": "x", "linux": {"namespaces": [
                    {"type": "mount"}, {"type": "uts", "path": "/proc/self/ns/uts"}]}}),
                "the runtime's own uts namespace",
            ),
            (
                json!({"linux": {"namespaces": [{"type": "mount", "path": "/nonexistent/ns"}]}}),
                "/nonexistent/ns",
            ),
            (json!({"process": {"cwd": "rel"}}), "process.cwd"),
            (
                json!({"linux": {"seccomp": {"defaultAction": "SCMP_ACT_NOTIFY"}}}),
                "linux.seccomp.defaultAction",
            ),
            (
                json!({"process": {"rlimits": [{"type": "RLIMIT_NOFILE", "soft": 2, "hard": 1}]}}),
                "RLIMIT_NOFILE",
            ),
        ] {
            let (_dir, bundle) = bundle_with(minimal(extra));
            let err = bundle.unwrap_err();
            let line = err.to_string();
            assert!(
                line.starts_with("config.json: ") && line.contains(needle),
                "{needle}: {line}"
            );
            assert!(!line.contains('\n'));
            assert_eq!(err.exit_code(), 125);
        }
    }

    #[test]
    fn joined_mount_and_uts_namespaces_and_every_root_propagation_are_taken() {
        // Any file not the runtime's own namespace passes here; setns checks its kind.
        let ns = tempfile::NamedTempFile::new().unwrap();
        let path = ns.path().display().to_string();
        let host = format!("h{}", std::process::id());
        let (_dir, bundle) = bundle_with(minimal(json!({
            "hostname": host,
            "linux": {"namespaces": [{"type": "pid"}, {"type": "mount", "path": path},
                                     {"type": "uts", "path": path}],
                      "rootfsPropagation": "rshared"},
        })));
        let bundle = bundle.unwrap();
        assert_eq!(bundle.process.hostname, host);
        assert!(!bundle
            .clone_flags
            .intersects(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWUTS));
        let kinds: Vec<_> = bundle.joins.iter().map(|j| j.kind).collect();
        assert_eq!(kinds, [CloneFlags::CLONE_NEWNS, CloneFlags::CLONE_NEWUTS]);
        assert_eq!(
            bundle.propagation,
            super::super::propagation::RootPropagation::parse(Some("rshared")).unwrap()
        );
    }

    #[test]
    fn default_cgroup_path_is_per_id_outside_runs_parent() {
        assert_eq!(
            cgroup_path(None, "x1").unwrap(),
            Path::new("devoxx-docker-oci/x1")
        );
        assert_eq!(
            cgroup_path(Some(Path::new("rel/p")), "x").unwrap(),
            Path::new("rel/p")
        );
        assert!(cgroup_path(Some(Path::new("/a/../b")), "x").is_err());
        assert!(cgroup_path(Some(Path::new("/")), "x").is_err());
        assert!(cgroup_path(Some(Path::new("/devoxx-docker/x")), "x").is_err());
    }
}
