//! cgroups: detect the host layout once (v2, or v1/hybrid), create one cgroup per container,
//! apply memory/cpu/pids limits before the command starts, report OOM kills, remove it after.

pub mod v1;
pub mod v2;
