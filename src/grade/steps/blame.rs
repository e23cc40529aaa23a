//! Blame where it belongs. A runtime that stops before running the command usually printed
//! why; when the grader can read the cause there — a cgroup path of the other cgroup version, an
//! image root that does not exist — that cause becomes every step's first problem, instead of
//! "run the command" (step 1) or "depends on process", which send the student the wrong way.

use std::path::Path;

use crate::grade::workshop::CgroupVersion;

/// The cgroup v1 controllers a host of the talk's era mounted at `/sys/fs/cgroup/<name>`.
const V1_HIERARCHIES: [&str; 17] = [
    "blkio",
    "cpu",
    "cpuacct",
    "cpu,cpuacct",
    "cpuacct,cpu",
    "cpuset",
    "devices",
    "freezer",
    "hugetlb",
    "memory",
    "misc",
    "net_cls",
    "net_cls,net_prio",
    "net_prio",
    "perf_event",
    "pids",
    "systemd",
];

/// Files only cgroup v1 has.
const V1_FILES: [&str; 7] = [
    "tasks",
    "memory.limit_in_bytes",
    "memory.memsw.limit_in_bytes",
    "cpu.cfs_quota_us",
    "cpu.cfs_period_us",
    "cpu.shares",
    "notify_on_release",
];

/// Files only cgroup v2 has.
const V2_FILES: [&str; 9] = [
    "cgroup.controllers",
    "cgroup.subtree_control",
    "cgroup.kill",
    "cgroup.type",
    "memory.max",
    "memory.high",
    "memory.swap.max",
    "cpu.max",
    "cpu.weight",
];

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// What this guest's cgroup hierarchy is (v2: the unified tree alone at `/sys/fs/cgroup`).
pub fn guest_cgroup_version() -> CgroupVersion {
    if Path::new(CGROUP_ROOT).join("cgroup.controllers").exists() {
        CgroupVersion::V2
    } else {
        CgroupVersion::V1
    }
}

/// The cause of a run that never ran the command, read in what the runtime printed on stderr:
/// `guest` is this guest's cgroup version, `exists` tells whether a path exists in the guest,
/// `rootfs_key` is the submission's `rootfs` key.
pub fn diagnose(
    stderr: &str,
    guest: CgroupVersion,
    exists: &dyn Fn(&Path) -> bool,
    rootfs_key: Option<&Path>,
) -> Option<String> {
    cgroup_version(stderr, guest, exists).or_else(|| missing_root(stderr, rootfs_key))
}

/// A path under `/sys/fs/cgroup` that the other cgroup version has and this guest lacks.
fn cgroup_version(
    stderr: &str,
    guest: CgroupVersion,
    exists: &dyn Fn(&Path) -> bool,
) -> Option<String> {
    let path = cgroup_paths(stderr).into_iter().find(|p| {
        let rel = p
            .strip_prefix(CGROUP_ROOT)
            .unwrap_or(p)
            .trim_start_matches('/');
        let first = rel.split('/').next().unwrap_or("");
        let file = rel.rsplit('/').next().unwrap_or("");
        match guest {
            CgroupVersion::V2 => {
                V1_FILES.contains(&file)
                    || (V1_HIERARCHIES.contains(&first)
                        && !exists(&Path::new(CGROUP_ROOT).join(first)))
            }
            CgroupVersion::V1 => {
                V2_FILES.contains(&file)
                    || (!first.is_empty()
                        && rel.contains('/')
                        && !exists(&Path::new(CGROUP_ROOT).join(first)))
            }
        }
    })?;
    Some(match guest {
        CgroupVersion::V2 => format!(
            "the runtime stopped on a cgroup path of the other cgroup version (step 4): this guest is cgroup v2; a workshop written for v1 says `cgroup = \"v1\"` in its workshop file (the runtime named {path})"
        ),
        CgroupVersion::V1 => format!(
            "the runtime stopped on a cgroup path of the other cgroup version (step 4): this guest is cgroup v1; a workshop written for v2 leaves `cgroup` out of its workshop file or says `cgroup = \"v2\"` (the runtime named {path})"
        ),
    })
}

/// Every path under `/sys/fs/cgroup` named in `text`, as written (trailing punctuation cut).
fn cgroup_paths(text: &str) -> Vec<String> {
    text.match_indices(CGROUP_ROOT)
        .map(|(i, _)| {
            let rest = &text[i..];
            let end = rest
                .find(|c: char| c.is_whitespace() || "\"'`:;()[]{}<>".contains(c))
                .unwrap_or(rest.len());
            rest[..end].trim_end_matches(['.', ',']).to_owned()
        })
        .collect()
}

/// A root switch (chroot, pivot_root) that found no directory to switch to.
fn missing_root(stderr: &str, rootfs_key: Option<&Path>) -> Option<String> {
    let line = stderr.lines().find(|l| {
        let l = l.to_ascii_lowercase();
        (l.contains("chroot") || l.contains("pivot_root") || l.contains("pivotroot"))
            && (l.contains("no such file or directory") || l.contains("enoent"))
    })?;
    let path = root_path(line);
    let named = path
        .as_deref()
        .map(|p| format!(" ({p} does not exist)"))
        .unwrap_or_default();
    Some(match rootfs_key {
        Some(key) => format!(
            "the runtime's root switch found no image{named}: devoxx-grade.toml's `rootfs = \"{}\"` is not where it looks; set `rootfs` to the path it switches into (the grader lays its image out there)",
            key.display()
        ),
        None => format!(
            "the runtime's root switch found no image{named}: say where it looks with `rootfs = \"{}\"` in devoxx-grade.toml (the grader lays its image out there; without the key, at /fs/<image>/rootfs)",
            path.as_deref().unwrap_or("PATH")
        ),
    })
}

/// The path a root switch's error names: the first word with a `/`, else the word after
/// `chroot` when it ends with `:` (Go's `chroot ubuntu_fs: no such file or directory`).
fn root_path(line: &str) -> Option<String> {
    let trim = |w: &str| {
        w.trim_matches(|c: char| "\"'`:;,()[]{}<>".contains(c))
            .to_owned()
    };
    let words: Vec<&str> = line.split_whitespace().collect();
    if let Some(w) = words
        .iter()
        .map(|w| trim(w))
        .find(|w| w.contains('/') && !w.starts_with(CGROUP_ROOT))
    {
        return Some(w);
    }
    words.windows(2).find_map(|pair| {
        let switch = trim(pair[0]).to_ascii_lowercase();
        let is_switch = switch == "chroot" || switch == "pivot_root";
        (is_switch && !pair[0].ends_with(':') && pair[1].ends_with(':')).then(|| trim(pair[1]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grade::invoke::random_word;

    fn nothing(_: &Path) -> bool {
        false
    }

    #[test]
    fn a_v1_path_on_the_v2_guest_names_the_workshop_files_cgroup_key() {
        let name = random_word("liz");
        let stderr = format!(
            "Running [/bin/grade-x] as 1\npanic: open /sys/fs/cgroup/pids/{name}/pids.max: no such file or directory\n\ngoroutine 1 [running]:"
        );
        let why = diagnose(&stderr, CgroupVersion::V2, &nothing, None).unwrap();
        assert!(
            why.starts_with("the runtime stopped on a cgroup path of the other cgroup version (step 4): this guest is cgroup v2; a workshop written for v1 says `cgroup = \"v1\"` in its workshop file"),
            "{why}"
        );
        assert!(
            why.contains(&format!("/sys/fs/cgroup/pids/{name}/pids.max)")),
            "{why}"
        );
        let quota = format!("write /sys/fs/cgroup/{name}/cpu.cfs_quota_us: permission denied");
        assert!(diagnose(&quota, CgroupVersion::V2, &nothing, None).is_some());
    }

    #[test]
    fn a_v2_path_on_a_v1_guest_gets_the_mirror_message() {
        let name = random_word("c");
        let stderr = format!("open /sys/fs/cgroup/{name}/memory.max: no such file or directory");
        let why = diagnose(&stderr, CgroupVersion::V1, &|p| p.ends_with("memory"), None).unwrap();
        assert!(
            why.contains("this guest is cgroup v1; a workshop written for v2"),
            "{why}"
        );
        let procs = format!("write /sys/fs/cgroup/{name}/cgroup.procs: no such file or directory");
        assert!(diagnose(&procs, CgroupVersion::V1, &nothing, None).is_some());
    }

    #[test]
    fn a_path_this_guests_hierarchy_has_is_not_blamed_on_the_version() {
        let name = random_word("w");
        let v2 = format!("mkdir /sys/fs/cgroup/{name}/x: permission denied");
        assert_eq!(diagnose(&v2, CgroupVersion::V2, &nothing, None), None);
        let v1 = format!("open /sys/fs/cgroup/pids/{name}/pids.max: no space left");
        assert_eq!(
            diagnose(&v1, CgroupVersion::V1, &|p| p.ends_with("pids"), None),
            None
        );
        assert_eq!(
            diagnose("exec: not found", CgroupVersion::V2, &nothing, None),
            None
        );
    }

    #[test]
    fn a_root_switch_into_nothing_points_at_the_rootfs_key() {
        let dir = format!("/home/{}/ubuntufs", random_word("u"));
        let go = format!("panic: chroot {dir}: no such file or directory");
        let why = diagnose(&go, CgroupVersion::V2, &nothing, None).unwrap();
        assert!(why.contains(&format!("rootfs = \"{dir}\"")), "{why}");
        assert!(why.contains(&format!("({dir} does not exist)")), "{why}");
        let relative = "chroot ubuntu_fs: no such file or directory";
        let why = diagnose(relative, CgroupVersion::V2, &nothing, None).unwrap();
        assert!(why.contains("rootfs = \"ubuntu_fs\""), "{why}");
        let c = "pivot_root: No such file or directory";
        let why = diagnose(c, CgroupVersion::V2, &nothing, None).unwrap();
        assert!(why.contains("rootfs = \"PATH\""), "{why}");
        let keyed = diagnose(&go, CgroupVersion::V2, &nothing, Some(Path::new("rootfs")));
        assert!(keyed.is_some_and(|w| w.contains("`rootfs = \"rootfs\"` is not where it looks")),);
    }
}
