//! What docker users reach for beyond the workshop (issue 25): `-u/--user` resolved in the
//! image, `--read-only` with `--tmpfs`, `--ulimit`, `--cgroupns`. Checked from inside with
//! busybox and the probe, with random names, ids, sizes and limits; every run must leave the
//! host as it found it (mounts, processes, writable layer, image store, cgroups).

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::cgroup::{assert_cgroup_gone, is_v2, signal, wait_finished, ContainerCgroup, V2_SKIP};
use common::run::*;
use common::*;
use nix::sys::signal::Signal;
use serde_json::json;

/// The standard test image with `extra` merged into its config.
fn image_with(root: &TestRoot, extra: serde_json::Value) -> String {
    let mut config = json!({"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]});
    if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    root.install_image(config).0
}

/// An account database for the image: a user with a random name, uid, primary group and one
/// supplementary group (listing the user as member), plus a spare group.
struct Accounts {
    name: String,
    uid: u64,
    gid: u64,
    home: String,
    supp_gid: u64,
    spare: String,
    spare_gid: u64,
}

impl Accounts {
    fn random() -> Accounts {
        let uid = random_in(1000..=29_999);
        Accounts {
            name: format!("u{}", marker()),
            uid,
            gid: uid + 30_000,
            home: format!("/home/{}", marker()),
            supp_gid: random_in(100..=999),
            spare: format!("g{}", marker()),
            spare_gid: random_in(60_001..=65_000),
        }
    }

    fn install(&self, root: &TestRoot, img: &str) {
        let etc = root.store().join(img).join("rootfs/etc");
        let passwd = format!(
            "root:x:0:0:root:/root:/bin/sh\n{}:x:{}:{}::{}:/bin/sh\n",
            self.name, self.uid, self.gid, self.home
        );
        let group = format!(
            "root:x:0:\nprimary:x:{}:\nsupp:x:{}:other,{}\n{}:x:{}:\n",
            self.gid, self.supp_gid, self.name, self.spare, self.spare_gid
        );
        fs::write(etc.join("passwd"), passwd).expect("passwd");
        fs::write(etc.join("group"), group).expect("group");
    }
}

/// `uid gid groups HOME CapEff` as the command sees them, one per line.
const WHO: &str = "id -u; id -g; id -G; echo \"$HOME\"; grep CapEff /proc/self/status | cut -f2";

fn who(root: &TestRoot, options: &[&str], img: &str) -> Vec<String> {
    let ran = run(root, &run_args(options, img, &["/bin/sh", "-c", WHO]));
    ran.assert_ok();
    ran.stdout_lines()
}

fn sorted_ids(line: &str) -> Vec<u64> {
    let mut ids: Vec<u64> = line
        .split_whitespace()
        .filter_map(|g| g.parse().ok())
        .collect();
    ids.sort_unstable();
    ids
}

#[test]
fn user_by_name_or_uid_gets_its_ids_groups_home_and_no_capabilities() {
    require_root!();
    let root = TestRoot::new();
    let img = image_with(&root, json!({}));
    let acc = Accounts::random();
    acc.install(&root, &img);
    let before = before(&root);

    for spec in [acc.name.clone(), acc.uid.to_string()] {
        let out = who(&root, &["-u", &spec], &img);
        assert_eq!(out[0], acc.uid.to_string(), "{spec}: {out:?}");
        assert_eq!(out[1], acc.gid.to_string(), "{spec}: {out:?}");
        let mut want = vec![acc.gid, acc.supp_gid];
        want.sort_unstable();
        assert_eq!(sorted_ids(&out[2]), want, "{spec}: supplementary groups");
        assert_eq!(out[3], acc.home, "{spec}: HOME from passwd");
        assert_eq!(
            out[4], "0000000000000000",
            "{spec}: a non-root user has no capability"
        );
    }
    // The switch is real: the root-owned / refuses, a file in /tmp belongs to the user.
    let file = format!("/tmp/{}", marker());
    let script = format!(
        "touch /{0} 2>/dev/null || echo denied; touch {file}; stat -c %u:%g {file}",
        marker()
    );
    let ran = run(
        &root,
        &run_args(&["-u", &acc.name], &img, &["/bin/sh", "-c", &script]),
    );
    ran.assert_ok();
    assert_eq!(
        ran.stdout_lines(),
        ["denied".to_owned(), format!("{}:{}", acc.uid, acc.gid)]
    );
    assert_clean(&root, &before, &[&img]);
}

#[test]
fn explicit_group_unknown_numbers_and_the_environments_home() {
    require_root!();
    let root = TestRoot::new();
    let img = image_with(&root, json!({}));
    let acc = Accounts::random();
    acc.install(&root, &img);
    let (uid, gid) = (random_in(40_000..=49_999), random_in(50_000..=59_999));
    let home = format!("/h-{}", marker());
    let before = before(&root);

    // GROUP replaces the primary group and the memberships.
    let out = who(&root, &["-u", &format!("{}:{}", acc.name, acc.spare)], &img);
    assert_eq!(
        out[..3],
        [
            acc.uid.to_string(),
            acc.spare_gid.to_string(),
            acc.spare_gid.to_string()
        ]
    );
    // Numbers without entries are used as they are, HOME=/ (runc's rule).
    let out = who(&root, &["--user", &format!("{uid}:{gid}")], &img);
    assert_eq!(
        out[..4],
        [
            uid.to_string(),
            gid.to_string(),
            gid.to_string(),
            "/".to_owned()
        ]
    );
    let out = who(&root, &["--user", &uid.to_string()], &img);
    assert_eq!(out[..3], [uid.to_string(), "0".to_owned(), "0".to_owned()]);
    // -e HOME wins over passwd.
    let out = who(
        &root,
        &["-u", &acc.name, "-e", &format!("HOME={home}")],
        &img,
    );
    assert_eq!(out[3], home);
    // Even with SETUID/SETGID dropped, the switch happens (before the capability sets shrink).
    let out = who(
        &root,
        &[
            "-u",
            &acc.name,
            "--cap-drop",
            "SETUID",
            "--cap-drop",
            "SETGID",
        ],
        &img,
    );
    assert_eq!(out[0], acc.uid.to_string());
    // Without -u: root, its memberships only (none of the caller's groups).
    let out = who(&root, &[], &img);
    assert_eq!(
        out[..4],
        [
            "0".to_owned(),
            "0".to_owned(),
            "0".to_owned(),
            "/root".to_owned()
        ]
    );
    assert_clean(&root, &before, &[&img]);
}

#[test]
fn the_image_configs_user_is_honoured_and_dash_u_overrides_it() {
    require_root!();
    let root = TestRoot::new();
    let acc = Accounts::random();
    let img = image_with(&root, json!({"User": acc.name}));
    acc.install(&root, &img);
    let other = random_in(1..=999);
    let before = before(&root);

    assert_eq!(who(&root, &[], &img)[0], acc.uid.to_string());
    assert_eq!(
        who(&root, &["-u", &other.to_string()], &img)[0],
        other.to_string()
    );
    assert_eq!(who(&root, &["-u", "root"], &img)[0], "0");
    assert_clean(&root, &before, &[&img]);
}

/// A run that must fail before anything is created: 125, one prefixed line containing `needle`.
fn assert_refused(root: &TestRoot, args: &[&str], needle: &str) {
    let ran = run(root, args);
    ran.assert_code(125).assert_one_error_line();
    assert!(
        ran.stderr.contains(needle),
        "{args:?}: want {needle:?} in {:?}",
        ran.stderr
    );
}

#[test]
fn unknown_users_and_groups_and_malformed_specs_are_one_line_and_125() {
    require_root!();
    let root = TestRoot::new();
    let img = image_with(&root, json!({}));
    let acc = Accounts::random();
    acc.install(&root, &img);
    let nobody = format!("n{}", marker());
    let bad_img = image_with(&root, json!({"User": nobody}));
    let before = before(&root);
    let cmd = ["/bin/probe", "echo", "never"];

    let not_found = format!("unable to find user {nobody}: no matching entries in passwd file");
    assert_refused(&root, &run_args(&["-u", &nobody], &img, &cmd), &not_found);
    assert_refused(&root, &run_args(&[], &bad_img, &cmd), &not_found);
    let group = format!("{}:{nobody}", acc.name);
    assert_refused(
        &root,
        &run_args(&["-u", &group], &img, &cmd),
        "unable to find group",
    );
    let too_big = (1u64 << 31) + random_in(0..=1000);
    for bad in [
        too_big.to_string(),
        format!("{}:", acc.name),
        format!(":{}", acc.gid),
        "a:b:c".into(),
    ] {
        assert_refused(&root, &run_args(&["-u", &bad], &img, &cmd), "--user");
    }
    assert_clean(&root, &before, &[&img, &bad_img]);
}

#[test]
fn read_only_root_refuses_writes_but_keeps_etc_files_volumes_shm_and_workdir() {
    require_root!();
    let root = TestRoot::new();
    let img = image_with(&root, json!({}));
    let host = common::volume::host_dir(&root);
    let (name, hostname, workdir) = (
        marker(),
        format!("h-{}", marker()),
        format!("/w-{}", marker()),
    );
    let before = before(&root);
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

    let ran = run(&root, &run_args(&opts, &img, &["/bin/sh", "-c", &script]));
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
    let ran = run(
        &root,
        &run_args(
            &[],
            &img,
            &["/bin/probe", "write", &format!("/{name}"), "x"],
        ),
    );
    ran.assert_ok();
    assert_clean(&root, &before, &[&img, &name]);
}

#[test]
fn tmpfs_has_its_size_mode_dockers_flags_and_takes_volumes_inside() {
    require_root!();
    let root = TestRoot::new();
    let img = image_with(&root, json!({}));
    let host = common::volume::host_dir(&root);
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

    let before = before(&root);
    let ran = run(
        &root,
        &run_args(
            &["--read-only", "--tmpfs", &tmpfs, "-v", &volume],
            &img,
            &["/bin/sh", "-c", &script],
        ),
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
    assert_clean(&root, &before, &[&img, &mark]);
}

#[test]
fn tmpfs_exec_option_lifts_noexec() {
    require_root!();
    let root = TestRoot::new();
    let img = image_with(&root, json!({}));
    let (dir, code) = (format!("/x-{}", marker()), random_in(1..=100));
    // Busybox picks its applet by name: a copy named `sh` is a shell.
    let script = format!("cp /bin/busybox {dir}/sh && {dir}/sh -c 'exit {code}'");
    let before = before(&root);

    let ran = run(
        &root,
        &run_args(&["--tmpfs", &dir], &img, &["/bin/sh", "-c", &script]),
    );
    assert_eq!(ran.code, 126, "noexec by default: {ran:?}");
    let exec = format!("{dir}:exec");
    let ran = run(
        &root,
        &run_args(&["--tmpfs", &exec], &img, &["/bin/sh", "-c", &script]),
    );
    ran.assert_code(code as i32);
    assert_clean(&root, &before, &[&img]);
}

#[test]
fn bad_tmpfs_specs_are_one_line_and_125() {
    require_root!();
    let root = TestRoot::new();
    let img = image_with(&root, json!({}));
    let host = common::volume::host_dir(&root);
    let d = format!("/d-{}", marker());
    let before = before(&root);
    let cmd = ["/bin/probe", "echo", "never"];

    for bad in [
        format!("d-{}", marker()),
        "/".into(),
        format!("/proc/{}", marker()),
        format!("{d}:size={}x", random_in(1..=99)),
        format!("{d}:mode={}", random_in(8..=9)),
        format!("{d}:{}", marker()),
    ] {
        assert_refused(
            &root,
            &run_args(&["--tmpfs", &bad], &img, &cmd),
            "invalid --tmpfs",
        );
    }
    let volume = common::volume::spec(&host, &d, None);
    let inside = format!("{d}/{}", marker());
    assert_refused(
        &root,
        &run_args(&["-v", &volume, "--tmpfs", &inside], &img, &cmd),
        "inside volume",
    );
    assert_refused(
        &root,
        &run_args(&["--tmpfs", &d, "--tmpfs", &d], &img, &cmd),
        "twice",
    );
    assert_clean(&root, &before, &[&img]);
}

/// This process's (soft, hard) limit for `name` as `/proc/self/limits` spells it (`None` for
/// unlimited); the runtime under test inherits them.
fn own_limit(row: &str) -> (Option<u64>, Option<u64>) {
    let limits = fs::read_to_string("/proc/self/limits").expect("/proc/self/limits");
    limits_row(&limits, row)
}

fn limits_row(limits: &str, row: &str) -> (Option<u64>, Option<u64>) {
    let line = limits
        .lines()
        .find(|l| l.starts_with(row))
        .unwrap_or_else(|| panic!("{row} in {limits}"));
    let mut fields = line[row.len()..].split_whitespace().map(|v| v.parse().ok());
    (fields.next().flatten(), fields.next().flatten())
}

#[test]
fn ulimits_reach_the_command_at_and_below_the_callers_hard_limit() {
    require_root!();
    let root = TestRoot::new();
    let img = image_with(&root, json!({}));
    let acc = Accounts::random();
    acc.install(&root, &img);
    let nofile_max = own_limit("Max open files").1.unwrap_or(1 << 20);
    let nofile_soft = random_in(16..=nofile_max / 2);
    let nofile_hard = random_in(nofile_soft..=nofile_max);
    let (nproc, core) = (random_in(100..=5000), random_in(0..=1 << 20));
    let before = before(&root);

    let limits = [
        format!("nofile={nofile_soft}:{nofile_hard}"),
        format!("nproc={nproc}"),
        format!("core={}:{}", core / 2, core),
    ];
    let mut opts = vec!["-u", acc.name.as_str()];
    limits
        .iter()
        .for_each(|l| opts.extend(["--ulimit", l.as_str()]));
    let ran = run(
        &root,
        &run_args(&opts, &img, &["/bin/probe", "cat", "/proc/self/limits"]),
    );
    ran.assert_ok();
    assert_eq!(
        limits_row(&ran.stdout, "Max open files"),
        (Some(nofile_soft), Some(nofile_hard))
    );
    assert_eq!(
        limits_row(&ran.stdout, "Max processes"),
        (Some(nproc), Some(nproc))
    );
    assert_eq!(
        limits_row(&ran.stdout, "Max core file size"),
        (Some(core / 2), Some(core))
    );
    // At the caller's hard limit exactly (runc's "same as system's hard value" case).
    let at = format!("nofile={nofile_max}");
    let ran = run(
        &root,
        &run_args(
            &["--ulimit", &at],
            &img,
            &["/bin/sh", "-c", "ulimit -n; ulimit -Hn"],
        ),
    );
    ran.assert_ok();
    assert_eq!(
        ran.stdout_lines(),
        [nofile_max.to_string(), nofile_max.to_string()]
    );
    assert_clean(&root, &before, &[&img]);
}

#[test]
fn ulimits_above_the_callers_hard_limit_or_malformed_are_one_line_and_125() {
    require_root!();
    let root = TestRoot::new();
    let img = image_with(&root, json!({}));
    let before = before(&root);
    let cmd = ["/bin/probe", "echo", "never"];
    let Some(max) = own_limit("Max open files").1 else {
        skip!("this process has no hard limit on open files to exceed");
    };

    let above = format!(
        "nofile={}:{}",
        random_in(1..=max),
        max + random_in(1..=1000)
    );
    assert_refused(
        &root,
        &run_args(&["--ulimit", &above], &img, &cmd),
        "above the runtime's own hard limit",
    );
    let (soft, hard) = (random_in(101..=200), random_in(1..=100));
    for bad in [
        format!("nofile={soft}:{hard}"),
        format!("no{}={soft}", marker()),
        format!("nproc={}", marker()),
        format!("core:{soft}"),
    ] {
        assert_refused(
            &root,
            &run_args(&["--ulimit", &bad], &img, &cmd),
            "invalid --ulimit",
        );
    }
    assert_clean(&root, &before, &[&img]);
}

/// The container's `/proc/self/cgroup` and cgroup namespace link, seen from inside, and the
/// same for its PID 1 seen from the host while it runs; the cgroup is gone afterwards.
fn cgroups_inside_and_out(
    root: &TestRoot,
    options: &[&str],
    no_clone3: bool,
) -> (String, String, String) {
    let img = image_with(root, json!({}));
    let mark = marker();
    let before = before(root);
    let script = format!(
        "cat /proc/self/cgroup; readlink /proc/self/ns/cgroup; echo ready; exec /bin/probe sleep 30 {mark}"
    );
    let mut cmd = root.std_cmd();
    cmd.arg("run")
        .args(["--stop-timeout", "1"])
        .args(options)
        .args([&img, "/bin/sh", "-c", &script]);
    if no_clone3 {
        cmd.env("DEVOXX_NO_CLONE3", "1");
    }
    let child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the runtime");
    // PID 1 once it runs the probe: the command has started (a signal before that would
    // interrupt the start, and clone3 puts the not-yet-exec'd child in the cgroup already).
    let pid = container_pid1(&mark);
    let cg = ContainerCgroup::of(pid).expect("the container's cgroup");
    let outside = fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("host view");
    signal(&child, Signal::SIGTERM);
    let done = wait_finished(child, Duration::from_secs(60));
    assert_eq!(
        done.status.code(),
        Some(137),
        "stopped after --stop-timeout: {}",
        done.stderr
    );
    assert_cgroup_gone(&cg);
    assert_clean(root, &before, &[&img, &mark]);
    let (cgroups, ns) = done
        .stdout
        .rsplit_once("cgroup:[")
        .expect("ns link printed");
    (
        cgroups.to_owned(),
        format!("cgroup:[{}", ns.lines().next().unwrap_or_default()),
        outside,
    )
}

fn own_cgroupns() -> String {
    fs::read_link("/proc/self/ns/cgroup")
        .expect("own ns")
        .display()
        .to_string()
}

#[test]
fn private_cgroupns_roots_the_container_at_its_own_cgroup_with_either_clone() {
    require_root!();
    let root = TestRoot::new();
    for no_clone3 in [false, true] {
        let (inside, ns, outside) =
            cgroups_inside_and_out(&root, &["--cgroupns", "private"], no_clone3);
        assert_ne!(ns, own_cgroupns(), "own cgroup namespace");
        let paths: Vec<&str> = inside
            .lines()
            .filter_map(|l| l.splitn(3, ':').nth(2))
            .collect();
        assert!(
            !paths.is_empty() && paths.iter().all(|p| *p == "/"),
            "inside: {inside}"
        );
        assert!(
            outside.contains("/devoxx-docker/"),
            "the host still sees its cgroup: {outside}"
        );
    }
}

#[test]
fn host_cgroupns_shows_the_hosts_paths() {
    require_root!();
    let root = TestRoot::new();
    let (inside, ns, outside) = cgroups_inside_and_out(&root, &["--cgroupns", "host"], false);
    assert_eq!(ns, own_cgroupns(), "the host's cgroup namespace");
    assert_eq!(inside.trim_end(), outside.trim_end());
    assert!(inside.contains("/devoxx-docker/"), "{inside}");
}

#[test]
fn default_cgroupns_is_private_on_cgroup_v2_reading_0_root() {
    require_root!();
    if !is_v2() {
        skip!("{V2_SKIP}");
    }
    let root = TestRoot::new();
    let (inside, ns, _) = cgroups_inside_and_out(&root, &[], false);
    assert_eq!(inside, "0::/\n");
    assert_ne!(ns, own_cgroupns());
}

#[test]
fn bad_cgroupns_is_one_line_and_125() {
    require_root!();
    let root = TestRoot::new();
    let img = image_with(&root, json!({}));
    let before = before(&root);
    let bad = format!("p{}", marker());
    assert_refused(
        &root,
        &run_args(&["--cgroupns", &bad], &img, &["/bin/probe", "echo"]),
        "invalid --cgroupns",
    );
    assert_clean(&root, &before, &[&img]);
}

/// A file left by a user-owned write must belong to that user on the host side too (volumes
/// keep the uid/gid of the writer: no user namespace).
#[test]
fn a_users_file_in_a_volume_carries_its_ids_on_the_host() {
    require_root!();
    let root = TestRoot::new();
    let img = image_with(&root, json!({}));
    let host = common::volume::host_dir(&root);
    fs::set_permissions(&host, std::os::unix::fs::PermissionsExt::from_mode(0o777)).expect("chmod");
    let (uid, gid, name) = (random_in(1000..=60_000), random_in(1000..=60_000), marker());
    let before = before(&root);
    let volume = common::volume::spec(&host, "/v", None);
    let user = format!("{uid}:{gid}");

    let ran = run(
        &root,
        &run_args(
            &["-u", &user, "-v", &volume],
            &img,
            &["/bin/probe", "write", &format!("/v/{name}"), &name],
        ),
    );
    ran.assert_ok();
    let meta = fs::metadata(host.join(&name)).expect("written");
    assert_eq!((u64::from(meta.uid()), u64::from(meta.gid())), (uid, gid));
    assert_clean(&root, &before, &[&img, &name]);
}

/// Shell run under `unshare --mount --propagation private`: a private tmpfs made shared (a new
/// peer group, so nothing reaches the host), a directory in it bind-mounted onto itself, the
/// host's system directories, the store and the runtime bound into it, and the runtime
/// chrooted there. Its root's parent mount is shared, so pivot_root(2) answers EINVAL, as it
/// does on an initramfs.
const CHROOTED: &str = r#"set -e
W=$1; STORE=$2; RT=$3; shift 3
P=$W/p; mkdir -p $P; mount -t tmpfs -o mode=755 tmpfs $P; mount --make-shared $P
D=$P/d; mkdir $D; mount --bind $D $D
for d in usr etc proc sys dev run; do mkdir -p $D/$d; mount --rbind /$d $D/$d; done
for l in bin sbin lib lib64; do
  if [ -L /$l ]; then cp -P /$l $D/$l; elif [ -d /$l ]; then mkdir -p $D/$l; mount --rbind /$l $D/$l; fi
done
R=$(dirname $RT); mkdir -p $D$STORE $D$R; mount --rbind $STORE $D$STORE; mount --bind $R $D$R
exec chroot $D "$RT" "$@"
"#;

/// `ls /`, the same after climbing `..`, the container's mount points; then exit `code`.
fn root_view(code: u64) -> String {
    format!("ls /; echo --; cd ../../..; ls; echo --; cut -d' ' -f5 /proc/self/mountinfo | sort; exit {code}")
}

fn assert_same_view(ran: &Ran, reference: &Ran, expected_top: &[String]) {
    let view: Vec<&str> = ran.stdout.split("--\n").collect();
    assert_eq!(view.len(), 3, "{ran:?}");
    for listing in &view[..2] {
        assert_eq!(listing.lines().collect::<Vec<_>>(), expected_top, "{ran:?}");
    }
    // The same mounts as after pivot_root: none of the old root's is left.
    assert_eq!(
        view[2],
        reference.stdout.split("--\n").nth(2).unwrap_or_default()
    );
}

#[test]
fn without_pivot_root_the_root_is_moved_and_chrooted_with_the_same_isolation() {
    require_root!();
    let root = TestRoot::new();
    let img = image_with(&root, json!({}));
    let expected = image_top_level(&root, &img);
    let code = random_in(1..=100);
    let before = before(&root);
    let cmd = ["/bin/sh", "-c", &root_view(code)];

    let reference = run(&root, &run_args(&[], &img, &cmd));
    reference.assert_code(code as i32);
    let forced = root
        .cmd()
        .env("DEVOXX_NO_PIVOT", "1")
        .env("DEVOXX_TRACE_START", "1")
        .args(run_args(&[], &img, &cmd))
        .output()
        .expect("run");
    let forced = Ran {
        code: forced.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&forced.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&forced.stderr).into_owned(),
    };
    forced.assert_code(code as i32);
    assert!(
        forced.stderr.contains("trace child-no-pivot "),
        "{}",
        forced.stderr
    );
    assert_same_view(&forced, &reference, &expected);

    // The real condition: a runtime whose root cannot be pivoted away.
    let runtime = runtime();
    let store = root.store();
    let work = root.dir.path().join(format!("w-{}", marker()));
    let mut args: Vec<String> = [
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        CHROOTED,
        "sh",
    ]
    .map(String::from)
    .to_vec();
    args.extend([&work, &store, &runtime].map(|p| p.display().to_string()));
    args.extend(run_args(&[], &img, &cmd).iter().map(|s| s.to_string()));
    let out = std::process::Command::new("unshare")
        .args(&args)
        .env("DEVOXX_ROOT", &store)
        .env("DEVOXX_VOLUMES", root.volumes())
        .env("DEVOXX_TRACE_START", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("unshare (util-linux)");
    let out = output_within(out, RUN_TIMEOUT);
    let chrooted = Ran {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    chrooted.assert_code(code as i32);
    assert!(
        chrooted.stderr.contains("trace child-no-pivot "),
        "pivot_root did not fail: {}",
        chrooted.stderr
    );
    assert_same_view(&chrooted, &reference, &expected);
    assert_clean(&root, &before, &[&img]);
}
