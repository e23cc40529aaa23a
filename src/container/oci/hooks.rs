//! The config's `hooks`, run as the spec says: each one its `path` executed with its `args`
//! (`args[0]` is argv[0]) and exactly its `env`, the container's state JSON on stdin, killed
//! (with everything it started: it leads a process group of its own) after `timeout` seconds.
//!
//! Where and when (the spec's lifecycle): `prestart` and `createRuntime` in the runtime's
//! namespaces and `createContainer` in the container's mount namespace, during `create`, once
//! the namespaces and mounts exist but before the root switch (the init waits at that point);
//! `startContainer` by the init itself, inside the container, after `start` and before the
//! program; `poststart` at the end of `start` and `poststop` at the end of `delete`, in the
//! runtime's namespaces. A failing hook of `create` fails it (everything is undone); one of
//! `startContainer` stops the container; `poststart` and `poststop` failures are warnings.
//! The hooks `start` and `delete` need are kept in the state directory (`hooks.json`).

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One hook, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hook {
    pub path: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<String>,
    /// Seconds (None: no limit).
    pub timeout: Option<u64>,
}

/// Every hook of the config, by phase, in the config's order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hooks {
    pub prestart: Vec<Hook>,
    pub create_runtime: Vec<Hook>,
    pub create_container: Vec<Hook>,
    pub start_container: Vec<Hook>,
    pub poststart: Vec<Hook>,
    pub poststop: Vec<Hook>,
}

/// Where the hooks `start` and `delete` run are kept.
const FILE: &str = "hooks.json";

impl Hooks {
    /// `hooks` of the config (absent: none); a relative path or a timeout of 0 is refused.
    pub fn from_config(given: Option<&oci_spec::runtime::Hooks>) -> Result<Hooks> {
        let Some(given) = given else {
            return Ok(Hooks::default());
        };
        let phase = |name: &str, list: &Option<Vec<oci_spec::runtime::Hook>>| {
            list.iter()
                .flatten()
                .enumerate()
                .map(|(i, h)| hook(&format!("hooks.{name}[{i}]"), h))
                .collect::<Result<Vec<_>>>()
        };
        #[allow(deprecated)]
        let prestart = phase("prestart", given.prestart())?;
        Ok(Hooks {
            prestart,
            create_runtime: phase("createRuntime", given.create_runtime())?,
            create_container: phase("createContainer", given.create_container())?,
            start_container: phase("startContainer", given.start_container())?,
            poststart: phase("poststart", given.poststart())?,
            poststop: phase("poststop", given.poststop())?,
        })
    }

    /// Whether `create` must stop the init before its root switch to run hooks.
    pub fn at_create(&self) -> bool {
        !(self.prestart.is_empty()
            && self.create_runtime.is_empty()
            && self.create_container.is_empty())
    }

    /// Keep the hooks of `start` and `delete` in the state directory `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        if self.poststart.is_empty() && self.poststop.is_empty() {
            return Ok(());
        }
        let bytes =
            serde_json::to_vec(self).map_err(|e| Error::Runtime(format!("encode hooks: {e}")))?;
        super::state::write_atomically(&dir.join(FILE), &bytes)
    }

    /// The hooks kept in `dir` (none when nothing was kept).
    pub fn load(dir: &Path) -> Result<Hooks> {
        match std::fs::read(dir.join(FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::Runtime(format!("hooks of {} are corrupt: {e}", dir.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Hooks::default()),
            Err(e) => Err(Error::path("read", dir.join(FILE), e)),
        }
    }
}

/// What the container's init needs of the hooks (copied into its config before clone).
#[derive(Debug, Clone, Copy)]
pub struct ChildHooks<'a> {
    /// Stop before the root switch until the runtime ran the `create` hooks.
    pub pause_before_root: bool,
    pub start_container: &'a [Hook],
    /// The state `startContainer` hooks read (`created`; the init puts in its own pid).
    pub state: &'a serde_json::Value,
}

impl ChildHooks<'_> {
    /// In the init, after `start` and before the program: the `startContainer` hooks, inside
    /// the container (their paths resolve in its root).
    pub fn run_start_container(&self) -> Result<()> {
        if self.start_container.is_empty() {
            return Ok(());
        }
        let mut state = self.state.clone();
        state["pid"] = serde_json::json!(std::process::id());
        run(
            "startContainer",
            self.start_container,
            &state.to_string(),
            None,
        )
    }
}

fn hook(at: &str, given: &oci_spec::runtime::Hook) -> Result<Hook> {
    if !given.path().is_absolute() {
        return Err(Error::Usage(format!(
            "config.json: {at}.path {} must be absolute",
            given.path().display()
        )));
    }
    let timeout = match given.timeout() {
        Some(t) if t <= 0 => {
            return Err(Error::Usage(format!(
                "config.json: {at}.timeout must be at least 1 second"
            )))
        }
        Some(t) => Some(t as u64),
        None => None,
    };
    Ok(Hook {
        path: given.path().clone(),
        args: given.args().clone().unwrap_or_default(),
        env: given.env().clone().unwrap_or_default(),
        timeout,
    })
}

/// Run `hooks` in order with `state` on stdin; the first failure stops the rest. With
/// `mount_ns`, each runs in that mount namespace (`createContainer`).
pub fn run(phase: &str, hooks: &[Hook], state: &str, mount_ns: Option<&OwnedFd>) -> Result<()> {
    for (i, hook) in hooks.iter().enumerate() {
        run_one(hook, state, mount_ns).map_err(|why| {
            Error::Runtime(format!(
                "{phase} hook #{i} ({}): {why}",
                hook.path.display()
            ))
        })?;
    }
    Ok(())
}

/// `poststart` and `poststop`: a failure is a warning on stderr, the others still run.
pub fn run_warning_only(phase: &str, hooks: &[Hook], state: &str) {
    for (i, hook) in hooks.iter().enumerate() {
        if let Err(why) = run_one(hook, state, None) {
            crate::note!(
                "warning: {phase} hook #{i} ({}) failed: {why}",
                hook.path.display()
            );
        }
    }
}

fn run_one(
    hook: &Hook,
    state: &str,
    mount_ns: Option<&OwnedFd>,
) -> std::result::Result<(), String> {
    let mut command = Command::new(&hook.path);
    if let Some((first, rest)) = hook.args.split_first() {
        command.arg0(first).args(rest);
    }
    command
        .env_clear()
        .envs(hook.env.iter().filter_map(|e| e.split_once('=')))
        .stdin(Stdio::piped())
        .process_group(0);
    if let Some(ns) = mount_ns {
        let fd = ns.as_raw_fd();
        // SAFETY: setns(2) only, between fork and exec.
        unsafe {
            command.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNS) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            })
        };
    }
    let mut child = command.spawn().map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine (EPIPE).
        let _ = stdin.write_all(state.as_bytes());
    }
    let deadline = hook
        .timeout
        .map(|t| Instant::now() + Duration::from_secs(t));
    loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) if status.success() => return Ok(()),
            Some(status) => return Err(format!("it exited with {status}")),
            None if deadline.is_some_and(|d| Instant::now() >= d) => {
                // The hook's whole process group (it may have started others).
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let _ = child.wait();
                return Err(format!(
                    "killed after its timeout of {} s",
                    hook.timeout.unwrap_or_default()
                ));
            }
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parsed(hooks: serde_json::Value) -> Result<Hooks> {
        let given: oci_spec::runtime::Hooks = serde_json::from_value(hooks).unwrap();
        Hooks::from_config(Some(&given))
    }

    #[test]
    fn hooks_keep_their_phase_and_order_and_bad_ones_are_refused() {
        let t = 1 + u64::from(std::process::id() % 50);
        let hooks = parsed(json!({
            "createRuntime": [{"path": "/a"}, {"path": "/b", "args": ["b", "x"], "env": ["K=v"], "timeout": t}],
            "poststop": [{"path": "/c"}],
        }))
        .unwrap();
        assert_eq!(hooks.create_runtime.len(), 2);
        assert_eq!(hooks.create_runtime[1].args, ["b", "x"]);
        assert_eq!(hooks.create_runtime[1].timeout, Some(t));
        assert_eq!(hooks.poststop[0].path, Path::new("/c"));
        assert!(hooks.at_create());
        for (bad, needle) in [
            (
                json!({"poststart": [{"path": "rel"}]}),
                "hooks.poststart[0].path",
            ),
            (
                json!({"prestart": [{"path": "/x", "timeout": 0}]}),
                "hooks.prestart[0].timeout",
            ),
        ] {
            let err = parsed(bad).unwrap_err();
            assert!(err.to_string().contains(needle), "{err}");
            assert_eq!(err.exit_code(), 125);
        }
    }

    #[test]
    fn a_hook_reads_the_state_and_a_timeout_kills_it() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let state = format!("{{\"id\":\"x{}\"}}", std::process::id());
        let sh = Hook {
            path: "/bin/sh".into(),
            args: vec![
                "sh".into(),
                "-c".into(),
                format!("cat > {}; echo $K >> {0}", out.display()),
            ],
            env: vec!["K=v1".into()],
            timeout: None,
        };
        run("createRuntime", &[sh], &state, None).unwrap();
        assert_eq!(
            std::fs::read_to_string(&out).unwrap(),
            format!("{state}v1\n")
        );
        let fails = Hook {
            path: "/bin/sh".into(),
            args: vec!["sh".into(), "-c".into(), "exit 3".into()],
            ..Hook::default()
        };
        let err = run("prestart", &[fails], &state, None).unwrap_err();
        assert!(
            err.to_string().contains("prestart hook #0 (/bin/sh)"),
            "{err}"
        );
        let sleeps = Hook {
            path: "/bin/sh".into(),
            args: vec!["sh".into(), "-c".into(), "sleep 30; true".into()],
            timeout: Some(1),
            ..Hook::default()
        };
        let started = Instant::now();
        let err = run("createRuntime", &[sleeps], &state, None).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(err.to_string().contains("timeout of 1 s"), "{err}");
    }
}
