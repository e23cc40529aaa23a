//! Which cgroup layout this host has, detected once from `/proc/self/mountinfo` and checked
//! with the filesystem magic (a path named like a cgroup mount proves nothing).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::dir::CgroupDir;

/// Where the unified hierarchy must be mounted for the v2 backend (the contract's path).
pub const V2_MOUNT: &str = "/sys/fs/cgroup";
/// Our parent cgroup under each hierarchy root; containers live in `devoxx-docker/<id>`.
pub const PARENT: &str = "devoxx-docker";

/// The controllers the runtime uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controller {
    Memory,
    Cpu,
    Pids,
    /// Only for an OCI config's `linux.resources.cpu.cpus`/`mems`: joined when asked for.
    Cpuset,
}

impl Controller {
    /// Every controller we may need, in the order limits are applied.
    pub const ALL: [Controller; 4] = [
        Controller::Memory,
        Controller::Cpu,
        Controller::Pids,
        Controller::Cpuset,
    ];

    /// The controllers every container's cgroup has (v1: the hierarchies an OCI container
    /// joins even without a limit; v2: enabled below the parents). Cpuset is not among them:
    /// a v1 cpuset cgroup must be filled from its parent before anything can join it, a cost
    /// only a config that asks for CPUs or memory nodes pays.
    pub const CORE: [Controller; 3] = [Controller::Memory, Controller::Cpu, Controller::Pids];

    /// The kernel's name for it (mount option on v1, `cgroup.controllers` token on v2).
    pub fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Pids => "pids",
            Controller::Cpuset => "cpuset",
        }
    }

    /// The CLI option this controller enforces, for error messages.
    pub fn option(self) -> &'static str {
        match self {
            Controller::Memory => "--memory",
            Controller::Cpu => "--cpus",
            Controller::Pids => "--pids-limit",
            Controller::Cpuset => "linux.resources.cpu.cpus/mems",
        }
    }
}

/// The host's cgroup layout, as far as our controllers are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// cgroup2 at `/sys/fs/cgroup` with at least one of our controllers in `cgroup.controllers`.
    V2 {
        root: PathBuf,
        controllers: Vec<Controller>,
    },
    /// v1 (or hybrid) hierarchies: the mount point of each of our controllers found.
    V1 {
        hierarchies: Vec<(Controller, PathBuf)>,
    },
    /// No usable controller at all.
    None,
}

impl Layout {
    /// The controllers this layout can enforce.
    pub fn controllers(&self) -> Vec<Controller> {
        match self {
            Layout::V2 { controllers, .. } => controllers.clone(),
            Layout::V1 { hierarchies } => hierarchies.iter().map(|(c, _)| *c).collect(),
            Layout::None => Vec::new(),
        }
    }

    /// Every `<hierarchy root>/devoxx-docker` directory, where container cgroups live.
    pub fn parents(&self) -> Vec<PathBuf> {
        match self {
            Layout::V2 { root, .. } => vec![root.join(PARENT)],
            Layout::V1 { hierarchies } => hierarchies.iter().map(|(_, m)| m.join(PARENT)).collect(),
            Layout::None => Vec::new(),
        }
    }
}

/// The host's layout, detected on first use (the mount table does not change under us).
pub fn host() -> &'static Layout {
    static LAYOUT: OnceLock<Layout> = OnceLock::new();
    LAYOUT.get_or_init(|| {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        detect(
            &parse_mountinfo(&mountinfo),
            Path::new(V2_MOUNT),
            &statfs_kind,
        )
    })
}

/// A cgroup filesystem type, as told by `statfs(2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    Cgroup2,
    Cgroup1,
    Other,
}

fn statfs_kind(path: &Path) -> FsKind {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC};
    match statfs(path).map(|s| s.filesystem_type()) {
        Ok(t) if t == CGROUP2_SUPER_MAGIC => FsKind::Cgroup2,
        Ok(t) if t == CGROUP_SUPER_MAGIC => FsKind::Cgroup1,
        _ => FsKind::Other,
    }
}

/// One line of mountinfo, reduced to what detection needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub mount_point: PathBuf,
    pub fstype: String,
    pub super_options: String,
}

/// Parse `/proc/self/mountinfo` (proc(5)): the fields after the ` - ` separator are fstype,
/// source and super options; the mount point is field 5, octal-escaped.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_mount_line).collect()
}

fn parse_mount_line(line: &str) -> Option<Mount> {
    let (before, after) = line.split_once(" - ")?;
    let mount_point = before.split(' ').nth(4)?;
    let mut after = after.split(' ');
    let fstype = after.next()?.to_owned();
    let _source = after.next()?;
    let super_options = after.next().unwrap_or("").to_owned();
    Some(Mount {
        mount_point: PathBuf::from(unescape_octal(mount_point)),
        fstype,
        super_options,
    })
}

/// mountinfo writes space, tab, newline and backslash as `\040`-style octal escapes.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match escaped {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decide the layout: v2 when cgroup2 is mounted at `v2_at` with memory, cpu or pids, else
/// the v1 hierarchies of memory/cpu/pids (and cpuset beside them), else none. `kind` is `statfs` on the host and
/// a stub in unit tests.
pub fn detect(mounts: &[Mount], v2_at: &Path, kind: &dyn Fn(&Path) -> FsKind) -> Layout {
    if let Some(layout) = detect_v2(mounts, v2_at, kind) {
        return layout;
    }
    let hierarchies: Vec<(Controller, PathBuf)> = Controller::ALL
        .iter()
        .filter_map(|&c| v1_mount_of(mounts, c, kind).map(|m| (c, m)))
        .collect();
    // Cpuset alone carries none of `run`'s limits: that host has no usable controller.
    if !hierarchies
        .iter()
        .any(|(c, _)| Controller::CORE.contains(c))
    {
        Layout::None
    } else {
        Layout::V1 { hierarchies }
    }
}

fn detect_v2(mounts: &[Mount], v2_at: &Path, kind: &dyn Fn(&Path) -> FsKind) -> Option<Layout> {
    // The last mount at a path is the visible one.
    let top = mounts.iter().rev().find(|m| m.mount_point == v2_at)?;
    if top.fstype != "cgroup2" || kind(v2_at) != FsKind::Cgroup2 {
        return None;
    }
    let available = CgroupDir::new(v2_at).read("cgroup.controllers").ok()?;
    let controllers: Vec<Controller> = Controller::ALL
        .into_iter()
        .filter(|c| available.split_whitespace().any(|w| w == c.name()))
        .collect();
    let usable = controllers.iter().any(|c| Controller::CORE.contains(c));
    usable.then(|| Layout::V2 {
        root: v2_at.to_owned(),
        controllers,
    })
}

fn v1_mount_of(mounts: &[Mount], c: Controller, kind: &dyn Fn(&Path) -> FsKind) -> Option<PathBuf> {
    mounts
        .iter()
        .filter(|m| m.fstype == "cgroup")
        .filter(|m| m.super_options.split(',').any(|o| o == c.name()))
        .map(|m| m.mount_point.clone())
        .find(|p| kind(p) == FsKind::Cgroup1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    fn all_cgroup(p: &Path) -> FsKind {
        if p.ends_with("unified") || p == Path::new("/sys/fs/cgroup") {
            FsKind::Cgroup2
        } else {
            FsKind::Cgroup1
        }
    }

    #[test]
    fn mountinfo_fields_and_escapes() {
        let mounts = parse_mountinfo(
            "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n",
        );
        assert_eq!(
            mounts,
            vec![Mount {
                mount_point: PathBuf::from("/mnt/with space"),
                fstype: "ext3".into(),
                super_options: "rw,errors=continue".into(),
            }]
        );
    }

    #[test]
    fn hybrid_host_uses_v1_hierarchies() {
        let layout = detect(&parse_mountinfo(HYBRID), Path::new(V2_MOUNT), &all_cgroup);
        assert_eq!(
            layout,
            Layout::V1 {
                hierarchies: vec![
                    (Controller::Memory, PathBuf::from("/sys/fs/cgroup/memory")),
                    (Controller::Cpu, PathBuf::from("/sys/fs/cgroup/cpu,cpuacct")),
                    (Controller::Pids, PathBuf::from("/sys/fs/cgroup/pids")),
                    (Controller::Cpuset, PathBuf::from("/sys/fs/cgroup/cpuset")),
                ]
            }
        );
    }

    #[test]
    fn cpuset_and_cpuacct_are_not_cpu() {
        let text = "1 0 0:1 / /a rw - cgroup cgroup rw,cpuset\n2 0 0:2 / /b rw - cgroup cgroup rw,cpuacct\n";
        let layout = detect(&parse_mountinfo(text), Path::new(V2_MOUNT), &all_cgroup);
        assert_eq!(layout, Layout::None, "cpuset alone limits nothing run asks");
        let with_memory = format!("{text}3 0 0:3 / /m rw - cgroup cgroup rw,memory\n");
        let layout = detect(
            &parse_mountinfo(&with_memory),
            Path::new(V2_MOUNT),
            &all_cgroup,
        );
        assert_eq!(
            layout,
            Layout::V1 {
                hierarchies: vec![
                    (Controller::Memory, PathBuf::from("/m")),
                    (Controller::Cpuset, PathBuf::from("/a"))
                ]
            }
        );
    }

    #[test]
    fn wrong_magic_is_not_a_cgroup() {
        let layout = detect(&parse_mountinfo(HYBRID), Path::new(V2_MOUNT), &|_| {
            FsKind::Other
        });
        assert_eq!(layout, Layout::None);
    }

    #[test]
    fn unified_with_controllers_is_v2() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(
            tmp.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        let text = format!(
            "30 1 0:26 / {} rw - cgroup2 cgroup2 rw\n",
            tmp.path().display()
        );
        let layout = detect(&parse_mountinfo(&text), tmp.path(), &|_| FsKind::Cgroup2);
        assert_eq!(
            layout,
            Layout::V2 {
                root: tmp.path().to_owned(),
                controllers: Controller::ALL.to_vec()
            }
        );
    }

    #[test]
    fn unified_without_controllers_falls_back_to_v1() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("cgroup.controllers"), "\n").unwrap();
        let text = format!(
            "30 1 0:26 / {} rw - cgroup2 cgroup2 rw\n35 31 0:32 / /m rw - cgroup cgroup rw,memory\n",
            tmp.path().display()
        );
        let layout = detect(&parse_mountinfo(&text), tmp.path(), &|p| {
            if p == Path::new("/m") {
                FsKind::Cgroup1
            } else {
                FsKind::Cgroup2
            }
        });
        assert_eq!(
            layout,
            Layout::V1 {
                hierarchies: vec![(Controller::Memory, PathBuf::from("/m"))]
            }
        );
    }

    #[test]
    fn this_host_is_detected_consistently() {
        // Whatever the host is, detection must agree with the kernel's own view of us.
        let layout = host();
        let own = fs::read_to_string("/proc/self/cgroup").unwrap();
        match layout {
            Layout::V2 { .. } => assert!(own.lines().any(|l| l.starts_with("0::"))),
            Layout::V1 { hierarchies } => {
                for (c, _) in hierarchies {
                    assert!(
                        own.lines().any(|l| l
                            .split(':')
                            .nth(1)
                            .is_some_and(|cs| cs.split(',').any(|x| x == c.name()))),
                        "{} not in /proc/self/cgroup",
                        c.name()
                    );
                }
            }
            Layout::None => {}
        }
    }
}
