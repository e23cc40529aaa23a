//! The parent's half: every `-v SRC:DST[:MODE]` validated before anything starts, then named
//! volumes created. Errors are `Error::Usage` (exit 125) and leave nothing created or mounted.

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use crate::error::IoContext;
use crate::{Error, Result};

/// One validated `-v SRC:DST[:MODE]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// Absolute host directory or file to bind (a named volume's directory once created).
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub target: PathBuf,
    /// `:ro`: the bind and all its submounts are read-only inside (writes fail with EROFS).
    pub read_only: bool,
}

/// Where a spec's SRC points, before anything is created on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// An existing host path, made absolute and canonical.
    Host(PathBuf),
    /// A named volume: a directory under the volumes root, created on first use.
    Named(String),
}

/// A syntactically valid spec whose named volume (if any) does not exist yet.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Spec {
    source: Source,
    target: PathBuf,
    read_only: bool,
}

/// Validate every `-v` spec in the parent, before anything is started (named volumes are
/// created here). Errors are `Error::Usage` (exit 125) and leave nothing mounted.
pub fn parse_all(specs: &[String], volumes_root: &Path) -> Result<Vec<Volume>> {
    let parsed = specs
        .iter()
        .map(|s| parse_spec(s))
        .collect::<Result<Vec<_>>>()?;
    reject_duplicate_targets(&parsed)?;
    parsed
        .into_iter()
        .map(|spec| materialize(spec, volumes_root))
        .collect()
}

/// The validated destinations of `specs`, creating nothing (for `--tmpfs`, which must not
/// clash with a volume).
pub fn targets(specs: &[String]) -> Result<Vec<PathBuf>> {
    specs
        .iter()
        .map(|s| parse_spec(s).map(|s| s.target))
        .collect()
}

fn usage(spec: &str, why: impl std::fmt::Display) -> Error {
    Error::Usage(format!("invalid volume {spec:?}: {why}"))
}

/// `SRC:DST[:MODE]` → [`Spec`]; checks syntax and host-path existence, creates nothing.
fn parse_spec(spec: &str) -> Result<Spec> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, mode) = match parts.as_slice() {
        [src, dst] => (*src, *dst, None),
        [src, dst, mode] => (*src, *dst, Some(*mode)),
        _ => return Err(usage(spec, "expected SRC:DST[:ro|:rw]")),
    };
    if src.is_empty() {
        return Err(usage(spec, "empty source"));
    }
    if dst.is_empty() {
        return Err(usage(spec, "empty destination"));
    }
    let read_only = match mode {
        None | Some("rw") => false,
        Some("ro") => true,
        Some("") => return Err(usage(spec, "empty mode (expected ro or rw)")),
        Some(other) => {
            return Err(usage(
                spec,
                format!("unknown mode {other:?} (expected ro or rw)"),
            ))
        }
    };
    Ok(Spec {
        source: parse_source(spec, src)?,
        target: parse_target(dst).map_err(|why| usage(spec, why))?,
        read_only,
    })
}

/// A host path (`/`, `./`, `../` prefix) must exist; anything else must be a volume name.
fn parse_source(spec: &str, src: &str) -> Result<Source> {
    if is_host_path(src) {
        return host_source(spec, src).map(Source::Host);
    }
    if is_volume_name(src) {
        return Ok(Source::Named(src.to_owned()));
    }
    Err(usage(
        spec,
        format!(
            "{src:?} is neither a host path (starting with /, ./ or ../) nor a volume name \
             ([A-Za-z0-9][A-Za-z0-9_.-]*)"
        ),
    ))
}

fn is_host_path(src: &str) -> bool {
    src.starts_with('/') || src.starts_with("./") || src.starts_with("../")
}

/// Docker's named-volume grammar; it also excludes `.`/`..` and any `/`.
fn is_volume_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    first_ok
        && name.len() <= 255
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Absolute and canonical, so the child binds exactly what the user meant (cwd-relative paths
/// would otherwise depend on the child's cwd).
fn host_source(spec: &str, src: &str) -> Result<PathBuf> {
    let cwd = std::env::current_dir().ctx(|| "current directory")?;
    let absolute = cwd.join(src);
    fs::canonicalize(&absolute).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => usage(
            spec,
            format!("bind source path does not exist: {}", absolute.display()),
        ),
        _ => usage(
            spec,
            format!("bind source path {}: {e}", absolute.display()),
        ),
    })
}

/// Mounted fresh by the runtime after the volumes, so a volume under them would be hidden.
const RUNTIME_MOUNTS: [&str; 3] = ["/proc", "/sys", "/dev"];

/// DST must be absolute, not `/`, not under [`RUNTIME_MOUNTS`], with no `.`/`..` component; repeated and trailing slashes are
/// normalised away so `/data` and `/data/` count as the same target.
fn parse_target(dst: &str) -> std::result::Result<PathBuf, String> {
    if !dst.starts_with('/') {
        return Err(format!("destination {dst:?} must be an absolute path"));
    }
    let mut clean = PathBuf::from("/");
    for part in dst.split('/') {
        match part {
            "" => {}
            "." | ".." => return Err(format!("destination {dst:?} must not contain {part:?}")),
            name => clean.push(name),
        }
    }
    if clean == Path::new("/") {
        return Err("destination must not be /".into());
    }
    if let Some(top) = RUNTIME_MOUNTS.iter().find(|top| clean.starts_with(top)) {
        return Err(format!(
            "destination {} is under {top}, which the runtime mounts itself (a volume there \
             would be hidden)",
            clean.display()
        ));
    }
    Ok(clean)
}

fn reject_duplicate_targets(specs: &[Spec]) -> Result<()> {
    for (i, spec) in specs.iter().enumerate() {
        if specs[..i]
            .iter()
            .any(|earlier| earlier.target == spec.target)
        {
            return Err(Error::Usage(format!(
                "duplicate volume destination {}",
                spec.target.display()
            )));
        }
    }
    Ok(())
}

/// Turn a validated spec into a [`Volume`], creating its named volume if needed.
fn materialize(spec: Spec, volumes_root: &Path) -> Result<Volume> {
    let source = match spec.source {
        Source::Host(path) => path,
        Source::Named(name) => ensure_named_volume(volumes_root, &name)?,
    };
    Ok(Volume {
        source,
        target: spec.target,
        read_only: spec.read_only,
    })
}

/// `<volumes_root>/<name>`, created 0755 on first use and kept afterwards. A symlink there is
/// refused: the volumes root is the runtime's, and a link would bind some other host path.
fn ensure_named_volume(volumes_root: &Path, name: &str) -> Result<PathBuf> {
    fs::create_dir_all(volumes_root).ctx(|| format!("create {}", volumes_root.display()))?;
    let dir = volumes_root.join(name);
    match fs::DirBuilder::new().mode(0o755).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::path("create volume", &dir, e)),
    }
    let meta = fs::symlink_metadata(&dir).ctx(|| format!("volume {}", dir.display()))?;
    if !meta.is_dir() {
        return Err(Error::Usage(format!(
            "volume {name}: {} exists and is not a directory",
            dir.display()
        )));
    }
    Ok(dir)
}

/// A random lower-case name for the tests' files and volumes.
#[cfg(test)]
pub(super) fn random_name() -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..10)
        .map(|_| rng.random_range(b'a'..=b'z') as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn strings(specs: &[&str]) -> Vec<String> {
        specs.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn host_paths_are_made_absolute_and_must_exist() {
        let here = std::env::current_dir().unwrap();
        let vols = parse_all(
            &strings(&["./src:/code:ro", "/tmp:/t"]),
            Path::new("/nonexistent"),
        )
        .unwrap();
        assert_eq!(vols[0].source, fs::canonicalize(here.join("src")).unwrap());
        assert_eq!(vols[0].target, PathBuf::from("/code"));
        assert!(vols[0].read_only);
        assert!(!vols[1].read_only);
        let missing = format!("./{}:/x", random_name());
        let err = parse_all(&[missing], Path::new("/nonexistent")).unwrap_err();
        assert!(
            matches!(err, Error::Usage(ref m) if m.contains("does not exist")),
            "{err}"
        );
    }

    #[test]
    fn named_volume_is_created_only_when_every_spec_is_valid() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("volumes");
        let name = random_name();
        let bad = parse_all(&strings(&[&format!("{name}:/a"), "x:relative"]), &root);
        assert!(matches!(bad, Err(Error::Usage(_))));
        assert!(!root.exists(), "a rejected run created {}", root.display());
        let vols = parse_all(&strings(&[&format!("{name}:/a/")]), &root).unwrap();
        assert_eq!(vols[0].source, root.join(&name));
        assert_eq!(vols[0].target, PathBuf::from("/a"));
        assert!(root.join(&name).is_dir());
    }

    #[test]
    fn named_volume_that_is_a_symlink_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let name = random_name();
        symlink("/etc", tmp.path().join(&name)).unwrap();
        let err = parse_all(&[format!("{name}:/a")], tmp.path()).unwrap_err();
        assert!(matches!(err, Error::Usage(_)), "{err}");
    }

    #[test]
    fn bad_specs_are_usage_errors() {
        let tmp = tempfile::tempdir().unwrap();
        for spec in [
            "",
            "a",
            ":/a",
            "a:",
            "a::ro",
            "a:/b:",
            "a:/b:rx",
            "a:/b:ro:x",
            "a:b",
            "a:/",
            "a://",
            "a:/b/../c",
            "a:/./b",
            "../:/..",
            "-a:/b",
            ".a:/b",
            "a/b:/c",
            "~/x:/c",
            "a b:/c",
        ] {
            let err = parse_all(&[spec.to_owned()], tmp.path()).unwrap_err();
            assert!(matches!(err, Error::Usage(_)), "{spec:?} gave {err:?}");
            assert!(
                !err.to_string().contains('\n'),
                "{spec:?}: multi-line error"
            );
        }
        let dup = parse_all(&strings(&["a:/d", "b:/d/"]), tmp.path()).unwrap_err();
        assert!(dup.to_string().contains("duplicate"), "{dup}");
        assert_eq!(
            fs::read_dir(tmp.path()).unwrap().count(),
            0,
            "something was created"
        );
    }
}
