//! `devoxx-grade.toml`: how to call one submission, for the many that differ from the workshop's
//! `run -v SRC:DST IMAGE CMD...` (no image word, no subcommand, a root of their own). It says
//! only how to call the submission: what is graded is the teacher's workshop file's, so the
//! workshop's keys found here are ignored (and reported), never obeyed. Unknown keys are refused
//! so a typo never grades silently with the defaults.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

/// The file a submission may put beside its Makefile.
pub const FILE_NAME: &str = "devoxx-grade.toml";

/// The workshop's invocation: docker's order.
pub const DEFAULT_RUN: &str = "run {volumes} {image} {command}";

/// The keys a submission's file may set.
pub const KEYS: [&str; 7] = [
    "run",
    "rootfs",
    "volume_source",
    "volume_target",
    "hostname",
    "image",
    "timeout_s",
];

/// A submission's grading settings (all optional in the file).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Argument template: `{volumes}`, `{image}` and `{command}` in any order, other words kept;
    /// `{command}` once, the others at most once.
    #[serde(default = "default_run")]
    pub run: String,
    /// Where the runtime looks for the image's root (absolute: in the guest; relative: under the
    /// submission's directory); `None`: `/fs/<image>/rootfs`.
    pub rootfs: Option<PathBuf>,
    /// Host side of a volume the submission hard-codes (relative to the submission directory).
    pub volume_source: Option<PathBuf>,
    /// Container side of that hard-coded volume.
    pub volume_target: Option<String>,
    /// Hostname expected inside.
    #[serde(default = "default_hostname")]
    pub hostname: String,
    /// Image name: the word `{image}` becomes, and the store's rootfs `/fs/<image>/rootfs`.
    #[serde(default = "default_image")]
    pub image: String,
    /// Deadline of one run of the submission, in seconds.
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
    /// Workshop keys the file set: ignored (the teacher's workshop file decides), reported.
    #[serde(skip)]
    pub ignored: Vec<String>,
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
            rootfs: None,
            volume_source: None,
            volume_target: None,
            hostname: default_hostname(),
            image: default_image(),
            timeout_s: default_timeout(),
            ignored: Vec::new(),
        }
    }
}

/// A volume the grader passes (or, when hard-coded, only uses): host path and container path.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    pub source: PathBuf,
    pub target: String,
}

/// Why a `devoxx-grade.toml` is refused: the key, its value as written, and the reason — what a
/// teacher needs in the report to fix the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub key: String,
    pub value: String,
    pub reason: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.value.is_empty() {
            write!(f, "`{}` refused: {}", self.key, self.reason)
        } else {
            write!(
                f,
                "`{} = {}` refused: {}",
                self.key, self.value, self.reason
            )
        }
    }
}

impl std::error::Error for Refused {}

fn refuse(key: &str, value: impl fmt::Debug, reason: impl Into<String>) -> Refused {
    Refused {
        key: key.into(),
        value: format!("{value:?}"),
        reason: reason.into(),
    }
}

/// Top-level directories of the grading guest that hold the system or the grader: a `rootfs`
/// inside one (or equal to it) would make the grader lay its image out over them.
const GUEST_SYSTEM: [&str; 17] = [
    "/bin", "/boot", "/dev", "/etc", "/grade", "/init", "/lib", "/lib32", "/lib64", "/libx32",
    "/newroot", "/proc", "/run", "/sbin", "/suite", "/sys", "/usr",
];

/// Top-level directories a `rootfs` may lie under but never be: laying an image out there would
/// wipe the whole directory.
const GUEST_SHARED: [&str; 10] = [
    "/fs",
    "/home",
    "/media",
    "/mnt",
    "/opt",
    "/root",
    "/srv",
    "/tmp",
    "/var",
    "/workspaces",
];

/// Where the grader keeps its runs' volumes in the guest (`check --scratch`'s default).
pub const GUEST_SCRATCH: &str = "/tmp/devoxx-grade";

impl Config {
    /// Read `path` if it exists, else the defaults.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text).with_context(|| format!("{}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
        }
    }

    /// Parse and validate the file's text: workshop keys are set aside (in `ignored`), an unknown
    /// key or a bad value is refused with the key, the value and the reason.
    pub fn parse(text: &str) -> anyhow::Result<Config> {
        let mut table: toml::Table =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("not TOML: {}", e.message()))?;
        let ignored: Vec<String> = super::workshop::KEYS
            .iter()
            .filter(|k| table.remove(**k).is_some())
            .map(|k| k.to_string())
            .collect();
        if let Some((key, value)) = table.iter().find(|(k, _)| !KEYS.contains(&k.as_str())) {
            return Err(Refused {
                key: key.clone(),
                value: value.to_string(),
                reason: format!("unknown key (known: {})", KEYS.join(", ")),
            }
            .into());
        }
        // Each key alone first, so that a value of the wrong type is refused by its name.
        for (key, value) in &table {
            let mut alone = toml::Table::new();
            alone.insert(key.clone(), value.clone());
            if let Err(e) = alone.try_into::<Config>() {
                return Err(Refused {
                    key: key.clone(),
                    value: value.to_string(),
                    reason: e.to_string().trim().to_owned(),
                }
                .into());
            }
        }
        let mut config: Config = table
            .try_into()
            .map_err(|e| anyhow::anyhow!("{}", e.to_string().trim()))?;
        config.validate()?;
        config.ignored = ignored;
        Ok(config)
    }

    fn validate(&self) -> Result<(), Refused> {
        let run = |reason: String| refuse("run", &self.run, reason);
        let words: Vec<&str> = self.run.split_whitespace().collect();
        let count = |needed: &str| words.iter().filter(|w| **w == needed).count();
        if count("{command}") != 1 {
            return Err(run(
                "must contain {command} once, as a word of its own".into()
            ));
        }
        for once in ["{image}", "{volumes}"] {
            if count(once) > 1 {
                return Err(run(format!("may contain {once} only once")));
            }
        }
        if let Some(w) = words
            .iter()
            .find(|w| w.contains('{') && !w.starts_with('{'))
        {
            return Err(run(format!(
                "placeholder inside a word ({w}); placeholders are whole words"
            )));
        }
        if let Some(w) = words
            .iter()
            .find(|w| w.starts_with('{') && !["{image}", "{command}", "{volumes}"].contains(w))
        {
            return Err(run(format!(
                "unknown placeholder {w} (known: {{volumes}} {{image}} {{command}})"
            )));
        }
        match (&self.volume_source, &self.volume_target) {
            (Some(s), None) => {
                return Err(refuse(
                    "volume_source",
                    s,
                    "volume_source and volume_target go together: set both or neither",
                ))
            }
            (None, Some(t)) => {
                return Err(refuse(
                    "volume_target",
                    t,
                    "volume_source and volume_target go together: set both or neither",
                ))
            }
            (_, Some(t)) if !t.starts_with('/') || t == "/" => {
                return Err(refuse(
                    "volume_target",
                    t,
                    "must be an absolute path other than /",
                ))
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
            return Err(refuse(
                "image",
                &self.image,
                "must be one name of [A-Za-z0-9._-] (the rootfs is /fs/<image>/rootfs)",
            ));
        }
        if self.hostname.is_empty() || self.hostname.len() > 64 {
            return Err(refuse(
                "hostname",
                &self.hostname,
                "must be 1 to 64 characters",
            ));
        }
        if !(1..=600).contains(&self.timeout_s) {
            return Err(refuse(
                "timeout_s",
                self.timeout_s,
                "must be between 1 and 600",
            ));
        }
        if let Some(root) = &self.rootfs {
            self.check_rootfs(root, &[])?;
        }
        Ok(())
    }

    /// Refuse a `rootfs` the grader must not write: it lays its image out there, wiping what was
    /// there, before every run. `reserved` are more paths the guest needs (the grader's own
    /// files): the rootfs may lie neither over nor under them.
    pub fn check_rootfs(&self, root: &Path, reserved: &[PathBuf]) -> Result<(), Refused> {
        let no = |reason: &str| Err(refuse("rootfs", root, reason));
        let text = root.to_string_lossy();
        if text.is_empty() || text.len() > 255 || !text.bytes().all(|b| b.is_ascii_graphic()) {
            return no("must be a path of 1 to 255 printable characters, without spaces");
        }
        if text.split('/').any(|c| c == "." || c == "..") {
            return no("must not contain `.` or `..` (the image is laid out exactly there)");
        }
        if root.is_relative() {
            let first = root.components().next();
            let own = ["bin", FILE_NAME]
                .iter()
                .any(|f| first == Some(Component::Normal(f.as_ref())));
            if own {
                return no("lies over the submission's own files (bin/, devoxx-grade.toml)");
            }
            if let Some(v) = self.volume_source.as_ref().filter(|v| v.is_relative()) {
                if v.starts_with(root) || root.starts_with(v) {
                    return no("overlaps volume_source: the image and the volume are apart");
                }
            }
            return Ok(());
        }
        if root == Path::new("/") {
            return no("is the guest's / itself");
        }
        if let Some(sys) = GUEST_SYSTEM.iter().find(|d| root.starts_with(d)) {
            return no(&format!(
                "lies inside {sys}, the guest's system or the grader's own files"
            ));
        }
        if GUEST_SHARED.iter().any(|d| root == Path::new(d)) {
            return no("is a whole top-level directory of the guest: name a directory below it");
        }
        let scratch = Path::new(GUEST_SCRATCH);
        if let Some(r) = reserved
            .iter()
            .map(PathBuf::as_path)
            .chain([scratch])
            .find(|r| r.starts_with(root) || root.starts_with(r))
        {
            return no(&format!(
                "lies over or under {}, which the grader needs in the guest",
                r.display()
            ));
        }
        if let Some(v) = self.volume_source.as_ref().filter(|v| v.is_absolute()) {
            if v.starts_with(root) || root.starts_with(v) {
                return no("overlaps volume_source: the image and the volume are apart");
            }
        }
        Ok(())
    }

    /// Where the image is laid out for runs from `dir`: the `rootfs` key (relative: under
    /// `dir`), else the workshop's `/fs/<image>/rootfs` in `store`.
    pub fn rootfs_in(&self, dir: &Path, store: &Path) -> PathBuf {
        match &self.rootfs {
            Some(r) => dir.join(r),
            None => super::seed::rootfs_of(store, &self.image),
        }
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
            ("imgae = \"alpine\"", "unknown key"),
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
    fn calls_without_an_image_word_or_a_subcommand_are_taken() {
        let arg = crate::grade::invoke::random_word("a");
        let c = Config::parse("run = \"run {command}\"").unwrap();
        assert_eq!(
            c.argv(&cmd(&["/bin/probe", &arg]), &[]),
            cmd(&["run", "/bin/probe", &arg])
        );
        let c = Config::parse("run = \"{command}\"").unwrap();
        assert_eq!(c.argv(&cmd(&["/bin/x", &arg]), &[]), cmd(&["/bin/x", &arg]));
        let c = Config::parse("run = \"run {volumes} {command}\"").unwrap();
        let vols = [Volume {
            source: "/s".into(),
            target: "/t".into(),
        }];
        assert_eq!(
            c.argv(&cmd(&["ls"]), &vols),
            cmd(&["run", "-v", "/s:/t", "ls"])
        );
        for bad in [
            "run {image}",
            "run",
            "{command} {command}",
            "run {image} {image} {command}",
        ] {
            let err = Config::parse(&format!("run = {bad:?}"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("`run = ") && err.contains("refused"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn a_rootfs_lies_where_the_submission_looks_absolute_or_under_its_directory() {
        let name = crate::grade::invoke::random_word("fs");
        let c = Config::parse(&format!("rootfs = \"/home/liz/{name}\"")).unwrap();
        assert_eq!(
            c.rootfs_in(Path::new("/grade/submission"), Path::new("/fs")),
            PathBuf::from(format!("/home/liz/{name}"))
        );
        let c = Config::parse(&format!("rootfs = \"bundle/{name}\"")).unwrap();
        assert_eq!(
            c.rootfs_in(Path::new("/grade/submission"), Path::new("/fs")),
            PathBuf::from(format!("/grade/submission/bundle/{name}"))
        );
        let c = Config::parse("image = \"busy\"").unwrap();
        assert_eq!(
            c.rootfs_in(Path::new("/grade/submission"), Path::new("/fs")),
            PathBuf::from("/fs/busy/rootfs")
        );
    }

    #[test]
    fn a_rootfs_over_the_guests_or_the_graders_own_files_is_refused() {
        for bad in [
            "/",
            "/proc/self",
            "/sys/fs/cgroup",
            "/dev/shm/x",
            "/grade",
            "/grade/submission/x",
            "/usr",
            "/usr/local/bin",
            "/etc/x",
            "/tmp",
            "/home",
            "/tmp/devoxx-grade",
            "/tmp/devoxx-grade/vol",
            "/home/liz/../../etc",
            "/home/./liz",
            "..",
            "../x",
            "a/../../x",
            "./x",
            "bin",
            "bin/rootfs",
            "devoxx-grade.toml",
            "my rootfs",
            "",
        ] {
            let err = Config::parse(&format!("rootfs = {bad:?}"))
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("`rootfs = {bad:?}` refused: ")),
                "{bad}: {err}"
            );
        }
        let c = Config::parse("rootfs = \"/home/liz/fs\"").unwrap();
        let root = c.rootfs.clone().unwrap();
        let err = c
            .check_rootfs(&root, &[PathBuf::from("/home/liz/fs/grader/target")])
            .unwrap_err();
        assert!(err.reason.contains("grader/target"), "{err}");
        assert!(c.check_rootfs(&root, &[PathBuf::from("/work/x")]).is_ok());
        let err = Config::parse(
            "rootfs = \"/home/liz/fs\"\nvolume_source = \"/home/liz/fs/v\"\nvolume_target = \"/v\"",
        )
        .unwrap_err();
        assert!(err.to_string().contains("volume_source"), "{err}");
    }

    #[test]
    fn workshop_keys_in_a_submissions_file_are_ignored_never_obeyed_nor_refused() {
        let plain = "run = \"run {command}\"\nhostname = \"liz\"";
        let dodging = format!(
            "{plain}\nsteps = [\"process\"]\nimage_dirs = [\"/x\"]\ncgroup = \"v1\"\n\
             limits = {{ pids = 1000, memory = \"whatever\" }}"
        );
        let (a, b) = (
            Config::parse(plain).unwrap(),
            Config::parse(&dodging).unwrap(),
        );
        assert_eq!(b.ignored, ["steps", "image_dirs", "cgroup", "limits"]);
        assert_eq!(
            Config {
                ignored: vec![],
                ..b
            },
            a
        );
        assert!(a.ignored.is_empty());
    }

    #[test]
    fn a_refusal_names_the_key_the_value_and_the_reason() {
        for (text, says) in [
            (
                "imgae = \"alpine\"",
                "`imgae = \"alpine\"` refused: unknown key (known: run,",
            ),
            (
                "timeout_s = \"ten\"",
                "`timeout_s = \"ten\"` refused: invalid type",
            ),
            (
                "timeout_s = 0",
                "`timeout_s = 0` refused: must be between 1 and 600",
            ),
            (
                "hostname = \"\"",
                "`hostname = \"\"` refused: must be 1 to 64",
            ),
        ] {
            let err = Config::parse(text).unwrap_err().to_string();
            assert!(err.starts_with(says), "{text}: {err}");
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
