//! The privileged suite, one module per workshop step, in one test binary (as youki's contest
//! keeps one test crate): the library and `tests/common` are linked once, not once per file.
//! It drives the runtime only through its command line (`DEVOXX_RUNTIME` switches runtimes).
//!
//! One suite stays a binary of its own: `tests/network.rs`, whose runs add and reclaim host
//! veths and must not share the host with containers of other steps (every run reclaims stale
//! state, which would race its killed-runtime test). `tests/grader.rs` is the grader's self-test
//! (VM only). The guards of the environment itself are `vm_smoke` here (each test binary is one
//! more fat-LTO link in `make test`).
//!
//! `make test TEST_ARGS='--test suite cgroups::'` runs one step.

#[macro_use]
#[path = "../common/mod.rs"]
mod common;

// The environment the suite is promised (cgroup v2 alone in the VM, overlayfs, pivot_root, NAT).
mod vm_smoke;
// The workshop's steps (the network step is tests/network.rs).
mod cgroups;
mod namespaces;
mod process;
mod rootfs;
mod volumes;
// Images and registries, the security defaults, the command line itself.
mod cli;
mod interactive;
mod pull;
mod pull_hostile;
mod registry_auth;
mod registry_mirror;
mod registry_tls;
mod security;
// docker's run options beyond the workshop (issue 25).
mod cgroupns;
mod no_pivot;
mod read_only;
mod tty;
mod ulimit;
mod user;
// The OCI runtime command line (issue 31), and the engines that drive it.
mod oci;
mod oci_console;
mod oci_device_cgroup;
mod oci_devices;
mod oci_engines;
mod oci_hooks;
mod oci_mounts;
mod oci_resources;
mod oci_seccomp;
mod oci_sysctl;
mod oci_userns;
