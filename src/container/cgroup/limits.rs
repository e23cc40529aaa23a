//! `--memory`, `--cpus` and `--pids-limit`: parsed and checked before anything is created, so
//! a bad value costs the user one clear line and nothing else.

use crate::{Error, Result};

/// Smallest memory limit accepted: below this a container cannot even start its command (the
/// kernel would OOM-kill it while it execs), so it is a usage error, as in docker.
pub const MIN_MEMORY: u64 = 6 * 1024 * 1024;
/// CFS period used for `--cpus` (the kernel's and docker's default), in µs.
pub const CPU_PERIOD: u64 = 100_000;
/// The kernel refuses a CFS quota below 1 ms per period, i.e. `--cpus` below 0.01.
const MIN_CPU_QUOTA: u64 = 1_000;
/// The kernel's PID_MAX_LIMIT: `pids.max` cannot be set higher.
const MAX_PIDS: u64 = 4 * 1024 * 1024;

/// CPU bandwidth: `quota` µs of CPU time per `period` µs (cgroup v2 `cpu.max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuMax {
    pub quota: u64,
    pub period: u64,
}

/// The limits one container asked for; `None` means unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory: Option<u64>,
    pub cpu: Option<CpuMax>,
    pub pids: Option<u64>,
    /// An OCI config's `cpu.shares` (v1 `cpu.shares`, v2 `cpu.weight` converted as runc
    /// does); `run` never sets it.
    pub cpu_shares: Option<u64>,
    /// An OCI config's `cpu.cpus` / `cpu.mems`; `run` never sets them.
    pub cpuset: Cpuset,
    /// An OCI config's `memory.disableOOMKiller` (v1 `memory.oom_control`; cgroup v2 has no
    /// such switch, the config is refused there); `run` never sets it.
    pub oom_kill_disable: bool,
}

/// CPUs and memory nodes a container may use, as the kernel's list format (`0-2,5`); `None`:
/// the parent's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cpuset {
    pub cpus: Option<String>,
    pub mems: Option<String>,
}

impl Cpuset {
    /// Whether the config asked for CPUs or memory nodes at all.
    pub fn is_set(&self) -> bool {
        self.cpus.is_some() || self.mems.is_some()
    }
}

/// The smallest and largest `cpu.shares` the kernel keeps (v1 clamps outside them).
pub const CPU_SHARES_RANGE: std::ops::RangeInclusive<u64> = 2..=262_144;

/// runc's mapping of `cpu.shares` (2..=262144) onto cgroup v2's `cpu.weight` (1..=10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    1 + (shares.saturating_sub(2) * 9_999) / 262_142
}

/// Check a CPU or memory-node list in the kernel's format (`0`, `0-3`, `0-1,4,6-7`): what
/// `cpuset.cpus` accepts, so a typo is one line at `create`, not a kernel EINVAL later.
pub fn parse_cpu_list(text: &str) -> std::result::Result<String, String> {
    let bad = || format!("{text:?} is not a list such as 0-3,5");
    if text.is_empty() {
        return Err(bad());
    }
    for part in text.split(',') {
        let (low, high) = part.split_once('-').unwrap_or((part, part));
        let number = |n: &str| {
            (!n.is_empty() && n.len() <= 5 && n.bytes().all(|b| b.is_ascii_digit()))
                .then(|| n.parse::<u32>().ok())
                .flatten()
        };
        match (number(low), number(high)) {
            (Some(l), Some(h)) if l <= h => {}
            _ => return Err(bad()),
        }
    }
    Ok(text.to_owned())
}

impl Limits {
    /// Parse the CLI's `--memory`, `--cpus`, `--pids-limit` (bad values → `Error::Usage`).
    pub fn parse(memory: &str, cpus: &str, pids: Option<&str>) -> Result<Limits> {
        Self::parse_with_cpus(memory, cpus, pids, online_cpus())
    }

    /// [`Limits::parse`] against a given CPU count, so the "more CPUs than the host has" rule
    /// is testable on any machine.
    pub fn parse_with_cpus(
        memory: &str,
        cpus: &str,
        pids: Option<&str>,
        available_cpus: u64,
    ) -> Result<Limits> {
        Ok(Limits {
            memory: parse_memory(memory)?,
            cpu: parse_cpus(cpus, available_cpus)?,
            pids: pids.map(parse_pids).transpose()?,
            ..Limits::default()
        })
    }

    /// True when the user asked for no limit at all; the only case where running without any
    /// cgroup controller is honest.
    pub fn is_unlimited(&self) -> bool {
        self.memory.is_none()
            && self.cpu.is_none()
            && self.pids.is_none()
            && self.cpu_shares.is_none()
            && !self.cpuset.is_set()
            && !self.oom_kill_disable
    }
}

/// CPUs online on the host: docker refuses `--cpus` above this, so do we.
fn online_cpus() -> u64 {
    use nix::unistd::{sysconf, SysconfVar};
    match sysconf(SysconfVar::_NPROCESSORS_ONLN) {
        Ok(Some(n)) if n > 0 => n as u64,
        _ => 1,
    }
}

fn parse_memory(value: &str) -> Result<Option<u64>> {
    let text = value.trim().to_ascii_lowercase();
    if text == "max" {
        return Ok(None);
    }
    let bytes = parse_size(&text).ok_or_else(|| {
        Error::Usage(format!(
            "invalid --memory value {value:?}: expected a size such as 100m, 1g, 512k or a whole number of bytes (0 or max = no limit)"
        ))
    })?;
    match bytes {
        // Only a literal zero means "no limit": `0.5` or `0.0001k` round down to 0 bytes, and
        // must not silently lift the limit the user meant to set.
        0 if !text.contains('.') => Ok(None),
        b if b < MIN_MEMORY => Err(Error::Usage(format!(
            "--memory {value} is below the minimum of 6 MiB ({MIN_MEMORY} bytes) a container needs to start"
        ))),
        b => Ok(Some(b)),
    }
}

/// `512`, `512b`, `100k`, `100m`, `1.5g`, `2t`, with optional `b`/`ib` (`100mb`, `100MiB`).
fn parse_size(text: &str) -> Option<u64> {
    let text = text
        .strip_suffix("ib")
        .or_else(|| text.strip_suffix('b'))
        .unwrap_or(text);
    let (number, unit) = match text.char_indices().last()? {
        (i, 'k') => (&text[..i], 1u64 << 10),
        (i, 'm') => (&text[..i], 1 << 20),
        (i, 'g') => (&text[..i], 1 << 30),
        (i, 't') => (&text[..i], 1 << 40),
        _ => (text, 1),
    };
    if !is_plain_decimal(number) {
        return None;
    }
    if number.contains('.') {
        if unit == 1 {
            return None; // a fraction of a byte
        }
        let bytes = number.parse::<f64>().ok()? * unit as f64;
        (bytes.is_finite() && bytes < u64::MAX as f64).then_some(bytes as u64)
    } else {
        number.parse::<u64>().ok()?.checked_mul(unit)
    }
}

/// Digits with at most one dot: no sign, no exponent, no `inf`/`nan` (Rust's float parser
/// would take those, the user never means them).
fn is_plain_decimal(number: &str) -> bool {
    let digits = number.bytes().filter(u8::is_ascii_digit).count();
    let dots = number.bytes().filter(|&b| b == b'.').count();
    digits > 0 && dots <= 1 && digits + dots == number.len()
}

fn parse_cpus(value: &str, available: u64) -> Result<Option<CpuMax>> {
    let text = value.trim();
    let cpus = is_plain_decimal(text)
        .then(|| text.parse::<f64>().ok())
        .flatten()
        .ok_or_else(|| {
            Error::Usage(format!(
                "invalid --cpus value {value:?}: expected a number of CPUs such as 0.5 or 1.5 (0 = no limit)"
            ))
        })?;
    if cpus == 0.0 {
        return Ok(None);
    }
    if cpus > available as f64 {
        return Err(Error::Usage(format!(
            "--cpus {text} is more than the {available} CPU(s) available on this host"
        )));
    }
    let quota = (cpus * CPU_PERIOD as f64).round() as u64;
    if quota < MIN_CPU_QUOTA {
        return Err(Error::Usage(format!(
            "--cpus {text} is below the minimum of 0.01 CPU"
        )));
    }
    Ok(Some(CpuMax {
        quota,
        period: CPU_PERIOD,
    }))
}

fn parse_pids(value: &str) -> Result<u64> {
    let text = value.trim();
    let pids = text
        .bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| text.parse::<u64>().ok())
        .flatten()
        .filter(|&n| n > 0)
        .ok_or_else(|| {
            Error::Usage(format!(
                "invalid --pids-limit value {value:?}: expected a positive number of processes (omit it for no limit)"
            ))
        })?;
    if pids > MAX_PIDS {
        return Err(Error::Usage(format!(
            "--pids-limit {text} is above the kernel's maximum of {MAX_PIDS}"
        )));
    }
    Ok(pids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    const MIB: u64 = 1 << 20;

    #[rstest]
    #[case("100m", Some(100 * MIB))]
    #[case("100M", Some(100 * MIB))]
    #[case("100mb", Some(100 * MIB))]
    #[case("100MiB", Some(100 * MIB))]
    #[case("1g", Some(1 << 30))]
    #[case("1.5g", Some(3 << 29))]
    #[case("8192k", Some(8 * MIB))]
    #[case("104857600", Some(104857600))]
    #[case("104857600b", Some(104857600))]
    #[case("6m", Some(6 * MIB))]
    #[case("0", None)]
    #[case("0m", None)]
    #[case("max", None)]
    #[case("MAX", None)]
    fn memory_sizes(#[case] input: &str, #[case] want: Option<u64>) {
        let limits = Limits::parse_with_cpus(input, "0", None, 2).unwrap();
        assert_eq!(limits.memory, want);
    }

    #[rstest]
    #[case("-5")]
    #[case("abc")]
    #[case("")]
    #[case("m")]
    #[case("1.2.3m")]
    #[case("1e9")]
    #[case("inf")]
    #[case("100x")]
    #[case("99999999999999999999")]
    #[case("99999999999t")]
    #[case("0.5")]
    #[case("1.5b")]
    #[case("104857600.0")]
    fn memory_garbage_is_usage_error(#[case] input: &str) {
        let err = Limits::parse_with_cpus(input, "0", None, 2).unwrap_err();
        assert!(matches!(err, Error::Usage(_)), "{err:?}");
        assert!(err.to_string().contains("--memory"), "{err}");
    }

    #[rstest]
    #[case("1k")]
    #[case("512")]
    #[case("5m")]
    #[case("6291455")]
    #[case("0.0001k")]
    #[case("0.0m")]
    fn memory_below_minimum_says_so(#[case] input: &str) {
        let err = Limits::parse_with_cpus(input, "0", None, 2).unwrap_err();
        assert!(matches!(err, Error::Usage(_)));
        assert!(err.to_string().contains("minimum of 6 MiB"), "{err}");
    }

    #[rstest]
    #[case("0.5", 2, Some((50_000, 100_000)))]
    #[case("1.5", 2, Some((150_000, 100_000)))]
    #[case("2", 2, Some((200_000, 100_000)))]
    #[case("0.01", 1, Some((1_000, 100_000)))]
    #[case("0.333", 4, Some((33_300, 100_000)))]
    #[case("0", 2, None)]
    #[case("0.0", 2, None)]
    fn cpus_to_quota(#[case] input: &str, #[case] ncpu: u64, #[case] want: Option<(u64, u64)>) {
        let limits = Limits::parse_with_cpus("0", input, None, ncpu).unwrap();
        assert_eq!(limits.cpu.map(|c| (c.quota, c.period)), want);
    }

    #[rstest]
    #[case("abc", "invalid --cpus")]
    #[case("-1", "invalid --cpus")]
    #[case("nan", "invalid --cpus")]
    #[case("inf", "invalid --cpus")]
    #[case("1e3", "invalid --cpus")]
    #[case("", "invalid --cpus")]
    #[case("3", "more than the 2 CPU(s)")]
    #[case("2.01", "more than the 2 CPU(s)")]
    #[case("0.001", "minimum of 0.01")]
    fn cpus_refused(#[case] input: &str, #[case] message: &str) {
        let err = Limits::parse_with_cpus("0", input, None, 2).unwrap_err();
        assert!(matches!(err, Error::Usage(_)));
        assert!(err.to_string().contains(message), "{err}");
    }

    #[rstest]
    #[case("1", 1)]
    #[case("10", 10)]
    #[case(" 4096 ", 4096)]
    fn pids_limit(#[case] input: &str, #[case] want: u64) {
        let limits = Limits::parse_with_cpus("0", "0", Some(input), 2).unwrap();
        assert_eq!(limits.pids, Some(want));
    }

    #[rstest]
    #[case("0")]
    #[case("-1")]
    #[case("+5")]
    #[case("1.5")]
    #[case("ten")]
    #[case("99999999")]
    fn pids_refused(#[case] input: &str) {
        let err = Limits::parse_with_cpus("0", "0", Some(input), 2).unwrap_err();
        assert!(matches!(err, Error::Usage(_)));
        assert!(err.to_string().contains("--pids-limit"), "{err}");
    }

    #[rstest]
    #[case("0")]
    #[case("0-1")]
    #[case("0-3,5,7-9")]
    #[case("12")]
    fn cpu_lists_in_the_kernels_format(#[case] input: &str) {
        assert_eq!(parse_cpu_list(input).as_deref(), Ok(input));
    }

    #[rstest]
    #[case("")]
    #[case("a")]
    #[case("1-")]
    #[case("-1")]
    #[case("3-1")]
    #[case("0,,1")]
    #[case("0 1")]
    #[case("1-2-3")]
    #[case("99999999")]
    fn cpu_list_garbage_is_refused(#[case] input: &str) {
        let err = parse_cpu_list(input).unwrap_err();
        assert!(err.contains("0-3,5"), "{err}");
    }

    #[test]
    fn shares_map_onto_weights_as_runc_does() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1024), 39);
        let shares = 2 + u64::from(std::process::id()) % 262_142;
        assert!((1..=10_000).contains(&shares_to_weight(shares)));
    }

    #[test]
    fn defaults_are_the_workshops() {
        let limits = Limits::parse_with_cpus("100m", "0.5", None, 2).unwrap();
        assert_eq!(limits.memory, Some(104_857_600));
        assert_eq!(
            limits.cpu,
            Some(CpuMax {
                quota: 50_000,
                period: 100_000
            })
        );
        assert!(!limits.is_unlimited());
        assert!(Limits::parse_with_cpus("0", "0", None, 2)
            .unwrap()
            .is_unlimited());
    }
}
