//! `-u/--user` and the image config's `User` (issue 25): names and numbers resolved in the
//! image's own `/etc/passwd` and `/etc/group` (runc's rules), checked from inside with busybox
//! and the probe — ids, supplementary groups, `HOME`, no capabilities for a non-root user — with
//! random names and ids; a bad spec is one line and 125 before anything is created.

use crate::common;

use std::fs;
use std::os::unix::fs::MetadataExt;

use common::accounts::Accounts;
use common::options::{assert_refused, config_with, image_with};
use common::run::*;
use common::*;
use serde_json::json;

/// `uid gid groups HOME CapEff` as the command sees them, one per line.
const WHO: &str = "id -u; id -g; id -G; echo \"$HOME\"; grep CapEff /proc/self/status | cut -f2";

fn who(arranged: &Arranged, options: &[&str]) -> Vec<String> {
    let ran = arranged.run(options, &["/bin/sh", "-c", WHO]);
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
    let acc = Accounts::random();
    let arranged = Arranged::prepared(standard_config(), |root, img| acc.install(root, img));

    for spec in [acc.name.clone(), acc.uid.to_string()] {
        let out = who(&arranged, &["-u", &spec]);
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
    let ran = arranged.run(&["-u", &acc.name], &["/bin/sh", "-c", &script]);
    ran.assert_ok();
    assert_eq!(
        ran.stdout_lines(),
        ["denied".to_owned(), format!("{}:{}", acc.uid, acc.gid)]
    );
    arranged.assert_clean(&[]);
}

#[test]
fn explicit_group_unknown_numbers_and_the_environments_home() {
    require_root!();
    let acc = Accounts::random();
    let arranged = Arranged::prepared(standard_config(), |root, img| acc.install(root, img));
    let (uid, gid) = (random_in(40_000..=49_999), random_in(50_000..=59_999));
    let home = format!("/h-{}", marker());

    // GROUP replaces the primary group and the memberships.
    let out = who(&arranged, &["-u", &format!("{}:{}", acc.name, acc.spare)]);
    assert_eq!(
        out[..3],
        [
            acc.uid.to_string(),
            acc.spare_gid.to_string(),
            acc.spare_gid.to_string()
        ]
    );
    // Numbers without entries are used as they are, HOME=/ (runc's rule).
    let out = who(&arranged, &["--user", &format!("{uid}:{gid}")]);
    assert_eq!(
        out[..4],
        [
            uid.to_string(),
            gid.to_string(),
            gid.to_string(),
            "/".to_owned()
        ]
    );
    let out = who(&arranged, &["--user", &uid.to_string()]);
    assert_eq!(out[..3], [uid.to_string(), "0".to_owned(), "0".to_owned()]);
    // -e HOME wins over passwd.
    let out = who(&arranged, &["-u", &acc.name, "-e", &format!("HOME={home}")]);
    assert_eq!(out[3], home);
    // Even with SETUID/SETGID dropped, the switch happens (before the capability sets shrink).
    let out = who(
        &arranged,
        &[
            "-u",
            &acc.name,
            "--cap-drop",
            "SETUID",
            "--cap-drop",
            "SETGID",
        ],
    );
    assert_eq!(out[0], acc.uid.to_string());
    // Without -u: root, its memberships only (none of the caller's groups).
    let out = who(&arranged, &[]);
    assert_eq!(
        out[..4],
        [
            "0".to_owned(),
            "0".to_owned(),
            "0".to_owned(),
            "/root".to_owned()
        ]
    );
    arranged.assert_clean(&[]);
}

#[test]
fn the_image_configs_user_is_honoured_and_dash_u_overrides_it() {
    require_root!();
    let acc = Accounts::random();
    let config = config_with(json!({"User": acc.name}));
    let arranged = Arranged::prepared(config, |root, img| acc.install(root, img));
    let other = random_in(1..=999);

    assert_eq!(who(&arranged, &[])[0], acc.uid.to_string());
    assert_eq!(
        who(&arranged, &["-u", &other.to_string()])[0],
        other.to_string()
    );
    assert_eq!(who(&arranged, &["-u", "root"])[0], "0");
    arranged.assert_clean(&[]);
}

#[test]
fn unknown_users_and_groups_and_malformed_specs_are_one_line_and_125() {
    require_root!();
    let acc = Accounts::random();
    let nobody = format!("n{}", marker());
    let mut bad_img = String::new();
    let arranged = Arranged::prepared(standard_config(), |root, img| {
        acc.install(root, img);
        bad_img = image_with(root, json!({"User": nobody}));
    });
    let cmd = ["/bin/probe", "echo", "never"];

    let not_found = format!("unable to find user {nobody}: no matching entries in passwd file");
    arranged.assert_refused(&["-u", &nobody], &not_found);
    assert_refused(&arranged.root, &run_args(&[], &bad_img, &cmd), &not_found);
    let group = format!("{}:{nobody}", acc.name);
    arranged.assert_refused(&["-u", &group], "unable to find group");
    let too_big = (1u64 << 31) + random_in(0..=1000);
    for bad in [
        too_big.to_string(),
        format!("{}:", acc.name),
        format!(":{}", acc.gid),
        "a:b:c".into(),
    ] {
        arranged.assert_refused(&["-u", &bad], "--user");
    }
    arranged.assert_clean(&[&bad_img]);
}

/// A file left by a user-owned write must belong to that user on the host side too (volumes
/// keep the uid/gid of the writer: no user namespace).
#[test]
fn a_users_file_in_a_volume_carries_its_ids_on_the_host() {
    require_root!();
    let arranged = Arranged::standard();
    let host = common::volume::host_dir(&arranged.root);
    fs::set_permissions(&host, std::os::unix::fs::PermissionsExt::from_mode(0o777)).expect("chmod");
    let (uid, gid, name) = (random_in(1000..=60_000), random_in(1000..=60_000), marker());
    let volume = common::volume::spec(&host, "/v", None);
    let user = format!("{uid}:{gid}");

    let ran = arranged.run(
        &["-u", &user, "-v", &volume],
        &["/bin/probe", "write", &format!("/v/{name}"), &name],
    );
    ran.assert_ok();
    let meta = fs::metadata(host.join(&name)).expect("written");
    assert_eq!((u64::from(meta.uid()), u64::from(meta.gid())), (uid, gid));
    arranged.assert_clean(&[&name]);
}
