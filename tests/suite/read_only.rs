//! `--read-only` and `--tmpfs` (issue 25): a read-only root still has its `/etc` files,
//! volumes, `/dev/shm` and working directory; a tmpfs has its size, mode and docker's flags
//! (`nosuid,nodev,noexec` unless told otherwise) and takes volumes inside it; a bad spec is one
//! line and 125. Random names, sizes and modes; every run leaves the host as it found it.

use crate::common;

use std::fs;

use common::run::*;
use common::*;

#[test]
fn read_only_root_refuses_writes_but_keeps_etc_files_volumes_shm_and_workdir() {
    require_root!();
    let arranged = Arranged::standard();
    let host = common::volume::host_dir(&arranged.root);
    let (name, hostname, workdir) = (
        marker(),
        format!("h-{}", marker()),
        format!("/w-{}", marker()),
    );
    let script = format!(
        "/bin/probe write /{name} x; echo rc=$?; cat /etc/hostname; grep -c {hostname} /etc/hosts; \
         test -s /etc/resolv.conf && echo resolv; echo {name} > /vol/{name} && echo vol; \
         echo x > /dev/shm/{name} && echo shm; pwd"
    );
    let volume = common::volume::spec(&host, "/vol", None);
    let opts = [
        "--read-only",
        "--hostname",
        &hostname,
        "-v",
        &volume,
        "-w",
        &workdir,
    ];

    let ran = arranged.run(&opts, &["/bin/sh", "-c", &script]);
    ran.assert_code(0);
    assert!(
        ran.stderr.contains(&format!("write /{name}: errno=30")),
        "EROFS: {}",
        ran.stderr
    );
    let want = ["rc=98", &hostname, "1", "resolv", "vol", "shm", &workdir];
    assert_eq!(ran.stdout_lines(), want);
    assert_eq!(
        fs::read_to_string(host.join(&name)).expect("volume file"),
        format!("{name}\n")
    );
    // The control: the same write succeeds without --read-only.
    let ran = arranged.run(&[], &["/bin/probe", "write", &format!("/{name}"), "x"]);
    ran.assert_ok();
    arranged.assert_clean(&[&name]);
}

#[test]
fn tmpfs_has_its_size_mode_dockers_flags_and_takes_volumes_inside() {
    require_root!();
    let arranged = Arranged::standard();
    let host = common::volume::host_dir(&arranged.root);
    let dir = format!("/t-{}/{}", marker(), marker());
    // Whole pages: the kernel rounds a tmpfs size up to one.
    let kib = 4 * random_in(16..=128);
    let mode = format!("{:o}", random_in(0o700..=0o1777) | 0o700);
    let tmpfs = format!("{dir}:size={kib}k,mode={mode}");
    let volume = common::volume::spec(&host, &format!("{dir}/vol"), None);
    let mark = marker();
    let script = format!(
        "grep ' {dir} ' /proc/self/mountinfo; stat -c %a {dir}; \
         dd if=/dev/zero of={dir}/fits bs=1k count={} 2>/dev/null && echo fits; \
         dd if=/dev/zero of={dir}/big bs=1k count={} 2>/dev/null || echo full; \
         echo {mark} > {dir}/vol/{mark} && echo vol",
        kib / 2,
        kib
    );

    let ran = arranged.run(
        &["--read-only", "--tmpfs", &tmpfs, "-v", &volume],
        &["/bin/sh", "-c", &script],
    );
    ran.assert_ok();
    let lines = ran.stdout_lines();
    let mount = &lines[0];
    assert!(mount.contains(" - tmpfs "), "{mount}");
    let flags = mount.split(' ').nth(5).unwrap_or_default();
    for want in ["rw", "nosuid", "nodev", "noexec"] {
        assert!(flags.split(',').any(|f| f == want), "{want} in {mount}");
    }
    assert!(mount.contains(&format!("size={kib}k")), "{mount}");
    assert_eq!(
        lines[1..],
        [
            mode.trim_start_matches('0').to_owned(),
            "fits".into(),
            "full".into(),
            "vol".into()
        ]
    );
    assert!(
        host.join(&mark).exists(),
        "the volume inside the tmpfs is the host directory"
    );
    arranged.assert_clean(&[&mark]);
}

#[test]
fn tmpfs_exec_option_lifts_noexec() {
    require_root!();
    let arranged = Arranged::standard();
    let (dir, code) = (format!("/x-{}", marker()), random_in(1..=100));
    // Busybox picks its applet by name: a copy named `sh` is a shell.
    let script = format!("cp /bin/busybox {dir}/sh && {dir}/sh -c 'exit {code}'");

    let ran = arranged.run(&["--tmpfs", &dir], &["/bin/sh", "-c", &script]);
    assert_eq!(ran.code, 126, "noexec by default: {ran:?}");
    let exec = format!("{dir}:exec");
    let ran = arranged.run(&["--tmpfs", &exec], &["/bin/sh", "-c", &script]);
    ran.assert_code(code as i32);
    arranged.assert_clean(&[]);
}

#[test]
fn bad_tmpfs_specs_are_one_line_and_125() {
    require_root!();
    let arranged = Arranged::standard();
    let host = common::volume::host_dir(&arranged.root);
    let d = format!("/d-{}", marker());

    for bad in [
        format!("d-{}", marker()),
        "/".into(),
        format!("/proc/{}", marker()),
        format!("{d}:size={}x", random_in(1..=99)),
        format!("{d}:mode={}", random_in(8..=9)),
        format!("{d}:{}", marker()),
    ] {
        arranged.assert_refused(&["--tmpfs", &bad], "invalid --tmpfs");
    }
    let volume = common::volume::spec(&host, &d, None);
    let inside = format!("{d}/{}", marker());
    arranged.assert_refused(&["-v", &volume, "--tmpfs", &inside], "inside volume");
    arranged.assert_refused(&["--tmpfs", &d, "--tmpfs", &d], "twice");
    arranged.assert_clean(&[]);
}
