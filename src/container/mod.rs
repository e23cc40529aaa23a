//! Containers: resolve what to run, start it in new namespaces on its own root, limit it with
//! a cgroup, give it its volumes and network, wait for it, and clean everything up.

pub mod cgroup;
pub mod namespaces;
pub mod network;
pub mod process;
pub mod rootfs;
pub mod spec;
pub mod volume;

use crate::config::Paths;
use crate::Result;
use spec::RunOptions;

/// `devoxx-docker run`: returns the container's exit code (128+N on signal N).
pub fn run(paths: &Paths, options: RunOptions) -> Result<i32> {
    let _ = (paths, options);
    todo!("container::run")
}
