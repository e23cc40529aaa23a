//! One test per extraction rule and per escape attempt. Each hostile case runs with a sibling
//! `outside/` directory (reachable as `../outside` and by its absolute host path) holding a
//! random sentinel, and checks it is byte-for-byte untouched afterwards.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::*;

/// A scratch dir with `rootfs/` and `outside/` (with a random sentinel).
struct Scratch {
    dir: tempfile::TempDir,
    sentinel: String,
}

impl Scratch {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("rootfs")).unwrap();
        fs::create_dir(dir.path().join("outside")).unwrap();
        let sentinel = format!("sentinel-{}", rand::random::<u64>());
        fs::write(dir.path().join("outside/secret"), &sentinel).unwrap();
        Scratch { dir, sentinel }
    }
    fn rootfs(&self) -> PathBuf {
        self.dir.path().join("rootfs")
    }
    fn outside(&self) -> PathBuf {
        self.dir.path().join("outside")
    }
    fn apply(&self, tar: Vec<u8>) -> Result<LayerStats> {
        let root = open_root(&self.rootfs())?;
        apply_layer(root.as_fd(), &tar[..])
    }
    /// The outside dir holds exactly the sentinel, unchanged, with one link; the parent holds
    /// only rootfs/ and outside/.
    fn assert_outside_untouched(&self) {
        let names: Vec<_> = fs::read_dir(self.outside())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("secret")],
            "outside/ gained entries"
        );
        let secret = self.outside().join("secret");
        assert_eq!(fs::read_to_string(&secret).unwrap(), self.sentinel);
        assert_eq!(
            fs::symlink_metadata(&secret).unwrap().nlink(),
            1,
            "secret was hard-linked"
        );
        let mut top: Vec<_> = fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        top.sort();
        assert_eq!(top, ["outside", "rootfs"]);
    }
}

/// Builds layer tars, including raw hostile names the tar crate's own setters refuse.
#[derive(Default)]
struct Tar {
    b: Option<tar::Builder<Vec<u8>>>,
}

impl Tar {
    fn new() -> Self {
        Tar {
            b: Some(tar::Builder::new(Vec::new())),
        }
    }
    fn entry(
        mut self,
        name: &str,
        kind: tar::EntryType,
        mode: u32,
        link: Option<&str>,
        data: &[u8],
    ) -> Self {
        let mut h = tar::Header::new_gnu();
        let raw = &mut h.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(link) = link {
            let raw = &mut h.as_old_mut().linkname;
            raw[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.b.as_mut().unwrap().append(&h, data).unwrap();
        self
    }
    fn dir(self, name: &str) -> Self {
        self.entry(name, tar::EntryType::Directory, 0o755, None, b"")
    }
    fn file(self, name: &str, data: &str) -> Self {
        self.entry(name, tar::EntryType::Regular, 0o644, None, data.as_bytes())
    }
    fn symlink(self, name: &str, target: &str) -> Self {
        self.entry(name, tar::EntryType::Symlink, 0o777, Some(target), b"")
    }
    fn hardlink(self, name: &str, target: &str) -> Self {
        self.entry(name, tar::EntryType::Link, 0o644, Some(target), b"")
    }
    fn build(mut self) -> Vec<u8> {
        self.b.take().unwrap().into_inner().unwrap()
    }
}

fn random() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Relative path → (kind, content or link target) for every entry under `root`.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let md = fs::symlink_metadata(&p).unwrap();
            let v = if md.is_dir() {
                walk(root, &p, out);
                "dir".to_owned()
            } else if md.file_type().is_symlink() {
                format!("-> {}", fs::read_link(&p).unwrap().display())
            } else {
                format!("file {}", fs::read_to_string(&p).unwrap_or_default())
            };
            out.insert(rel, v);
        }
    }
    walk(root, root, &mut out);
    out
}

#[test]
fn files_dirs_and_modes_incl_setuid_and_owner() {
    let s = Scratch::new();
    let content = random();
    let tar = Tar::new()
        .dir("usr/")
        .entry(
            "usr/bin/su",
            tar::EntryType::Regular,
            0o4755,
            None,
            content.as_bytes(),
        )
        .entry("ro/", tar::EntryType::Directory, 0o555, None, b"")
        .entry("tmp/", tar::EntryType::Directory, 0o1777, None, b"")
        .build();
    let stats = s.apply(tar).unwrap();
    assert_eq!(stats.bytes, content.len() as u64);
    let su = fs::metadata(s.rootfs().join("usr/bin/su")).unwrap();
    assert_eq!(su.permissions().mode() & 0o7777, 0o4755);
    assert_eq!(
        fs::read_to_string(s.rootfs().join("usr/bin/su")).unwrap(),
        content
    );
    assert_eq!(su.mtime(), 1_700_000_000);
    assert_eq!(
        fs::metadata(s.rootfs().join("ro"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o555
    );
    assert_eq!(
        fs::metadata(s.rootfs().join("tmp"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o1777
    );
    // Implicit parent (usr/bin) gets 0755.
    assert_eq!(
        fs::metadata(s.rootfs().join("usr/bin"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o755
    );
}

#[test]
fn ownership_is_preserved_as_root() {
    if !is_root() {
        eprintln!("SKIPPED ownership_is_preserved_as_root: needs root");
        return;
    }
    let s = Scratch::new();
    let uid = 1000 + (rand::random::<u32>() % 50_000);
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_path("owned").unwrap();
    h.set_mode(0o2750);
    h.set_uid(uid as u64);
    h.set_gid(uid as u64 + 1);
    h.set_size(1);
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
    s.apply(b.into_inner().unwrap()).unwrap();
    let md = fs::metadata(s.rootfs().join("owned")).unwrap();
    assert_eq!((md.uid(), md.gid()), (uid, uid + 1));
    assert_eq!(
        md.permissions().mode() & 0o7777,
        0o2750,
        "setgid survives chown"
    );
}

#[test]
fn symlinks_and_hardlinks_are_recreated() {
    let s = Scratch::new();
    let content = random();
    let tar = Tar::new()
        .file("bin/busybox", &content)
        .symlink("bin/sh", "busybox")
        .symlink("abs", "/bin/busybox")
        .hardlink("bin/ls", "bin/busybox")
        .hardlink("bin/cat", "/bin/busybox")
        .build();
    s.apply(tar).unwrap();
    let r = s.rootfs();
    assert_eq!(
        fs::read_link(r.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        fs::read_link(r.join("abs")).unwrap(),
        Path::new("/bin/busybox")
    );
    let ino = fs::metadata(r.join("bin/busybox")).unwrap().ino();
    assert_eq!(fs::metadata(r.join("bin/ls")).unwrap().ino(), ino);
    assert_eq!(fs::metadata(r.join("bin/cat")).unwrap().ino(), ino);
    assert_eq!(fs::metadata(r.join("bin/busybox")).unwrap().nlink(), 3);
}

#[test]
fn fifos_and_devices_when_possible() {
    let s = Scratch::new();
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, major, minor) in [
        ("dev/fifo", tar::EntryType::Fifo, 0, 0),
        ("dev/null", tar::EntryType::Char, 1, 3),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_entry_type(kind);
        h.set_mode(0o640);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        h.set_size(0);
        h.set_cksum();
        b.append(&h, &b""[..]).unwrap();
    }
    let stats = s.apply(b.into_inner().unwrap()).unwrap();
    let fifo = fs::symlink_metadata(s.rootfs().join("dev/fifo")).unwrap();
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.permissions().mode() & 0o7777, 0o640);
    match fs::symlink_metadata(s.rootfs().join("dev/null")) {
        Ok(md) => {
            assert!(md.file_type().is_char_device());
            assert_eq!(md.rdev(), rustix::fs::makedev(1, 3));
        }
        Err(_) => assert_eq!(
            stats.skipped_devices, 1,
            "a device may only be skipped, and counted"
        ),
    }
}

#[test]
fn whiteout_deletes_lower_file_and_dir() {
    let s = Scratch::new();
    s.apply(
        Tar::new()
            .file("a/x", "1")
            .file("a/y", "2")
            .file("b/z", "3")
            .build(),
    )
    .unwrap();
    s.apply(
        Tar::new()
            .file("a/.wh.x", "")
            .file(".wh.b", "")
            .file(".wh.absent", "")
            .build(),
    )
    .unwrap();
    let t = tree(&s.rootfs());
    assert_eq!(
        t.keys().cloned().collect::<Vec<_>>(),
        ["a", "a/y"],
        "whiteouts applied and never materialised: {t:?}"
    );
}

#[test]
fn whiteout_never_removes_what_the_same_layer_adds() {
    let s = Scratch::new();
    let (c1, c2) = (random(), random());
    s.apply(Tar::new().file("n/lower", "l").file("f", "old").build())
        .unwrap();
    // Whiteouts come AFTER the same layer re-adds those names.
    let tar = Tar::new()
        .file("n/new", &c1)
        .file("f", &c2)
        .file(".wh.n", "")
        .file(".wh.f", "")
        .build();
    s.apply(tar).unwrap();
    let t = tree(&s.rootfs());
    assert_eq!(t.get("n/new"), Some(&format!("file {c1}")));
    assert_eq!(t.get("f"), Some(&format!("file {c2}")));
    assert!(
        !t.contains_key("n/lower"),
        "lower child of a whited-out dir must go: {t:?}"
    );
}

#[test]
fn opaque_dir_hides_lower_children_wherever_the_marker_sits() {
    for marker_first in [true, false] {
        let s = Scratch::new();
        let new = random();
        s.apply(
            Tar::new()
                .file("o/old", "1")
                .file("o/sub/old2", "2")
                .file("keep/k", "3")
                .build(),
        )
        .unwrap();
        let mut t = Tar::new().dir("o/");
        if marker_first {
            t = t.file("o/.wh..wh..opq", "");
        }
        t = t.file("o/new", &new).file("o/sub/fresh", &new);
        if !marker_first {
            t = t.file("zzz", "after").file("o/.wh..wh..opq", "");
        }
        s.apply(t.build()).unwrap();
        let got = tree(&s.rootfs());
        assert_eq!(got.get("o/new"), Some(&format!("file {new}")), "{got:?}");
        assert_eq!(
            got.get("o/sub/fresh"),
            Some(&format!("file {new}")),
            "{got:?}"
        );
        assert!(
            !got.contains_key("o/old") && !got.contains_key("o/sub/old2"),
            "{got:?}"
        );
        assert!(!got.keys().any(|k| k.contains(".wh.")), "{got:?}");
        assert_eq!(got.get("keep/k").map(String::as_str), Some("file 3"));
    }
}

#[test]
fn later_entries_replace_earlier_ones_of_another_type() {
    let s = Scratch::new();
    s.apply(
        Tar::new()
            .file("a", "file")
            .dir("b/")
            .file("b/inner", "x")
            .symlink("c", "a")
            .build(),
    )
    .unwrap();
    let v = random();
    s.apply(Tar::new().dir("a/").file("b", &v).file("c", &v).build())
        .unwrap();
    let t = tree(&s.rootfs());
    assert_eq!(t.get("a").map(String::as_str), Some("dir"));
    assert_eq!(t.get("b"), Some(&format!("file {v}")));
    assert_eq!(t.get("c"), Some(&format!("file {v}")));
    assert!(!t.contains_key("b/inner"));
}

// ---- escapes: each is refused or contained, and the host is untouched ----

#[test]
fn dotdot_entries_are_refused() {
    for name in [
        "../outside/pwn",
        "a/../../outside/pwn",
        "./../outside/secret",
    ] {
        let s = Scratch::new();
        let err = s.apply(Tar::new().file(name, "pwned").build()).unwrap_err();
        assert!(err.to_string().contains("hostile layer"), "{name}: {err}");
        s.assert_outside_untouched();
    }
}

#[test]
fn absolute_entry_names_land_inside() {
    let s = Scratch::new();
    let abs = format!("{}/pwn", s.outside().display());
    s.apply(
        Tar::new()
            .file(&abs, "x")
            .file("/etc/issue", "inside")
            .build(),
    )
    .unwrap();
    s.assert_outside_untouched();
    let inside = s.rootfs().join(abs.trim_start_matches('/'));
    assert_eq!(fs::read_to_string(inside).unwrap(), "x");
    assert_eq!(
        fs::read_to_string(s.rootfs().join("etc/issue")).unwrap(),
        "inside"
    );
}

#[test]
fn symlink_then_write_stays_inside() {
    let abs_outside = |s: &Scratch| s.outside().display().to_string();
    for target in ["../outside", "../../outside", "/"] {
        for (late_dir, via) in [(false, "esc/secret"), (true, "esc/new")] {
            let s = Scratch::new();
            let target = if target == "/" {
                abs_outside(&s)
            } else {
                target.to_owned()
            };
            let mut t = Tar::new();
            if late_dir {
                // Make the symlink's target exist inside the rootfs so the write succeeds there.
                t = t.dir(&format!(
                    "{}/",
                    target
                        .trim_start_matches('/')
                        .trim_start_matches("../")
                        .trim_start_matches("../")
                ));
            }
            let _ = s.apply(t.symlink("esc", &target).file(via, "pwned").build());
            s.assert_outside_untouched();
        }
    }
    // The contained case: the write lands inside the rootfs at the symlink's in-root meaning.
    let s = Scratch::new();
    let abs = abs_outside(&s);
    s.apply(
        Tar::new()
            .dir(&format!("{abs}/"))
            .symlink("esc", &abs)
            .file("esc/secret", "pwned")
            .build(),
    )
    .unwrap();
    s.assert_outside_untouched();
    let inside = s.rootfs().join(abs.trim_start_matches('/')).join("secret");
    assert_eq!(fs::read_to_string(inside).unwrap(), "pwned");
}

#[test]
fn hardlink_to_outside_is_refused() {
    let s0 = Scratch::new();
    let abs_secret = s0.outside().join("secret").display().to_string();
    for tar in [
        Tar::new().hardlink("h", "../outside/secret"),
        Tar::new().hardlink("h", &abs_secret),
        Tar::new()
            .symlink("sym", "../outside")
            .hardlink("h", "sym/secret"),
    ] {
        let _ = s0.apply(tar.build());
        s0.assert_outside_untouched();
    }
    // Absolute-path hardlinks resolve inside: the in-root file of that name is linked.
    let s = Scratch::new();
    let abs = s.outside().join("secret").display().to_string();
    s.apply(Tar::new().file(&abs, "inner").hardlink("h", &abs).build())
        .unwrap();
    s.assert_outside_untouched();
    assert_eq!(fs::read_to_string(s.rootfs().join("h")).unwrap(), "inner");
}

#[test]
fn directory_swapped_for_symlink_stays_inside() {
    let s = Scratch::new();
    s.apply(Tar::new().dir("d/").file("d/f", "lower").build())
        .unwrap();
    let swap = Tar::new()
        .symlink("d", &s.outside().display().to_string())
        .file("d/secret", "pwned")
        .file("d/new", "pwned")
        .build();
    let _ = s.apply(swap);
    s.assert_outside_untouched();
    assert!(fs::symlink_metadata(s.rootfs().join("d"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn file_replacing_a_symlink_does_not_write_through_it() {
    let s = Scratch::new();
    let abs_secret = s.outside().join("secret").display().to_string();
    s.apply(
        Tar::new()
            .symlink("s", &abs_secret)
            .symlink("r", "../outside/secret")
            .build(),
    )
    .unwrap();
    s.apply(Tar::new().file("s", "pwned").file("r", "pwned").build())
        .unwrap();
    s.assert_outside_untouched();
    assert_eq!(fs::read_to_string(s.rootfs().join("s")).unwrap(), "pwned");
    assert!(fs::symlink_metadata(s.rootfs().join("r"))
        .unwrap()
        .is_file());
}

#[test]
fn whiteouts_through_symlinks_stay_inside() {
    let s = Scratch::new();
    let abs = s.outside().display().to_string();
    s.apply(
        Tar::new()
            .symlink("l", &abs)
            .symlink("r", "../outside")
            .build(),
    )
    .unwrap();
    for tar in [
        Tar::new().file("l/.wh.secret", ""),
        Tar::new().file("r/.wh.secret", ""),
        Tar::new().file("l/.wh..wh..opq", ""),
        Tar::new().file("r/.wh..wh..opq", ""),
        Tar::new().file("../outside/.wh.secret", ""),
    ] {
        let _ = s.apply(tar.build());
        s.assert_outside_untouched();
    }
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let s = Scratch::new();
    let mut junk = vec![0u8; 1024];
    junk[..5].copy_from_slice(b"hello");
    junk[100..108].copy_from_slice(b"garbage!");
    assert!(s.apply(junk).is_err());
    s.assert_outside_untouched();
}

/// A PAX extended header (`x`) carrying `records` for the entry that follows it.
fn append_pax(b: &mut tar::Builder<Vec<u8>>, records: &[(&str, &[u8])]) {
    let mut data = Vec::new();
    for (key, value) in records {
        let body_len = key.len() + value.len() + 3; // ' ', '=', '\n'
        let mut len = body_len + 1;
        while len != body_len + len.to_string().len() {
            len = body_len + len.to_string().len();
        }
        data.extend_from_slice(format!("{len} {key}=").as_bytes());
        data.extend_from_slice(value);
        data.push(b'\n');
    }
    let mut h = tar::Header::new_ustar();
    h.set_path("PaxHeaders/x").unwrap();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, &data[..]).unwrap();
}

fn file_header(name: &str, mode: u32, uid: u64, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_path(name).unwrap();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(uid);
    h.set_size(size);
    h.set_cksum();
    h
}

/// `cap_net_raw+ep` as a VFS_CAP_REVISION_2 `security.capability` value.
fn cap_net_raw_ep() -> Vec<u8> {
    [0x0200_0001u32, 1 << 13, 0, 0, 0]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect()
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    let n = rustix::fs::lgetxattr(path, name, &mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// chown clears `security.capability`: file capabilities (ping's cap_net_raw...) and the other
/// xattrs of a layer must be set after it, and overlayfs's own attributes never.
#[test]
fn file_capabilities_and_xattrs_survive_the_owner_change() {
    if !is_root() {
        eprintln!("SKIPPED file_capabilities_and_xattrs_survive_the_owner_change: needs root");
        return;
    }
    let s = Scratch::new();
    let (uid, value) = (1000 + u64::from(rand::random::<u16>()), random());
    let key = format!("trusted.devoxx-{}", random());
    let mut b = tar::Builder::new(Vec::new());
    append_pax(
        &mut b,
        &[
            ("SCHILY.xattr.security.capability", &cap_net_raw_ep()),
            (&format!("SCHILY.xattr.{key}"), value.as_bytes()),
        ],
    );
    b.append(&file_header("bin/ping", 0o755, uid, 2), &b"#!"[..])
        .unwrap();
    append_pax(
        &mut b,
        &[
            ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
            (&format!("SCHILY.xattr.{key}"), value.as_bytes()),
        ],
    );
    let mut dir = tar::Header::new_gnu();
    dir.set_path("opaque/").unwrap();
    dir.set_entry_type(tar::EntryType::Directory);
    dir.set_mode(0o755);
    dir.set_uid(uid);
    dir.set_size(0);
    dir.set_cksum();
    b.append(&dir, &b""[..]).unwrap();
    s.apply(b.into_inner().unwrap()).unwrap();

    let ping = s.rootfs().join("bin/ping");
    assert_eq!(fs::metadata(&ping).unwrap().uid() as u64, uid);
    assert_eq!(
        xattr(&ping, "security.capability"),
        Some(cap_net_raw_ep()),
        "the file capability was lost"
    );
    assert_eq!(xattr(&ping, &key), Some(value.clone().into_bytes()));
    let opaque = s.rootfs().join("opaque");
    assert_eq!(xattr(&opaque, &key), Some(value.into_bytes()));
    assert_eq!(xattr(&opaque, "trusted.overlay.opaque"), None);
}

/// An owner that does not parse, or does not fit a Linux id, is a broken layer: never root.
#[test]
fn malformed_owner_is_an_error_not_root() {
    let garbage_uid = {
        let mut h = file_header("f", 0o644, 1000, 1);
        h.as_gnu_mut().unwrap().uid = *b"zz1000z\0";
        h.set_cksum();
        h
    };
    let huge_uid = file_header("f", 0o644, 1 << 32, 1);
    for (what, header, pax) in [
        ("garbage uid field", garbage_uid, None),
        ("uid 2^32", huge_uid, None),
        (
            "garbage PAX uid",
            file_header("f", 0o644, 1000, 1),
            Some(b"10x0".as_slice()),
        ),
    ] {
        let s = Scratch::new();
        let mut b = tar::Builder::new(Vec::new());
        if let Some(uid) = pax {
            append_pax(&mut b, &[("uid", uid)]);
        }
        b.append(&header, &b"x"[..]).unwrap();
        let err = match s.apply(b.into_inner().unwrap()) {
            Ok(_) => panic!(
                "{what}: accepted (owner {:?})",
                fs::metadata(s.rootfs().join("f")).map(|m| m.uid())
            ),
            Err(e) => e,
        };
        assert!(err.to_string().contains("malformed"), "{what}: {err}");
        assert!(
            !s.rootfs().join("f").exists(),
            "{what}: the file was created"
        );
    }
}
