//! cgroup v1 / hybrid backend: memory and cpu hierarchies.
