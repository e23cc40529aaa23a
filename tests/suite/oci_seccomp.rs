//! OCI `linux.seccomp` (issue 31): the config's own profile, compiled and installed by the
//! runtime, seen from inside with random errno values (the probe says `errnoN`); no
//! `linux.seccomp`, no filter at all (runc's behaviour, unlike `run`'s default profile).

use crate::common;

use serde_json::json;

use common::*;

use super::oci::{assert_refused, cgroup_dirs, wait_for, Bundle};

/// `makedev(major, minor)` as glibc encodes it (small numbers).
fn dev(major: u64, minor: u64) -> u64 {
    (major << 8) | minor
}

#[test]
fn seccomp_errno_rules_with_arguments_fail_their_syscalls_in_init_and_exec() {
    require_root!();
    let mark = marker();
    let (e1, e2) = (random_in(2..=60), random_in(61..=120));
    let minor = random_in(1..=200);
    let b = Bundle::new(json!({
        "process": {"args": ["/bin/sh", "-c", format!(
            "probe try keyctl; probe try mknod /d1 7 {minor}; probe try mknod /d2 7 {}; \
             grep Seccomp: /proc/self/status; echo ready; exec sleep 30 # {mark}", minor + 1)]},
        "linux": {"seccomp": {
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [
                // KEYCTL_GET_KEYRING_ID is 0: the probe's call.
                {"names": ["keyctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": e1,
                 "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
                // mknodat(dirfd, path, mode, dev): a block device 7:minor only.
                {"names": ["mknodat", "mknod"], "action": "SCMP_ACT_ERRNO", "errnoRet": e2,
                 "args": [{"index": 3, "value": dev(7, minor), "op": "SCMP_CMP_EQ"},
                          {"index": 2, "value": libc::S_IFMT, "valueTwo": libc::S_IFBLK,
                           "op": "SCMP_CMP_MASKED_EQ"}]},
            ],
        }},
    }));
    let cgroups = cgroup_dirs(&format!("devoxx-docker-oci/{}", b.id));
    b.create().assert_code(0);
    b.oci(&["start", &b.id]).assert_code(0);
    wait_for(|| b.output().contains("ready"));
    assert_eq!(
        b.output().lines().collect::<Vec<_>>(),
        [
            format!("keyctl=errno{e1}"),
            format!("mknod=errno{e2}"),
            // Not matched: the kernel's own answer (no CAP_MKNOD in this config).
            "mknod=errno1".into(),
            "Seccomp:\t2".into(),
            "ready".into(),
        ]
    );
    // An exec'd process gets the config's filter too.
    let ran = b.oci(&["exec", &b.id, "/bin/probe", "try", "keyctl"]);
    ran.assert_code(0);
    assert_eq!(ran.stdout, format!("keyctl=errno{e1}\n"));
    b.oci(&["delete", "--force", &b.id]).assert_code(0);
    b.assert_clean(&mark, &cgroups);
}

#[test]
fn without_linux_seccomp_there_is_no_filter() {
    require_root!();
    let mark = marker();
    let b = Bundle::new(json!({"process": {"args": ["/bin/sh", "-c",
        format!("grep Seccomp: /proc/self/status; probe try keyctl # {mark}")]}}));
    b.create().assert_code(0);
    b.oci(&["start", &b.id]).assert_code(0);
    b.wait_status("stopped");
    let out = b.output();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "Seccomp:\t0");
    // `run`'s default profile would say errno1 (EPERM); unfiltered, the kernel answers.
    assert!(lines[1].starts_with("keyctl="), "{lines:?}");
    assert_ne!(lines[1], "keyctl=errno1", "a filter denied keyctl");
    b.oci(&["delete", &b.id]).assert_code(0);
    b.assert_clean(&mark, &[]);
}

#[test]
fn seccomp_values_it_cannot_honour_are_refused_with_one_line() {
    require_root!();
    let mark = marker();
    let name = format!("no_such_call_{}", random_in(1000..=9999));
    for (seccomp, needle) in [
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["getpid", name], "action": "SCMP_ACT_ERRNO"}]}),
            format!("linux.seccomp.syscalls[0].names: unknown system call \"{name}\""),
        ),
        (
            json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/run/x.sock"}),
            "linux.seccomp.listenerPath is not supported".to_owned(),
        ),
        (
            json!({"defaultAction": "SCMP_ACT_ALLOW",
                   "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_NOTIFY"}]}),
            "linux.seccomp.syscalls[0].action SCMP_ACT_NOTIFY is not supported".to_owned(),
        ),
    ] {
        let b = Bundle::new(json!({"linux": {"seccomp": seccomp}}));
        assert_refused(&b.create(), &needle);
        assert!(!b.oci_state_dir().join(&b.id).exists(), "{needle}");
        b.assert_clean(&mark, &cgroup_dirs(&format!("devoxx-docker-oci/{}", b.id)));
    }
}
