//! cgroup v2 (unified) backend.
