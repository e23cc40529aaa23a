//! `devoxx-grade.toml`: how to call one submission, for the few that differ from the workshop's
//! `run -v SRC:DST IMAGE CMD...`. Unknown keys are refused so a typo never grades silently with
//! the defaults.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::Deserialize;

/// The file a submission may put beside its Makefile.
pub const FILE_NAME: &str = "devoxx-grade.toml";

/// The workshop's invocation: docker's order.
pub const DEFAULT_RUN: &str = "run {volumes} {image} {command}";

/// A submission's grading settings (all optional in the file).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Argument template: `{volumes}`, `{image}` and `{command}` in any order, other words kept.
    #[serde(default = "default_run")]
    pub run: String,
    /// Host side of a volume the submission hard-codes (relative to the submission directory).
    pub volume_source: Option<PathBuf>,
    /// Container side of that hard-coded volume.
    pub volume_target: Option<String>,
    /// Hostname expected inside.
    #[serde(default = "default_hostname")]
    pub hostname: String,
    /// Image name: the rootfs is seeded at `/fs/<image>/rootfs`.
    #[serde(default = "default_image")]
    pub image: String,
    /// Deadline of one run of the submission, in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
}

fn default_run() -> String {
    DEFAULT_RUN.into()
}
fn default_hostname() -> String {
    "container".into()
}
fn default_image() -> String {
    "alpine".into()
}
fn default_timeout() -> u64 {
    30
}

impl Default for Config {
    fn default() -> Self {
        Config {
            run: default_run(),
            volume_source: None,
            volume_target: None,
            hostname: default_hostname(),
            image: default_image(),
            timeout_s: default_timeout(),
        }
    }
}

/// A volume the grader passes (or, when hard-coded, only uses): host path and container path.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    pub source: PathBuf,
    pub target: String,
}

impl Config {
    /// Read `path` if it exists, else the defaults.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text).with_context(|| format!("{}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
        }
    }

    /// Parse and validate the file's text.
    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let config: Config =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.message()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let words: Vec<&str> = self.run.split_whitespace().collect();
        for needed in ["{image}", "{command}"] {
            if words.iter().filter(|w| **w == needed).count() != 1 {
                bail!(
                    "run = {:?} must contain {needed} once, as a word of its own",
                    self.run
                );
            }
        }
        if words.iter().filter(|w| **w == "{volumes}").count() > 1 {
            bail!("run = {:?} may contain {{volumes}} only once", self.run);
        }
        if let Some(w) = words
            .iter()
            .find(|w| w.contains('{') && !w.starts_with('{'))
        {
            bail!(
                "run = {:?}: placeholder inside a word ({w}); placeholders are whole words",
                self.run
            );
        }
        if let Some(w) = words
            .iter()
            .find(|w| w.starts_with('{') && !["{image}", "{command}", "{volumes}"].contains(w))
        {
            bail!(
                "run = {:?}: unknown placeholder {w} (known: {{volumes}} {{image}} {{command}})",
                self.run
            );
        }
        match (&self.volume_source, &self.volume_target) {
            (Some(_), None) | (None, Some(_)) => {
                bail!("volume_source and volume_target go together: set both or neither")
            }
            (_, Some(t)) if !t.starts_with('/') || t == "/" => {
                bail!("volume_target = {t:?} must be an absolute path other than /")
            }
            _ => {}
        }
        let image_ok = !self.image.is_empty()
            && !self.image.starts_with('.')
            && self
                .image
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !image_ok {
            bail!("image = {:?} must be one name of [A-Za-z0-9._-] (the rootfs is /fs/<image>/rootfs)", self.image);
        }
        if self.hostname.is_empty() || self.hostname.len() > 64 {
            bail!("hostname = {:?} must be 1 to 64 characters", self.hostname);
        }
        if !(1..=600).contains(&self.timeout_s) {
            bail!("timeout_s = {} must be between 1 and 600", self.timeout_s);
        }
        Ok(())
    }

    /// The volume a submission hard-codes, with its source made absolute against `dir`.
    pub fn hard_coded_volume(&self, dir: &Path) -> Option<Volume> {
        let (source, target) = (self.volume_source.as_ref()?, self.volume_target.as_ref()?);
        Some(Volume {
            source: dir.join(source),
            target: target.clone(),
        })
    }

    /// The submission's arguments: the template with `{image}`, `{command}` and `{volumes}`
    /// (`-v SRC:DST` per volume; nothing for a hard-coded one, which the submission adds itself).
    pub fn argv(&self, command: &[String], volumes: &[Volume]) -> Vec<String> {
        let hard_coded = self.volume_source.is_some();
        let mut argv = Vec::new();
        for word in self.run.split_whitespace() {
            match word {
                "{image}" => argv.push(self.image.clone()),
                "{command}" => argv.extend(command.iter().cloned()),
                "{volumes}" if !hard_coded => {
                    for v in volumes {
                        argv.push("-v".into());
                        argv.push(format!("{}:{}", v.source.display(), v.target));
                    }
                }
                "{volumes}" => {}
                other => argv.push(other.into()),
            }
        }
        argv
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn defaults_give_dockers_order_with_one_dash_v_per_volume() {
        let c = Config::parse("").unwrap();
        let vols = [Volume {
            source: "/h/a".into(),
            target: "/data".into(),
        }];
        assert_eq!(
            c.argv(&cmd(&["/bin/probe", "x y"]), &vols),
            cmd(&["run", "-v", "/h/a:/data", "alpine", "/bin/probe", "x y"])
        );
        assert_eq!(c.argv(&cmd(&["ls"]), &[]), cmd(&["run", "alpine", "ls"]));
    }

    #[test]
    fn template_order_and_literal_words_are_kept() {
        let c = Config::parse(
            "run = \"run --network bridge {image} {command} {volumes}\"\nimage = \"busy\"",
        )
        .unwrap();
        let vols = [Volume {
            source: "/s".into(),
            target: "/t".into(),
        }];
        assert_eq!(
            c.argv(&cmd(&["echo", "hi"]), &vols),
            cmd(&[
                "run",
                "--network",
                "bridge",
                "busy",
                "echo",
                "hi",
                "-v",
                "/s:/t"
            ])
        );
    }

    #[test]
    fn a_hard_coded_volume_is_not_passed_and_resolves_against_the_submission() {
        let c = Config::parse("volume_source = \"volumes\"\nvolume_target = \"/data\"").unwrap();
        let v = c.hard_coded_volume(Path::new("/sub")).unwrap();
        assert_eq!(v.source, PathBuf::from("/sub/volumes"));
        assert_eq!(c.argv(&cmd(&["ls"]), &[v]), cmd(&["run", "alpine", "ls"]));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_the_reason() {
        for (text, needle) in [
            ("imgae = \"alpine\"", "unknown field"),
            ("run = \"run {image}\"", "{command}"),
            (
                "run = \"run {image} {command} {volume}\"",
                "unknown placeholder",
            ),
            ("run = \"run --img={image} {command}\"", "{image}"),
            ("volume_source = \"v\"", "together"),
            (
                "volume_source = \"v\"\nvolume_target = \"data\"",
                "absolute",
            ),
            ("image = \"../etc\"", "image"),
            ("timeout_s = 0", "timeout_s"),
            ("hostname = \"\"", "hostname"),
        ] {
            let err = Config::parse(text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn a_missing_file_means_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            Config::load(&dir.path().join(FILE_NAME)).unwrap(),
            Config::default()
        );
    }
}
