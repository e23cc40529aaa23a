//! What a container may do to the host kernel: capabilities, seccomp, `no_new_privs`, and the
//! `--privileged` switch that lifts them all (with masked /proc paths and `nodev` volumes).
//! Resolved in the runtime before clone, applied by the container's init right before exec.

pub mod capabilities;
pub mod seccomp;

use super::user::User;
use crate::{Error, Result};
use capabilities::{CapName, CapSets};

/// `run`'s security flags as given (`--privileged`, `--cap-add`, `--cap-drop`,
/// `--security-opt`).
#[derive(Debug, Clone, Default)]
pub struct SecurityArgs {
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub security_opt: Vec<String>,
}

/// The resolved policy for one container.
#[derive(Debug, Clone)]
pub struct Security {
    /// `--privileged`: every capability, no seccomp, no masked paths, devices in volumes.
    pub privileged: bool,
    /// The capability sets (`None`: keep all, `--privileged`).
    capabilities: Option<CapSets>,
    /// `None`: `--privileged` or `--security-opt seccomp=unconfined`.
    seccomp: Option<seccomp::Profile>,
    no_new_privileges: bool,
}

impl Security {
    /// Validate the flags (exit 125 on a bad one) and compile the seccomp profile.
    pub fn resolve(args: &SecurityArgs) -> Result<Security> {
        let parse = |flag: &str, names: &[String]| -> Result<Vec<CapName>> {
            names.iter().map(|n| CapName::parse(flag, n)).collect()
        };
        let (add, drop) = (
            parse("--cap-add", &args.cap_add)?,
            parse("--cap-drop", &args.cap_drop)?,
        );
        let options = SecurityOptions::parse(&args.security_opt)?;
        if args.privileged {
            return Ok(Security {
                privileged: true,
                capabilities: None,
                seccomp: None,
                no_new_privileges: options.no_new_privileges,
            });
        }
        let capabilities = capabilities::resolve(&add, &drop);
        let seccomp = match options.seccomp {
            true => Some(seccomp::Profile::default_for(&capabilities)?),
            false => None,
        };
        Ok(Security {
            privileged: false,
            capabilities: Some(CapSets::uniform(capabilities)),
            seccomp,
            no_new_privileges: options.no_new_privileges,
        })
    }

    /// An OCI config's policy: exactly its capability sets, its seccomp filter (none when
    /// `linux.seccomp` is absent, as runc), its `noNewPrivileges`; the config's own mounts and
    /// masked paths stand in for `--privileged`'s switches.
    pub fn explicit(
        capabilities: CapSets,
        seccomp: Option<seccomp::Profile>,
        no_new_privileges: bool,
    ) -> Security {
        Security {
            privileged: false,
            capabilities: Some(capabilities),
            seccomp,
            no_new_privileges,
        }
    }

    /// In the container's init, after its last privileged set-up step and right before exec:
    /// `no_new_privs`, then seccomp (which needs `CAP_SYS_ADMIN` without it), then the
    /// bounding set, the switch to `user` (runc's order: it needs `CAP_SETUID`/`CAP_SETGID`
    /// even when they are dropped), then the other capability sets.
    pub fn apply(&self, user: &User) -> Result<()> {
        if self.no_new_privileges {
            nix::sys::prctl::set_no_new_privs()
                .map_err(|e| Error::io("set no_new_privs", e.into()))?;
        }
        if let Some(profile) = &self.seccomp {
            profile.install()?;
        }
        match &self.capabilities {
            Some(keep) => capabilities::limit_to(keep, || user.switch()),
            None => user.switch(),
        }
    }
}

/// `--security-opt` values this runtime understands (docker's spellings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SecurityOptions {
    seccomp: bool,
    no_new_privileges: bool,
}

impl SecurityOptions {
    fn parse(values: &[String]) -> Result<SecurityOptions> {
        let mut options = SecurityOptions {
            seccomp: true,
            no_new_privileges: false,
        };
        for value in values {
            match value.as_str() {
                "seccomp=unconfined" | "seccomp:unconfined" => options.seccomp = false,
                "no-new-privileges" | "no-new-privileges=true" | "no-new-privileges:true" => {
                    options.no_new_privileges = true
                }
                "no-new-privileges=false" | "no-new-privileges:false" => {
                    options.no_new_privileges = false
                }
                other => {
                    return Err(Error::Usage(format!(
                        "invalid --security-opt {other:?}: expected seccomp=unconfined or \
                         no-new-privileges[=true|false]"
                    )))
                }
            }
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn security_opts_parse_dockers_spellings() {
        let o =
            SecurityOptions::parse(&strings(&["seccomp=unconfined", "no-new-privileges"])).unwrap();
        assert_eq!(
            o,
            SecurityOptions {
                seccomp: false,
                no_new_privileges: true
            }
        );
        for bad in [
            "seccomp=/tmp/profile.json",
            "apparmor=unconfined",
            "label=disable",
        ] {
            let err = SecurityOptions::parse(&strings(&[bad])).unwrap_err();
            assert!(matches!(err, Error::Usage(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn privileged_keeps_everything_and_has_no_filter() {
        let s = Security::resolve(&SecurityArgs {
            privileged: true,
            ..SecurityArgs::default()
        })
        .unwrap();
        assert!(s.privileged && s.capabilities.is_none() && s.seccomp.is_none());
        let d = Security::resolve(&SecurityArgs::default()).unwrap();
        assert!(!d.privileged && d.capabilities.is_some() && d.seccomp.is_some());
    }
}
