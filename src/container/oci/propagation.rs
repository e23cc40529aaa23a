//! `linux.rootfsPropagation`: the propagation of the container's root mount, as runc applies
//! it. Before the root switch the container's mount namespace is made `rslave` when the value
//! shares or receives (so the host's new mounts under the bundle still reach the container,
//! while none of the container's set-up mounts can reach the host), `rprivate` otherwise
//! (`run`'s and an unset value's behaviour). Once the root is switched and every mount made, the
//! value itself is applied to `/`: `shared` gives the container a peer group of its own (a
//! bind of `/` inside sees later mounts), `unbindable` refuses binds of `/`.

use nix::mount::{mount, MsFlags};

use crate::error::IoContext;
use crate::{Error, Result};

/// A validated `linux.rootfsPropagation` (default: private, as an unset value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootPropagation {
    /// What `/` gets after the root switch (empty: private, nothing to do).
    flags: MsFlags,
}

impl Default for RootPropagation {
    fn default() -> Self {
        RootPropagation {
            flags: MsFlags::empty(),
        }
    }
}

impl RootPropagation {
    /// The config's value (`None` or empty: private); anything but runc's eight words is refused.
    pub fn parse(value: Option<&str>) -> Result<RootPropagation> {
        let rec = MsFlags::MS_REC;
        let flags = match value.unwrap_or("") {
            "" | "private" | "rprivate" => MsFlags::empty(),
            "shared" => MsFlags::MS_SHARED,
            "rshared" => MsFlags::MS_SHARED | rec,
            "slave" => MsFlags::MS_SLAVE,
            "rslave" => MsFlags::MS_SLAVE | rec,
            "unbindable" => MsFlags::MS_UNBINDABLE,
            "runbindable" => MsFlags::MS_UNBINDABLE | rec,
            other => {
                return Err(Error::Usage(format!(
                    "config.json: linux.rootfsPropagation {other:?} is not one of \
                     private, shared, slave, unbindable (or their r-forms)"
                )))
            }
        };
        Ok(RootPropagation { flags })
    }

    /// Whether the host's mounts keep reaching the container (shared and slave).
    fn receives(self) -> bool {
        self.flags
            .intersects(MsFlags::MS_SHARED | MsFlags::MS_SLAVE)
    }

    /// First thing in the container's mount namespace, before any mount: `rslave` when the
    /// root is to receive the host's mounts, else `rprivate`. Never shared at this point: the
    /// root bind, /proc, /dev... would then show up in the host's mount table.
    pub fn prepare(self) -> Result<()> {
        let flags = match self.receives() {
            true => MsFlags::MS_SLAVE | MsFlags::MS_REC,
            false => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        };
        mount(None::<&str>, "/", None::<&str>, flags, None::<&str>)
            .ctx(|| format!("set the propagation of / ({flags:?}) before the root switch"))
    }

    /// Last of the root's set-up, after the root switch and every mount (an unbindable `/`
    /// would refuse the read-only paths' binds): the value itself on the container's `/`.
    pub fn apply_to_root(self) -> Result<()> {
        if self.flags.is_empty() {
            return Ok(());
        }
        mount(None::<&str>, "/", None::<&str>, self.flags, None::<&str>)
            .ctx(|| format!("set the root's propagation ({:?})", self.flags))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runcs_eight_words_parse_and_only_shared_and_slave_receive() {
        for (word, flags, receives) in [
            ("private", MsFlags::empty(), false),
            ("rprivate", MsFlags::empty(), false),
            ("shared", MsFlags::MS_SHARED, true),
            ("rshared", MsFlags::MS_SHARED | MsFlags::MS_REC, true),
            ("slave", MsFlags::MS_SLAVE, true),
            ("rslave", MsFlags::MS_SLAVE | MsFlags::MS_REC, true),
            ("unbindable", MsFlags::MS_UNBINDABLE, false),
            (
                "runbindable",
                MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
                false,
            ),
        ] {
            let parsed = RootPropagation::parse(Some(word)).unwrap();
            assert_eq!(parsed.flags, flags, "{word}");
            assert_eq!(parsed.receives(), receives, "{word}");
        }
        assert_eq!(
            RootPropagation::parse(None).unwrap(),
            RootPropagation::default()
        );
        assert_eq!(
            RootPropagation::parse(Some("")).unwrap(),
            RootPropagation::default()
        );
    }

    #[test]
    fn other_words_are_refused_with_one_line() {
        for bad in ["Shared", "rshared ", "bind", "master"] {
            let err = RootPropagation::parse(Some(bad)).unwrap_err();
            let line = err.to_string();
            assert!(line.contains("linux.rootfsPropagation"), "{line}");
            assert!(!line.contains('\n'));
            assert_eq!(err.exit_code(), 125);
        }
    }
}
