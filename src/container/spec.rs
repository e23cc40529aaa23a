//! What to run: the CLI's options as given, then resolved once against the image config.

use super::rlimit::{self, Rlimit};
use super::user::{User, UserSpec};
use crate::image::ImageConfig;
use crate::{Error, Result};

/// `run`'s options exactly as the user gave them (values parsed and validated by the modules
/// that own them, so every bad value gets the same one-line error and exit 125).
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub image: String,
    pub command: Vec<String>,
    pub hostname: String,
    pub memory: String,
    pub cpus: String,
    pub pids_limit: Option<String>,
    pub volumes: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub network: String,
    pub stop_timeout: u64,
    pub security: super::security::SecurityArgs,
    /// `-t`: a pty for the container ([`super::tty`]).
    pub tty: bool,
    /// `-i`: relay stdin to that pty (without `-t` stdin is shared anyway).
    pub interactive: bool,
    /// Registry mirrors for Docker Hub images pulled because they are missing.
    pub registry_mirrors: Vec<String>,
    /// `-u USER[:GROUP]` (else the image's `User`, else root).
    pub user: Option<String>,
    /// `--read-only`: the root mount is read-only.
    pub read_only: bool,
    /// `--tmpfs PATH[:OPTIONS]`, repeatable.
    pub tmpfs: Vec<String>,
    /// `--ulimit NAME=SOFT[:HARD]`, repeatable.
    pub ulimits: Vec<String>,
    /// `--cgroupns private|host` (None: docker's default for the host's cgroup layout).
    pub cgroupns: Option<String>,
}

/// PATH a container gets when neither the image nor `-e` sets one (docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The process to start, fully resolved, so the child after clone only executes decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    /// argv; `argv[0]` is looked up through the container's PATH after pivot_root.
    pub argv: Vec<String>,
    /// `KEY=VALUE` entries, unique keys, in a stable order.
    pub env: Vec<String>,
    /// Absolute working directory inside the container (created if missing, as docker does).
    pub workdir: String,
    /// UTS hostname (empty: keep the namespace's, an OCI config without `hostname`).
    pub hostname: String,
    /// Who the command runs as (uid, gid, groups), resolved in the image.
    pub user: User,
    /// `--ulimit`s, set right before exec.
    pub rlimits: Vec<Rlimit>,
    /// The umask the command starts with (docker's and runc's default, 022).
    pub umask: u32,
    /// `/proc/self/oom_score_adj` (None: inherited; an OCI config's `process.oomScoreAdj`).
    pub oom_score_adj: Option<i32>,
}

/// The umask a container's command starts with unless told otherwise.
pub const DEFAULT_UMASK: u32 = 0o022;

/// Check the options that belong to the process itself (`-e`, `-w`, `--hostname`, `-u`,
/// `--ulimit`), so a typo fails with exit 125 before anything is created.
pub fn validate(options: &RunOptions) -> Result<()> {
    for entry in &options.env {
        parse_env_entry(entry)?;
    }
    if let Some(dir) = &options.workdir {
        validate_workdir(dir)?;
    }
    if let Some(user) = &options.user {
        UserSpec::parse("--user", user)?;
    }
    rlimit::parse_all(&options.ulimits, &rlimit::own_hard_limit)?;
    validate_hostname(&options.hostname)
}

/// The user to resolve in the image: `-u`, else the image config's `User` (docker's rule);
/// None (root) when neither says anything.
pub fn user_spec(options: &RunOptions, config: &ImageConfig) -> Result<Option<UserSpec>> {
    match (&options.user, config.user.as_deref()) {
        (Some(user), _) => UserSpec::parse("--user", user).map(Some),
        (None, Some(user)) if !user.is_empty() => {
            UserSpec::parse("User in the image config", user).map(Some)
        }
        _ => Ok(None),
    }
}

/// Combine the image config with the CLI options (docker's rules, see [`resolve_argv`]) and
/// the `user` resolved in the image (see [`user_spec`]).
pub fn resolve(
    options: &RunOptions,
    config: &ImageConfig,
    term: Option<&str>,
    user: User,
) -> Result<ProcessSpec> {
    validate(options)?;
    let argv = resolve_argv(&options.command, config)?;
    let env = merge_env(
        config.env.as_deref().unwrap_or_default(),
        &options.env,
        &EnvDefaults {
            hostname: &options.hostname,
            home: &user.home,
            term,
        },
    );
    let workdir = match &options.workdir {
        Some(dir) => dir.clone(),
        None => image_workdir(config),
    };
    Ok(ProcessSpec {
        argv,
        env,
        workdir,
        hostname: options.hostname.clone(),
        user,
        rlimits: rlimit::parse_all(&options.ulimits, &rlimit::own_hard_limit)?,
        umask: DEFAULT_UMASK,
        oom_score_adj: None,
    })
}

/// The values the environment gets when nothing else sets them.
#[derive(Debug, Clone, Copy)]
pub struct EnvDefaults<'a> {
    /// `HOSTNAME` (always set, the image and `-e` may override it).
    pub hostname: &'a str,
    /// `HOME` when still unset: the user's passwd entry, `/root` for root without one.
    pub home: &'a str,
    /// The caller's `TERM`, when still unset.
    pub term: Option<&'a str>,
}

/// Docker's rule: the command is `Entrypoint + CMD` when a CMD is given on the command line,
/// otherwise `Entrypoint + Cmd` from the image config.
pub fn resolve_argv(command: &[String], config: &ImageConfig) -> Result<Vec<String>> {
    let mut argv: Vec<String> = config.entrypoint.clone().unwrap_or_default();
    if command.is_empty() {
        argv.extend(config.cmd.clone().unwrap_or_default());
    } else {
        argv.extend(command.iter().cloned());
    }
    match argv.first() {
        Some(first) if !first.is_empty() => Ok(argv),
        _ => Err(Error::Usage(
            "no command given and the image defines no Entrypoint/Cmd".into(),
        )),
    }
}

/// The environment: defaults (PATH, HOSTNAME), then the image's Env, then `-e` (later wins),
/// then HOME (the user's, from passwd) and the caller's TERM when still unset.
pub fn merge_env(image: &[String], cli: &[String], defaults: &EnvDefaults) -> Vec<String> {
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), DEFAULT_PATH.into()),
        ("HOSTNAME".into(), defaults.hostname.into()),
    ];
    for entry in image.iter().chain(cli) {
        // Image entries without '=' are ignored (the -e ones were validated already).
        if let Some((key, value)) = entry.split_once('=') {
            set_var(&mut env, key, value);
        }
    }
    if !env.iter().any(|(k, _)| k == "HOME") {
        env.push(("HOME".into(), defaults.home.into()));
    }
    if let Some(term) = defaults.term {
        if !env.iter().any(|(k, _)| k == "TERM") {
            env.push(("TERM".into(), term.into()));
        }
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

fn set_var(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    match env.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value.to_owned(),
        None => env.push((key.to_owned(), value.to_owned())),
    }
}

/// `-e KEY=VALUE`: the key must be non-empty (the value may be empty).
pub fn parse_env_entry(entry: &str) -> Result<(&str, &str)> {
    match entry.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key, value)),
        _ => Err(Error::Usage(format!(
            "invalid --env {entry:?}: expected KEY=VALUE"
        ))),
    }
}

/// `-w DIR` must be absolute: a relative one would depend on where the image happens to start.
pub fn validate_workdir(dir: &str) -> Result<()> {
    if dir.starts_with('/') {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "invalid --workdir {dir:?}: must be an absolute path"
        )))
    }
}

/// The kernel takes up to 64 bytes; a hostname with '/', whitespace or control characters
/// would break /etc/hosts, so refuse it up front.
pub fn validate_hostname(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "invalid --hostname {name:?}: 1 to 64 characters among letters, digits, '-', '.', '_'"
        )))
    }
}

/// The image's WorkingDir made absolute ("/" when unset).
fn image_workdir(config: &ImageConfig) -> String {
    match config.working_dir.as_deref() {
        None | Some("") => "/".into(),
        Some(dir) if dir.starts_with('/') => dir.into(),
        Some(dir) => format!("/{dir}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn options(command: &[&str]) -> RunOptions {
        RunOptions {
            image: "img".into(),
            command: strings(command),
            hostname: "container".into(),
            memory: "100m".into(),
            cpus: "0.5".into(),
            pids_limit: None,
            volumes: vec![],
            env: vec![],
            workdir: None,
            network: "host".into(),
            stop_timeout: 10,
            security: Default::default(),
            tty: false,
            interactive: false,
            registry_mirrors: vec![],
            user: None,
            read_only: false,
            tmpfs: vec![],
            ulimits: vec![],
            cgroupns: None,
        }
    }

    fn defaults<'a>(hostname: &'a str, term: Option<&'a str>) -> EnvDefaults<'a> {
        EnvDefaults {
            hostname,
            home: "/root",
            term,
        }
    }

    #[test]
    fn cli_command_replaces_cmd_but_keeps_entrypoint() {
        let config = ImageConfig {
            entrypoint: Some(strings(&["/bin/ep", "-x"])),
            cmd: Some(strings(&["default"])),
            ..Default::default()
        };
        assert_eq!(
            resolve_argv(&strings(&["given", "arg"]), &config).unwrap(),
            strings(&["/bin/ep", "-x", "given", "arg"])
        );
        assert_eq!(
            resolve_argv(&[], &config).unwrap(),
            strings(&["/bin/ep", "-x", "default"])
        );
    }

    #[test]
    fn missing_command_is_a_usage_error() {
        let err = resolve_argv(&[], &ImageConfig::default()).unwrap_err();
        assert_eq!(err.exit_code(), 125);
    }

    #[test]
    fn env_layers_override_in_order() {
        let env = merge_env(
            &strings(&["A=image", "PATH=/img", "B=keep"]),
            &strings(&["A=cli", "C=", "A=last"]),
            &defaults("h1", Some("xterm")),
        );
        assert_eq!(
            env,
            strings(&[
                "PATH=/img",
                "HOSTNAME=h1",
                "A=last",
                "B=keep",
                "C=",
                "HOME=/root",
                "TERM=xterm"
            ])
        );
    }

    #[test]
    fn env_defaults_apply_when_unset() {
        let env = merge_env(
            &[],
            &strings(&["HOME=/h", "TERM=dumb"]),
            &defaults("x", Some("xterm")),
        );
        assert!(env.contains(&format!("PATH={DEFAULT_PATH}")));
        assert!(env.contains(&"HOME=/h".to_string()));
        assert!(env.contains(&"TERM=dumb".to_string()));
        assert!(!env.contains(&"TERM=xterm".to_string()));
    }

    #[test]
    fn bad_env_workdir_hostname_are_rejected() {
        for bad in ["NOEQUALS", "=value", ""] {
            assert!(parse_env_entry(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_env_entry("K=a=b").unwrap(), ("K", "a=b"));
        assert!(validate_workdir("rel/dir").is_err());
        assert!(validate_workdir("/abs").is_ok());
        assert!(validate_hostname("").is_err());
        assert!(validate_hostname("a/b").is_err());
        assert!(validate_hostname(&"x".repeat(65)).is_err());
        assert!(validate_hostname("web-1.local").is_ok());
    }

    #[test]
    fn dash_u_wins_over_the_image_user_and_sets_home() {
        let config = ImageConfig {
            user: Some("app:staff".into()),
            cmd: Some(strings(&["sh"])),
            ..Default::default()
        };
        let mut opts = options(&[]);
        let from_image = user_spec(&opts, &config).unwrap();
        assert_eq!(from_image, Some(UserSpec::parse("x", "app:staff").unwrap()));
        opts.user = Some("42".into());
        let given = user_spec(&opts, &config).unwrap();
        assert_eq!(given, Some(UserSpec::parse("x", "42").unwrap()));
        let empty = ImageConfig {
            user: Some(String::new()),
            ..Default::default()
        };
        assert_eq!(user_spec(&options(&[]), &empty).unwrap(), None);
        let bad = ImageConfig {
            user: Some("a:b:c".into()),
            ..Default::default()
        };
        assert_eq!(user_spec(&options(&[]), &bad).unwrap_err().exit_code(), 125);
        let user = User {
            home: "/home/app".into(),
            ..User::default()
        };
        let spec = resolve(&opts, &config, None, user).unwrap();
        assert!(spec.env.contains(&"HOME=/home/app".to_string()));
    }

    #[test]
    fn workdir_prefers_cli_then_image_then_root() {
        let config = ImageConfig {
            working_dir: Some("app".into()),
            cmd: Some(strings(&["sh"])),
            ..Default::default()
        };
        let mut opts = options(&[]);
        assert_eq!(
            resolve(&opts, &config, None, User::default())
                .unwrap()
                .workdir,
            "/app"
        );
        opts.workdir = Some("/w".into());
        assert_eq!(
            resolve(&opts, &config, None, User::default())
                .unwrap()
                .workdir,
            "/w"
        );
        assert_eq!(
            resolve(
                &options(&["x"]),
                &ImageConfig::default(),
                None,
                User::default()
            )
            .unwrap()
            .workdir,
            "/"
        );
    }
}
