//! `DEVOXX_TRACE_START=1`: one stderr line per start-path step (`devoxx-docker: trace STEP µs`,
//! CLOCK_MONOTONIC), from the runtime and from the container's init before it execs. It is how
//! `make bench` and `make vm-bench` say what each step costs: strace's stops distort a start of
//! a few milliseconds, and under TCG far more.

use std::sync::OnceLock;

static ENABLED: OnceLock<bool> = OnceLock::new();

/// Whether tracing is on; read once, before the clone, so the child never touches the
/// environment.
pub fn enabled() -> bool {
    *ENABLED.get_or_init(|| std::env::var_os("DEVOXX_TRACE_START").is_some_and(|v| v == "1"))
}

/// Stamp `step` when tracing is on.
pub fn mark(step: &str) {
    if !enabled() {
        return;
    }
    if let Ok(now) = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        let micros = now.tv_sec() * 1_000_000 + now.tv_nsec() / 1_000;
        // One write per line: the container's init stamps the same stderr concurrently.
        let line = format!("devoxx-docker: trace {step} {micros}\n");
        let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
    }
}
