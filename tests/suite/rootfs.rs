//! Workshop step "rootfs": the container's `/` is the image (pivot_root, no way back to the
//! host's root), seen through a per-container writable layer, with /proc, a minimal /dev and
//! the /etc files a process expects; no runtime file descriptor or directory leaks inside.

use crate::common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use common::run::*;
use common::*;

#[test]
fn root_listing_equals_the_image_rootfs() {
    require_root!();
    // A random top-level entry, so a listing of some other tree cannot match.
    let extra = format!("top-{}", marker());
    let arranged = Arranged::prepared(standard_config(), |root, img| {
        fs::create_dir(root.store().join(img).join("rootfs").join(&extra)).expect("mkdir");
    });
    let expected = image_top_level(&arranged.root, &arranged.img);

    let ran = arranged.run(&[], &["/bin/probe", "ls", "/"]);

    ran.assert_ok();
    assert_eq!(ran.stdout_lines(), expected);
    arranged.assert_clean(&[]);
}

#[test]
fn image_marker_file_is_readable() {
    require_root!();
    let arranged = Arranged::standard();

    let ran = arranged.run(&[], &["/bin/probe", "cat", "/marker"]);

    ran.assert_ok();
    assert_eq!(ran.stdout, arranged.mark);
    arranged.assert_clean(&[]);
}

/// The writable layer is thrown away at exit, so it is mounted `volatile` (Linux 5.10+): no
/// sync of it, and above all no sync of the whole host filesystem when it is unmounted.
#[test]
fn the_writable_layer_is_a_volatile_overlay_of_the_image() {
    require_root!();
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let version: Vec<u32> = release
        .split(|c: char| !c.is_ascii_digit())
        .take(2)
        .filter_map(|n| n.parse().ok())
        .collect();
    if version < vec![5, 10] {
        skip!(
            "overlayfs' volatile option needs Linux 5.10 (this kernel: {})",
            release.trim()
        );
    }
    let arranged = Arranged::standard();

    let ran = arranged.run(&[], &["/bin/probe", "cat", "/proc/self/mountinfo"]);

    ran.assert_ok();
    let lines = ran.stdout_lines();
    let root = lines
        .iter()
        .find(|l| l.split_whitespace().nth(4) == Some("/"))
        .unwrap_or_else(|| panic!("no mount at / in {lines:?}"));
    let (_, fs) = root.split_once(" - ").expect("a mountinfo line");
    let fields: Vec<&str> = fs.split_whitespace().collect();
    assert_eq!(fields.first(), Some(&"overlay"), "{root}");
    let options: Vec<&str> = fields
        .get(2)
        .copied()
        .unwrap_or_default()
        .split(',')
        .collect();
    // Shown as `volatile` up to Linux 6.x, as `fsync=volatile` since fsync= took its place.
    assert!(
        options
            .iter()
            .any(|o| *o == "volatile" || *o == "fsync=volatile"),
        "{root}"
    );
    assert!(options.iter().any(|o| o.starts_with("lowerdir=")), "{root}");
    arranged.assert_clean(&[]);
}

#[test]
fn host_file_outside_the_rootfs_is_invisible() {
    require_root!();
    let arranged = Arranged::standard();
    let name = format!("host-{}", marker());
    let host_file = arranged.root.dir.path().join(&name);
    fs::write(&host_file, marker()).expect("write host file");

    let find = format!("find / \\( -path /proc -o -path /sys \\) -prune -o -name {name} -print");
    let searched = arranged.run(&[], &["/bin/sh", "-c", &find]);
    let by_path = arranged.run(
        &[],
        &["/bin/probe", "cat", host_file.to_str().expect("utf8")],
    );
    let escape = format!("/../../../..{}", host_file.display());
    let by_dotdot = arranged.run(&[], &["/bin/probe", "cat", &escape]);

    searched.assert_ok();
    assert_eq!(searched.stdout, "", "host file found inside");
    for ran in [&by_path, &by_dotdot] {
        ran.assert_code(99);
        assert_eq!(ran.stdout, "", "host file readable inside");
        assert!(ran.stderr.contains("No such file"), "{}", ran.stderr);
    }
    arranged.assert_clean(&[]);
}

#[test]
fn writes_inside_change_neither_the_store_nor_the_next_container() {
    require_root!();
    let arranged = Arranged::standard();
    let mark = &arranged.mark;
    let new_file = format!("/new-{}", marker());

    let written = marker();
    // Create a file, overwrite an image file, delete another: all on the writable layer.
    let script = format!(
        "/bin/probe write {new_file} {written} && /bin/probe write /marker {written} && rm /etc/passwd && /bin/probe cat /marker"
    );
    let first = arranged.run(&[], &["/bin/sh", "-c", &script]);
    let second = arranged.run(
        &[],
        &[
            "/bin/sh",
            "-c",
            &format!("/bin/probe cat /marker; ls /etc/passwd; ls {new_file}"),
        ],
    );

    first.assert_ok();
    assert!(
        first.stdout.contains(&format!("wrote {new_file}")),
        "{}",
        first.stdout
    );
    assert!(
        first.stdout.ends_with(&format!("\n{written}")),
        "overwrite inside did not take: {}",
        first.stdout
    );
    second.assert_code(1);
    assert_eq!(
        second.stdout,
        format!("{mark}/etc/passwd\n"),
        "next container saw the first's writes"
    );
    assert!(second.stderr.contains(&new_file), "{}", second.stderr);
    // assert_clean compares the whole store to its state before the runs.
    arranged.assert_clean(&[]);
}

#[test]
fn parallel_containers_from_one_image_have_their_own_writable_layers() {
    require_root!();
    let arranged = Arranged::standard();
    let (root, img) = (&arranged.root, arranged.img.as_str());

    let values: Vec<String> = (0..4).map(|_| marker()).collect();
    let results: Vec<Ran> = std::thread::scope(|s| {
        let handles: Vec<_> = values
            .iter()
            .map(|v| {
                let (root, img) = (&root, &img);
                s.spawn(move || {
                    // Write, let the others write too, then read back: each must see its own.
                    let script = format!("/bin/probe write /shared {v} >/dev/null && /bin/probe sleep 0.3 && /bin/probe cat /shared && /bin/probe hostname");
                    run(root, &["run", "--hostname", v, img, "/bin/sh", "-c", &script])
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });

    for (v, ran) in values.iter().zip(&results) {
        ran.assert_ok();
        assert_eq!(ran.stdout, format!("{v}{v}\n"));
    }
    arranged.assert_clean(&[]);
}

#[test]
fn proc_is_mounted_and_shows_the_container() {
    require_root!();
    let arg = marker();

    let script = "grep -c ' /proc proc ' /proc/mounts; tr '\\0' ' ' < /proc/1/cmdline; echo; /bin/probe ls /proc | grep -x -e 1 -e self";
    let ran = clean_run(standard_config(), &[], &["/bin/sh", "-c", script, &arg]);

    let lines = ran.stdout_lines();
    assert_eq!(lines[0], "1", "proc mounts at /proc: {lines:?}");
    assert!(
        lines[1].starts_with("/bin/sh -c") && lines[1].ends_with(&arg),
        "PID 1 cmdline: {lines:?}"
    );
    assert_eq!(lines[2..], ["1", "self"]);
}

#[test]
fn dev_has_the_standard_character_devices() {
    require_root!();
    let devices = ["null", "zero", "full", "random", "urandom", "tty"];
    let paths: Vec<String> = devices.iter().map(|d| format!("/dev/{d}")).collect();
    let mut command = vec!["stat", "-c", "%n %F %t:%T"];
    command.extend(paths.iter().map(String::as_str));

    let ran = clean_run(standard_config(), &[], &command);

    let expected: Vec<String> = [
        ("null", "1:3"),
        ("zero", "1:5"),
        ("full", "1:7"),
        ("random", "1:8"),
        ("urandom", "1:9"),
        ("tty", "5:0"),
    ]
    .iter()
    .map(|(n, mm)| format!("/dev/{n} character special file {mm}"))
    .collect();
    let lines = ran.stdout_lines();
    assert_eq!(lines, expected);
}

#[test]
fn dev_devices_behave_like_devices() {
    require_root!();
    let arranged = Arranged::standard();
    let n = random_in(1..=64);

    let null = arranged.run(&[], &["/bin/probe", "write", "/dev/null", &marker()]);
    let full = arranged.run(&[], &["/bin/probe", "write", "/dev/full", &marker()]);
    let script =
        format!("head -c {n} /dev/zero | tr -d '\\0' | wc -c; head -c {n} /dev/urandom | wc -c");
    let zero = arranged.run(&[], &["/bin/sh", "-c", &script]);

    null.assert_ok();
    full.assert_code(98);
    assert!(
        full.stderr.contains("errno=28"),
        "/dev/full must give ENOSPC: {}",
        full.stderr
    );
    zero.assert_ok();
    assert_eq!(zero.stdout_lines(), ["0", &n.to_string()]);
    arranged.assert_clean(&[]);
}

#[test]
fn dev_has_pts_shm_and_no_host_block_devices() {
    require_root!();
    let arranged = Arranged::standard();
    let host_block: Vec<String> = fs::read_dir("/dev")
        .expect("read /dev")
        .filter_map(Result::ok)
        .filter(|e| e.file_type().map(|t| t.is_block_device()).unwrap_or(false))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let content = marker();

    let script = format!(
        "/bin/probe ls /dev; /bin/probe write /dev/shm/x {content} >/dev/null && /bin/probe cat /dev/shm/x; echo; grep -c ' /dev/pts devpts ' /proc/mounts"
    );
    let ran = arranged.run(&[], &["/bin/sh", "-c", &script]);

    ran.assert_ok();
    let lines = ran.stdout_lines();
    for want in [
        "pts", "shm", "null", "zero", "full", "random", "urandom", "tty",
    ] {
        assert!(
            lines.iter().any(|l| l == want),
            "/dev/{want} missing: {lines:?}"
        );
    }
    for dev in &host_block {
        assert!(
            !lines.contains(dev),
            "host block device /dev/{dev} visible inside"
        );
    }
    assert_eq!(
        lines[lines.len() - 2..],
        [content, "1".to_owned()],
        "shm write / devpts mount"
    );
    arranged.assert_clean(&[]);
}

#[test]
fn etc_hostname_hosts_and_resolv_conf_are_provided() {
    require_root!();
    let arranged = Arranged::standard();
    let name = format!("h-{}", marker());

    let hostname = arranged.run(
        &["--hostname", &name],
        &["/bin/probe", "cat", "/etc/hostname"],
    );
    let hosts = arranged.run(&[], &["/bin/probe", "cat", "/etc/hosts"]);
    let resolv = arranged.run(
        &["--network", "host"],
        &["/bin/probe", "cat", "/etc/resolv.conf"],
    );

    hostname.assert_ok();
    assert_eq!(hostname.stdout.trim_end(), name);
    hosts.assert_ok();
    assert!(
        hosts
            .stdout
            .lines()
            .any(|l| l.contains("127.0.0.1") && l.contains("localhost")),
        "{}",
        hosts.stdout
    );
    resolv.assert_ok();
    match fs::read_to_string("/etc/resolv.conf") {
        Ok(host) => assert_eq!(
            resolv.stdout, host,
            "host network: resolv.conf as the host's"
        ),
        Err(_) => assert!(!resolv.stdout.is_empty()),
    }
    // The files were provided on the writable layer or by bind: the store's /etc is untouched.
    arranged.assert_clean(&[]);
}

#[test]
fn no_runtime_file_descriptor_leaks_into_the_container() {
    require_root!();

    let ran = clean_run(standard_config(), &[], &["/bin/probe", "fds"]);

    let fds: BTreeSet<u32> = ran
        .stdout
        .lines()
        .map(|l| l.trim().parse().expect("fd number"))
        .collect();
    assert!(fds.is_superset(&BTreeSet::from([0, 1, 2])), "{fds:?}");
    // Besides stdio only the directory handle the listing itself opened (the lowest free fd).
    let extra: Vec<&u32> = fds.iter().filter(|&&fd| fd > 2).collect();
    assert!(
        extra.len() <= 1 && extra.iter().all(|&&fd| fd == 3),
        "leaked fds: {fds:?}"
    );
}

#[test]
fn cwd_and_root_of_pid_1_are_inside_the_container() {
    require_root!();
    let script = "readlink /proc/1/cwd; readlink /proc/1/root; ls /proc/1/cwd/marker";

    let ran = clean_run(standard_config(), &[], &["/bin/sh", "-c", script]);

    assert_eq!(ran.stdout, "/\n/\n/proc/1/cwd/marker\n");
}

/// `(major:minor, root, mount point)` of each line of a mountinfo text.
fn mounts_of(mountinfo: &str) -> Vec<(String, String, String)> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                (*f.get(2)?).to_owned(),
                (*f.get(3)?).to_owned(),
                (*f.get(4)?).to_owned(),
            ))
        })
        .collect()
}

#[test]
fn host_root_filesystem_is_not_reachable_after_pivot_root() {
    require_root!();
    let arranged = Arranged::standard();
    let host = mounts_of(&host_mounts());
    let host_root_dev = host
        .iter()
        .find(|(_, r, mp)| r == "/" && mp == "/")
        .map(|(dev, _, _)| dev.clone())
        .expect("host / in mountinfo");

    let ran = arranged.run(&[], &["/bin/probe", "cat", "/proc/self/mountinfo"]);

    ran.assert_ok();
    let inside = mounts_of(&ran.stdout);
    assert_eq!(
        inside.iter().filter(|(_, _, mp)| mp == "/").count(),
        1,
        "{}",
        ran.stdout
    );
    let whole_host_root: Vec<_> = inside
        .iter()
        .filter(|(dev, r, _)| *dev == host_root_dev && r == "/")
        .collect();
    assert!(
        whole_host_root.is_empty(),
        "host root mounted inside (old root left?): {whole_host_root:?}"
    );
    let special = ["/proc", "/sys", "/dev"];
    for (_, _, mp) in host
        .iter()
        .filter(|(_, _, mp)| mp != "/" && !special.iter().any(|s| mp.starts_with(s)))
    {
        assert!(
            !inside.iter().any(|(_, _, m)| m.ends_with(mp.as_str())),
            "host mount {mp} visible inside"
        );
    }
    arranged.assert_clean(&[]);
}

/// runc's defaults: the host kernel's settings under /proc are read-only inside (checked with
/// access(2), nothing is written), and what leaks host secrets is masked: empty inside while
/// the host's own copy is not.
#[test]
fn kernel_settings_are_read_only_and_kernel_secrets_are_masked() {
    require_root!();
    let arranged = Arranged::standard();
    let mark = marker();
    // Files root may write on the host (so the check inside cannot pass vacuously).
    let read_only: Vec<&str> = [
        "/proc/sys/kernel/hostname",
        "/proc/sys/kernel/domainname",
        "/proc/sysrq-trigger",
        "/proc/irq/default_smp_affinity",
    ]
    .into_iter()
    .filter(|p| nix::unistd::access(*p, nix::unistd::AccessFlags::W_OK).is_ok())
    .collect();
    assert!(
        read_only.len() >= 2,
        "the host has too few writable kernel settings to test"
    );
    let mut command = vec!["/bin/probe", "writable", "/tmp"];
    command.extend(&read_only);
    command.push(&mark);
    let ran = arranged.run(&[], &command);
    ran.assert_ok();
    assert!(
        ran.stdout.contains("/tmp=ok\n"),
        "the probe's check works: {}",
        ran.stdout
    );
    for p in &read_only {
        assert!(
            ran.stdout.contains(&format!("{p}=errno30\n")),
            "{p} must be read-only (EROFS): {}",
            ran.stdout
        );
    }
    // Masked files: non-empty on the host, empty inside.
    let secrets: Vec<&str> = ["/proc/timer_list", "/proc/keys", "/proc/sched_debug"]
        .into_iter()
        .filter(|p| fs::read(p).is_ok_and(|c| !c.is_empty()))
        .collect();
    assert!(
        !secrets.is_empty(),
        "this host exposes none of the masked files: the test would prove nothing"
    );
    for p in &secrets {
        let inside = arranged.run(&[], &["/bin/probe", "cat", p, &mark]);
        inside.assert_ok();
        assert!(
            inside.stdout.is_empty(),
            "{p} is not masked: {} bytes",
            inside.stdout.len()
        );
    }
    if Path::new("/proc/acpi").is_dir() {
        let listing = arranged.run(&[], &["/bin/probe", "ls", "/proc/acpi", &mark]);
        listing.assert_ok();
        assert_eq!(listing.stdout, "", "/proc/acpi is masked");
    }
    arranged.assert_clean(&[&mark]);
}
