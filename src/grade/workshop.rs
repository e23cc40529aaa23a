//! The workshop file: what the teacher's workshop teaches, and so what is graded. It is the
//! teacher's, never the submission's: a submission's `devoxx-grade.toml` only says how to call
//! it. Without a file, the devoxx-docker workshop (cgroup v2, 100 MiB of memory, half a CPU).

use std::path::Path;

use anyhow::{bail, Context};
use serde::Deserialize;

use super::report::STEPS;

/// The cgroup hierarchy the grading guest mounts, as the workshop's students had it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupVersion {
    /// One v1 hierarchy per controller at `/sys/fs/cgroup/<controller>` (a host of the talk's era).
    V1,
    /// The unified hierarchy alone at `/sys/fs/cgroup` (today's hosts).
    #[default]
    V2,
}

impl CgroupVersion {
    /// The word used in the workshop file and on the guest's kernel command line.
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupVersion::V1 => "v1",
            CgroupVersion::V2 => "v2",
        }
    }
}

/// The limits a workshop teaches; the cgroups step checks exactly the ones set.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Memory limit in bytes (written in the file as docker does: `"100m"`, `"1g"`, or bytes).
    #[serde(default, deserialize_with = "de_memory")]
    pub memory: Option<u64>,
    /// CPUs (`0.5`: half a CPU, `cpu.max` = `50000 100000`).
    pub cpu: Option<f64>,
    /// Maximum number of processes (`pids.max`).
    pub pids: Option<u64>,
}

impl Default for Limits {
    /// The devoxx workshop's: 100 MiB and half a CPU, no pids limit.
    fn default() -> Self {
        Limits {
            memory: Some(100 * 1024 * 1024),
            cpu: Some(0.5),
            pids: None,
        }
    }
}

impl Limits {
    /// `cpu.max` for the cpu limit with the kernel's default 100 ms period (`"50000 100000"`).
    pub fn cpu_max(&self) -> Option<String> {
        self.cpu
            .map(|c| format!("{} {PERIOD_US}", (c * PERIOD_US as f64).round() as u64))
    }
}

/// The CFS period the workshops write (the kernel's default).
pub const PERIOD_US: u64 = 100_000;

/// A workshop file's content.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workshop {
    /// The steps this workshop teaches (default: all six); the ones graded unless `STEPS` says.
    #[serde(default = "default_steps")]
    pub steps: Vec<String>,
    /// Directories the image holds (a runtime of the talk mounts a tmpfs on `/mytemp`).
    #[serde(default)]
    pub image_dirs: Vec<String>,
    /// The cgroup version the grading guest mounts.
    #[serde(default)]
    pub cgroup: CgroupVersion,
    /// The limits taught; a limit not set is neither required nor counted.
    #[serde(default)]
    pub limits: Limits,
}

fn default_steps() -> Vec<String> {
    STEPS.iter().map(|s| s.to_string()).collect()
}

impl Default for Workshop {
    fn default() -> Self {
        Workshop {
            steps: default_steps(),
            image_dirs: Vec::new(),
            cgroup: CgroupVersion::V2,
            limits: Limits::default(),
        }
    }
}

/// The keys of a workshop file: in a submission's `devoxx-grade.toml` they are ignored (a
/// submission never sets its own bar), with a note in the report.
pub const KEYS: [&str; 4] = ["steps", "image_dirs", "cgroup", "limits"];

impl Workshop {
    /// Read and validate the teacher's workshop file.
    pub fn load(path: &Path) -> anyhow::Result<Workshop> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        Workshop::parse(&text).with_context(|| format!("{}", path.display()))
    }

    /// Parse and validate a workshop file's text.
    pub fn parse(text: &str) -> anyhow::Result<Workshop> {
        let w: Workshop = toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.message()))?;
        w.validate()?;
        Ok(w)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.steps.is_empty() {
            bail!("steps = [] names no step (known: {})", STEPS.join(", "));
        }
        if let Some(s) = self.steps.iter().find(|s| !STEPS.contains(&s.as_str())) {
            bail!("steps: unknown step {s:?} (known: {})", STEPS.join(", "));
        }
        for d in &self.image_dirs {
            let ok = d.starts_with('/')
                && d != "/"
                && d.len() <= 255
                && !d.split('/').any(|c| c == ".." || c == ".")
                && d.bytes().all(|b| b.is_ascii_graphic());
            if !ok {
                bail!("image_dirs: {d:?} must be an absolute path inside the image, other than /, without . or .. (printable, no spaces)");
            }
        }
        let l = &self.limits;
        if l.memory.is_none() && l.cpu.is_none() && l.pids.is_none() {
            bail!("limits = {{}} sets no limit: name memory, cpu or pids (or leave limits out for the devoxx ones)");
        }
        if let Some(m) = l.memory {
            if !(4 * 1024 * 1024..=1024 * 1024 * 1024).contains(&m) {
                bail!(
                    "limits.memory = {m} bytes: between 4m and 1g (the grader allocates past it)"
                );
            }
        }
        if let Some(c) = l.cpu {
            if !(0.05..=0.8).contains(&c) {
                bail!("limits.cpu = {c}: between 0.05 and 0.8 (a share below one CPU, so it can be measured)");
            }
        }
        if let Some(p) = l.pids {
            if !(2..=1000).contains(&p) {
                bail!("limits.pids = {p}: between 2 and 1000");
            }
        }
        Ok(())
    }
}

/// A memory size as docker writes it: a number of bytes, or with a `k`/`m`/`g` suffix.
pub fn parse_memory(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (digits, unit) = match t.char_indices().last()? {
        (i, 'k') => (&t[..i], 1u64 << 10),
        (i, 'm') => (&t[..i], 1 << 20),
        (i, 'g') => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    digits.parse::<u64>().ok()?.checked_mul(unit)
}

fn de_memory<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bytes(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Bytes(n) => Ok(Some(n)),
        Raw::Text(s) => parse_memory(&s).map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "limits.memory = {s:?}: a size such as \"100m\", \"1g\" or a number of bytes"
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_file_means_the_devoxx_workshop() {
        let w = Workshop::parse("").unwrap();
        assert_eq!(w, Workshop::default());
        assert_eq!(w.limits.memory, Some(104_857_600));
        assert_eq!(w.limits.cpu_max().as_deref(), Some("50000 100000"));
        assert_eq!(w.cgroup, CgroupVersion::V2);
        assert_eq!(w.steps.len(), STEPS.len());
    }

    #[test]
    fn a_talk_workshop_sets_v1_pids_only_and_its_image_dirs() {
        let w = Workshop::parse(
            "steps = [\"process\", \"namespaces\", \"rootfs\", \"cgroups\"]\n\
             image_dirs = [\"/mytemp\"]\ncgroup = \"v1\"\nlimits = { pids = 20 }",
        )
        .unwrap();
        assert_eq!(w.cgroup, CgroupVersion::V1);
        assert_eq!(w.limits.pids, Some(20));
        assert_eq!((w.limits.memory, w.limits.cpu), (None, None));
        assert_eq!(w.image_dirs, ["/mytemp"]);
        assert_eq!(w.steps.len(), 4);
    }

    #[test]
    fn memory_is_written_as_docker_writes_it() {
        for (text, bytes) in [("100m", 104_857_600), ("1g", 1 << 30), ("65536k", 1 << 26)] {
            assert_eq!(parse_memory(text), Some(bytes), "{text}");
        }
        let w = Workshop::parse("limits = { memory = \"50m\", cpu = 0.2 }").unwrap();
        assert_eq!(w.limits.memory, Some(50 << 20));
        assert_eq!(w.limits.cpu_max().as_deref(), Some("20000 100000"));
        assert_eq!(parse_memory("lots"), None);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_the_reason() {
        for (text, needle) in [
            ("cgroups = \"v1\"", "unknown field"),
            ("cgroup = \"v3\"", "v3"),
            ("steps = [\"chroot\"]", "unknown step"),
            ("steps = []", "no step"),
            ("image_dirs = [\"mytemp\"]", "absolute"),
            ("image_dirs = [\"/a/../../etc\"]", ".."),
            ("limits = {}", "no limit"),
            ("limits = { memory = \"lots\" }", "size"),
            ("limits = { memory = \"1k\" }", "between"),
            ("limits = { cpu = 2.0 }", "between"),
            ("limits = { pids = 0 }", "between"),
            ("limits = { swap = 1 }", "unknown field"),
        ] {
            let err = Workshop::parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }
}
