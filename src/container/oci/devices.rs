//! `linux.devices`: nodes the config wants in the container's `/dev` (character, block or
//! FIFO, with their numbers, mode and owner), made by the init after its root switch and
//! before the spec's default devices fill in what is still missing. Only paths under `/dev/`
//! without `..` are taken: a node never lands outside the container's device directory.

use std::path::{Component, Path};

use nix::sys::stat::{mknod, Mode, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use crate::error::IoContext;
use crate::{Error, Result};

/// One node to make, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub path: String,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
}

impl Device {
    /// The allow rule (every access) a node of the config needs once device rules are enforced,
    /// as runc adds it: without it the init's own mknod of the node is refused. FIFOs need none.
    pub fn allow_rule(&self) -> Option<crate::container::cgroup::devices::Rule> {
        let typ = match self.kind {
            SFlag::S_IFCHR => 'c',
            SFlag::S_IFBLK => 'b',
            _ => return None,
        };
        let (major, minor) = (
            i64::try_from(self.major).ok(),
            i64::try_from(self.minor).ok(),
        );
        crate::container::cgroup::devices::Rule::parse(true, Some(typ), major, minor, Some("rwm"))
            .ok()
    }
}

impl Device {
    /// In a user namespace mknod is refused, so the host's node at the same path is bound
    /// instead (runc's rule): checked at `create` that it exists there as this very device
    /// (its mode and owner stay the host's).
    pub fn check_host_node(&self, index: usize) -> Result<()> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let bad = |why: String| {
            Error::Usage(format!(
                "config.json: linux.devices[{index}]: in a user namespace the host's {} is \
                 bound, and {why}",
                self.path
            ))
        };
        let meta =
            std::fs::metadata(&self.path).map_err(|e| bad(format!("it is not there: {e}")))?;
        let file_type = meta.file_type();
        let same = match self.kind {
            SFlag::S_IFCHR => file_type.is_char_device(),
            SFlag::S_IFBLK => file_type.is_block_device(),
            _ => file_type.is_fifo(),
        } && (self.kind == SFlag::S_IFIFO
            || meta.rdev() == libc::makedev(self.major as u32, self.minor as u32));
        match same {
            true => Ok(()),
            false => Err(bad("it is not that device".into())),
        }
    }
}

/// `linux.devices` → the nodes (each bad entry: one line naming it).
pub fn parse(given: &[LinuxDevice]) -> Result<Vec<Device>> {
    given
        .iter()
        .enumerate()
        .map(|(i, d)| device(&format!("linux.devices[{i}]"), d))
        .collect()
}

fn device(at: &str, given: &LinuxDevice) -> Result<Device> {
    let usage = |why: String| Error::Usage(format!("config.json: {at}: {why}"));
    let path = given.path();
    let under_dev = path.starts_with("/dev")
        && path.components().count() > 2
        && path
            .components()
            .skip(1)
            .all(|c| matches!(c, Component::Normal(_)));
    if !under_dev {
        return Err(usage(format!(
            "path {} must be below /dev/ (no ..)",
            path.display()
        )));
    }
    let kind = match given.typ() {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => return Err(usage("type a is a cgroup rule, not a node".into())),
    };
    let number =
        |what: &str, n: i64| u64::try_from(n).map_err(|_| usage(format!("{what} {n} is negative")));
    let mode = given.file_mode().unwrap_or(0o666);
    if mode > 0o7777 {
        return Err(usage(format!("fileMode {mode:o} is not a permission mode")));
    }
    Ok(Device {
        path: path.to_string_lossy().into_owned(),
        kind,
        major: number("major", given.major())?,
        minor: number("minor", given.minor())?,
        mode,
        uid: given.uid().unwrap_or(0),
        gid: given.gid().unwrap_or(0),
    })
}

/// In the init, after the root switch: make each node (replacing a non-directory already
/// there), with its mode and owner.
pub fn create_all(devices: &[Device]) -> Result<()> {
    devices.iter().try_for_each(create)
}

fn create(device: &Device) -> Result<()> {
    let path = Path::new(&device.path);
    if let Some(parent) = path.parent() {
        crate::container::rootfs::ensure_dir(parent, 0o755)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            return Err(Error::Runtime(format!(
                "linux.devices: {} is a directory",
                device.path
            )))
        }
        Ok(_) => std::fs::remove_file(path).ctx(|| format!("replace {}", device.path))?,
        Err(_) => {}
    }
    let dev = libc::makedev(device.major as u32, device.minor as u32);
    mknod(
        path,
        device.kind,
        Mode::from_bits_truncate(device.mode),
        dev,
    )
    .ctx(|| format!("mknod {}", device.path))?;
    // The umask is 0 in the init, but set bits beyond it (setuid, sticky) explicitly.
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        path,
        Mode::from_bits_truncate(device.mode),
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .ctx(|| format!("chmod {}", device.path))?;
    nix::unistd::chown(
        path,
        Some(nix::unistd::Uid::from_raw(device.uid)),
        Some(nix::unistd::Gid::from_raw(device.gid)),
    )
    .ctx(|| format!("chown {}", device.path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parsed(d: serde_json::Value) -> Result<Vec<Device>> {
        let list: Vec<LinuxDevice> = serde_json::from_value(json!([d])).unwrap();
        parse(&list)
    }

    #[test]
    fn in_a_user_namespace_the_hosts_node_must_be_that_device() {
        let null = parsed(json!({"path": "/dev/null", "type": "c", "major": 1, "minor": 3}));
        null.unwrap()[0].check_host_node(0).unwrap();
        let index = std::process::id() as usize % 9;
        for (given, needle) in [
            (
                json!({"path": "/dev/null", "type": "c", "major": 1, "minor": 5}),
                "it is not that device",
            ),
            (
                json!({"path": "/dev/null", "type": "b", "major": 1, "minor": 3}),
                "it is not that device",
            ),
            (
                json!({"path": format!("/dev/devoxx-missing-{}", std::process::id()),
                       "type": "c", "major": 1, "minor": 3}),
                "it is not there",
            ),
        ] {
            let err = parsed(given).unwrap()[0]
                .check_host_node(index)
                .unwrap_err();
            let line = err.to_string();
            assert!(
                line.starts_with(&format!(
                    "config.json: linux.devices[{index}]: in a user namespace the host's /dev/"
                )) && line.contains(needle),
                "{line}"
            );
            assert_eq!(err.exit_code(), 125);
        }
    }

    #[test]
    fn nodes_below_dev_are_taken_and_others_refused() {
        let minor = i64::from(std::process::id() % 200);
        let ok = parsed(
            json!({"path": "/dev/x/y", "type": "b", "major": 7, "minor": minor,
                               "fileMode": 0o640, "uid": 5, "gid": 6}),
        )
        .unwrap();
        assert_eq!(ok[0].path, "/dev/x/y");
        assert_eq!(
            (ok[0].kind, ok[0].minor, ok[0].mode),
            (SFlag::S_IFBLK, minor as u64, 0o640)
        );
        for (bad, needle) in [
            (
                json!({"path": "/etc/x", "type": "c", "major": 1, "minor": 3}),
                "below /dev/",
            ),
            (
                json!({"path": "/dev/../etc/x", "type": "c", "major": 1, "minor": 3}),
                "below /dev/",
            ),
            (
                json!({"path": "/dev", "type": "c", "major": 1, "minor": 3}),
                "below /dev/",
            ),
            (
                json!({"path": "/dev/x", "type": "a", "major": 1, "minor": 3}),
                "type a",
            ),
            (
                json!({"path": "/dev/x", "type": "c", "major": -1, "minor": 3}),
                "negative",
            ),
        ] {
            let err = parsed(bad).unwrap_err();
            let line = err.to_string();
            assert!(
                line.starts_with("config.json: linux.devices[0]: ") && line.contains(needle),
                "{line}"
            );
            assert_eq!(err.exit_code(), 125);
        }
    }
}
