//! `--ulimit NAME=SOFT[:HARD]` (issue 25): the limits reach the command, set after the user
//! switch, up to exactly the caller's own hard limit; above it, or malformed, is one line and
//! 125 before anything is created. Random limits, read back from `/proc/self/limits` inside.

use crate::common;

use std::fs;

use common::accounts::Accounts;
use common::run::*;
use common::*;

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
    let acc = Accounts::random();
    let arranged = Arranged::prepared(standard_config(), |root, img| acc.install(root, img));
    let nofile_max = own_limit("Max open files").1.unwrap_or(1 << 20);
    let nofile_soft = random_in(16..=nofile_max / 2);
    let nofile_hard = random_in(nofile_soft..=nofile_max);
    let (nproc, core) = (random_in(100..=5000), random_in(0..=1 << 20));

    let limits = [
        format!("nofile={nofile_soft}:{nofile_hard}"),
        format!("nproc={nproc}"),
        format!("core={}:{}", core / 2, core),
    ];
    let mut opts = vec!["-u", acc.name.as_str()];
    limits
        .iter()
        .for_each(|l| opts.extend(["--ulimit", l.as_str()]));
    let ran = arranged.run(&opts, &["/bin/probe", "cat", "/proc/self/limits"]);
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
    let ran = arranged.run(
        &["--ulimit", &at],
        &["/bin/sh", "-c", "ulimit -n; ulimit -Hn"],
    );
    ran.assert_ok();
    assert_eq!(
        ran.stdout_lines(),
        [nofile_max.to_string(), nofile_max.to_string()]
    );
    arranged.assert_clean(&[]);
}

#[test]
fn ulimits_above_the_callers_hard_limit_or_malformed_are_one_line_and_125() {
    require_root!();
    let arranged = Arranged::standard();
    let Some(max) = own_limit("Max open files").1 else {
        skip!("this process has no hard limit on open files to exceed");
    };

    let above = format!(
        "nofile={}:{}",
        random_in(1..=max),
        max + random_in(1..=1000)
    );
    arranged.assert_refused(&["--ulimit", &above], "above the runtime's own hard limit");
    let (soft, hard) = (random_in(101..=200), random_in(1..=100));
    for bad in [
        format!("nofile={soft}:{hard}"),
        format!("no{}={soft}", marker()),
        format!("nproc={}", marker()),
        format!("core:{soft}"),
    ] {
        arranged.assert_refused(&["--ulimit", &bad], "invalid --ulimit");
    }
    arranged.assert_clean(&[]);
}
