//! Hardening: a container is not host root in disguise. Checked from inside with the probe:
//! the capability sets in /proc/self/status, seccomp mode, `no_new_privs`, and what a root
//! process may still do (mount, mknod a host disk, open one through a volume, create a user
//! namespace, use the kernel keyring); `--privileged` and the flags flip exactly those.

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::PathBuf;

use common::run::*;
use common::*;
use rand::seq::IndexedRandom;

/// A fresh root with the standard image, and a random marker every run of the test carries
/// on its command line (so a leftover process is found).
struct Probed {
    arranged: Arranged,
    mark: String,
}

impl Probed {
    fn new() -> Self {
        Probed {
            arranged: Arranged::standard(),
            mark: marker(),
        }
    }

    /// `/proc/self/status` of a container run with `options`, as a map of its fields.
    fn status(&self, options: &[&str]) -> BTreeMap<String, String> {
        let ran = self.arranged.run(
            options,
            &["/bin/probe", "cat", "/proc/self/status", &self.mark],
        );
        ran.assert_ok();
        ran.stdout
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
            .collect()
    }

    /// What each privileged attempt of [`attempts_script`] met in a container run with
    /// `options` and `disk`'s directory as a volume: `op` → `ok` or `errnoN`.
    fn attempts(&self, options: &[&str], disk: &HostDisk) -> BTreeMap<String, String> {
        let volume = format!("{}:/hostdev", disk.dir.path().display());
        let mut all = vec!["-v", volume.as_str()];
        all.extend_from_slice(options);
        let script = attempts_script(disk, &self.mark);
        let ran = self.arranged.run(&all, &["/bin/sh", "-c", &script]);
        ran.assert_ok();
        ran.stdout
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// [`assert_clean`] for the image and the marker.
    fn assert_clean(&self) {
        self.arranged.assert_clean(&[&self.mark]);
    }
}

/// Docker's default capabilities without CAP_MKNOD, as (name, number) from
/// linux/capability.h: the suite's own copy, independent of the runtime's.
const DEFAULT_CAPS: [(&str, u32); 13] = [
    ("CHOWN", 0),
    ("DAC_OVERRIDE", 1),
    ("FOWNER", 3),
    ("FSETID", 4),
    ("KILL", 5),
    ("SETGID", 6),
    ("SETUID", 7),
    ("SETPCAP", 8),
    ("NET_BIND_SERVICE", 10),
    ("NET_RAW", 13),
    ("SYS_CHROOT", 18),
    ("AUDIT_WRITE", 29),
    ("SETFCAP", 31),
];

/// Capabilities not in the default set, harmless to grant for a test.
const EXTRA_CAPS: [(&str, u32); 6] = [
    ("NET_ADMIN", 12),
    ("IPC_LOCK", 14),
    ("SYS_NICE", 23),
    ("SYS_RESOURCE", 24),
    ("SYS_TIME", 25),
    ("LEASE", 28),
];

const EPERM: &str = "errno1";
const EACCES: &str = "errno13";

fn mask(caps: &[(&str, u32)]) -> u64 {
    caps.iter().fold(0, |m, (_, bit)| m | 1 << bit)
}

/// Every capability the runtime's caller holds (what `--privileged` hands on: all of them on a
/// plain host, fewer in a sandbox that dropped some).
fn callers_caps_mask() -> u64 {
    let status = fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .expect("CapEff");
    u64::from_str_radix(hex.trim(), 16).expect("CapEff hex")
}

/// A spelling docker accepts, chosen at random: `NET_ADMIN`, `net_admin` or `CAP_NET_ADMIN`.
fn spelt(name: &str) -> String {
    match random_in(0..=2) {
        0 => name.to_owned(),
        1 => name.to_lowercase(),
        _ => format!("CAP_{name}"),
    }
}

fn cap_field(status: &BTreeMap<String, String>, field: &str) -> u64 {
    let hex = status
        .get(field)
        .unwrap_or_else(|| panic!("{field} missing: {status:?}"));
    u64::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("{field}={hex}"))
}

#[test]
fn default_capabilities_are_dockers_list_without_mknod_and_seccomp_is_on() {
    require_root!();
    let probed = Probed::new();

    let status = probed.status(&[]);

    let expected = mask(&DEFAULT_CAPS);
    for field in ["CapPrm", "CapEff", "CapBnd"] {
        assert_eq!(
            cap_field(&status, field),
            expected,
            "{field}: {:#x} != docker's default {expected:#x}",
            cap_field(&status, field)
        );
    }
    assert_eq!(cap_field(&status, "CapInh"), 0, "inheritable set");
    assert_eq!(cap_field(&status, "CapAmb"), 0, "ambient set");
    assert_eq!(status["Seccomp"], "2", "seccomp filter mode");
    assert_eq!(status["NoNewPrivs"], "0", "no_new_privs is off by default");
    probed.assert_clean();
}

/// A block device of this host that root can open, and a node for it in a fresh host
/// directory (the volume a container gets).
struct HostDisk {
    dir: tempfile::TempDir,
    node: String,
    major: u32,
    minor: u32,
}

fn host_disk() -> HostDisk {
    let mut devices: Vec<PathBuf> = fs::read_dir("/sys/class/block")
        .expect("/sys/class/block")
        .flatten()
        .map(|e| e.path())
        .collect();
    devices.sort();
    for dev in devices {
        let Ok(numbers) = fs::read_to_string(dev.join("dev")) else {
            continue;
        };
        let Some((major, minor)) = numbers.trim().split_once(':') else {
            continue;
        };
        let (major, minor): (u32, u32) = (major.parse().unwrap(), minor.parse().unwrap());
        let dir = tempfile::tempdir().expect("tempdir");
        let node = format!("disk-{}", marker());
        let path = dir.path().join(&node);
        nix::sys::stat::mknod(
            &path,
            nix::sys::stat::SFlag::S_IFBLK,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            nix::sys::stat::makedev(major.into(), minor.into()),
        )
        .expect("mknod on the host");
        assert!(fs::metadata(&path).unwrap().file_type().is_block_device());
        if fs::File::open(&path).is_ok() {
            return HostDisk {
                dir,
                node,
                major,
                minor,
            };
        }
    }
    panic!("this host has no block device root can open: the device checks would prove nothing");
}

/// One shell line running every privileged attempt; prints `op=ok|errnoN` per attempt.
fn attempts_script(disk: &HostDisk, mark: &str) -> String {
    format!(
        "probe try mount /tmp; probe try mknod /tmp/{node} {major} {minor}; \
         probe try open /hostdev/{node}; probe try userns; probe try keyctl; \
         probe writable /proc/sys/kernel/domainname; : {mark}",
        node = disk.node,
        major = disk.major,
        minor = disk.minor,
    )
}

#[test]
fn default_container_cannot_mount_make_or_open_host_disks_or_reach_kernel_wide_calls() {
    require_root!();
    let probed = Probed::new();
    let disk = host_disk();

    let seen = probed.attempts(&[], &disk);

    let expected: BTreeMap<String, String> = [
        ("mount", EPERM),                           // no CAP_SYS_ADMIN (and seccomp)
        ("mknod", EPERM),                           // no CAP_MKNOD
        ("open", EACCES),                           // volumes are nodev
        ("userns", EPERM),                          // seccomp: no namespaces without CAP_SYS_ADMIN
        ("keyctl", EPERM),                          // seccomp: the keyring is not namespaced
        ("/proc/sys/kernel/domainname", "errno30"), // read-only
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(seen, expected);
    probed.assert_clean();
}

#[test]
fn privileged_flips_every_restriction() {
    require_root!();
    let probed = Probed::new();
    let disk = host_disk();

    let status = probed.status(&["--privileged"]);
    let seen = probed.attempts(&["--privileged"], &disk);

    let all = callers_caps_mask();
    for field in ["CapPrm", "CapEff", "CapBnd"] {
        assert_eq!(cap_field(&status, field), all, "{field} with --privileged");
    }
    assert_eq!(
        status["Seccomp"], "0",
        "no seccomp filter with --privileged"
    );
    for op in [
        "mount",
        "mknod",
        "open",
        "userns",
        "/proc/sys/kernel/domainname",
    ] {
        assert_eq!(
            seen.get(op).map(String::as_str),
            Some("ok"),
            "{op}: {seen:?}"
        );
    }
    assert_ne!(
        seen.get("keyctl").map(String::as_str),
        Some(EPERM),
        "{seen:?}"
    );
    probed.assert_clean();
}

#[test]
fn cap_add_and_cap_drop_change_exactly_the_named_capabilities() {
    require_root!();
    let probed = Probed::new();
    let mut rng = rand::rng();
    // Only what the caller holds can be granted (a sandbox may lack some, e.g. SYS_RESOURCE).
    let held = callers_caps_mask();
    let grantable: Vec<_> = EXTRA_CAPS
        .iter()
        .filter(|(_, bit)| held & 1 << bit != 0)
        .collect();
    let added = **grantable
        .choose(&mut rng)
        .expect("the caller holds none of the extra capabilities");
    let dropped = *DEFAULT_CAPS.choose(&mut rng).unwrap();
    let (add, drop) = (spelt(added.0), spelt(dropped.0));

    let status = probed.status(&["--cap-add", &add, "--cap-drop", &drop]);
    let only = probed.status(&["--cap-drop", "ALL", "--cap-add", &add]);

    let expected = (mask(&DEFAULT_CAPS) | 1 << added.1) & !(1 << dropped.1);
    assert_eq!(
        cap_field(&status, "CapEff"),
        expected,
        "--cap-add {add} --cap-drop {drop}"
    );
    assert_eq!(cap_field(&status, "CapBnd"), expected);
    assert_eq!(
        cap_field(&only, "CapEff"),
        1 << added.1,
        "--cap-drop ALL --cap-add {add}"
    );
    assert_eq!(cap_field(&only, "CapBnd"), 1 << added.1);
    probed.assert_clean();
}

/// Seccomp follows the capabilities as docker's profile does: with CAP_SYS_ADMIN, mount and
/// namespaces are allowed; the keyring never is.
#[test]
fn cap_add_sys_admin_lifts_the_syscalls_tied_to_it() {
    require_root!();
    let probed = Probed::new();
    let disk = host_disk();

    let seen = probed.attempts(&["--cap-add", &spelt("SYS_ADMIN")], &disk);

    assert_eq!(seen["mount"], "ok", "{seen:?}");
    assert_eq!(seen["userns"], "ok", "{seen:?}");
    assert_eq!(seen["mknod"], EPERM, "{seen:?}");
    assert_eq!(seen["keyctl"], EPERM, "{seen:?}");
    probed.assert_clean();
}

#[test]
fn seccomp_unconfined_lifts_the_filter_but_keeps_the_capabilities() {
    require_root!();
    let probed = Probed::new();
    let disk = host_disk();
    let opt = ["--security-opt", "seccomp=unconfined"];

    let status = probed.status(&opt);
    let seen = probed.attempts(&opt, &disk);

    assert_eq!(status["Seccomp"], "0");
    assert_eq!(cap_field(&status, "CapEff"), mask(&DEFAULT_CAPS));
    assert_eq!(seen["userns"], "ok", "{seen:?}");
    assert_ne!(seen["keyctl"], EPERM, "{seen:?}");
    assert_eq!(seen["mount"], EPERM, "still no CAP_SYS_ADMIN: {seen:?}");
    probed.assert_clean();
}

#[test]
fn no_new_privileges_sets_the_flag() {
    require_root!();
    let probed = Probed::new();

    let status = probed.status(&["--security-opt", "no-new-privileges"]);

    assert_eq!(status["NoNewPrivs"], "1");
    assert_eq!(status["Seccomp"], "2", "the filter stays on");
    probed.assert_clean();
}

#[test]
fn unknown_capabilities_and_security_options_are_usage_errors() {
    require_root!();
    let arranged = Arranged::standard();
    let bogus = format!("NOT_A_CAP_{}", random_in(1000..=9999));
    for options in [
        vec!["--cap-add", bogus.as_str()],
        vec!["--cap-drop", bogus.as_str()],
        vec!["--security-opt", "seccomp=/etc/profile.json"],
        vec!["--security-opt", "apparmor=unconfined"],
    ] {
        let ran = arranged.run(&options, &["/bin/probe", "echo", "ran"]);
        ran.assert_code(125).assert_one_error_line();
        let value = options[1].split('=').next().unwrap_or_default();
        assert!(ran.stderr.contains(value), "{options:?}: {}", ran.stderr);
    }
    assert!(arranged.root.leftover_containers().is_empty());
    arranged.assert_clean(&[]);
}
