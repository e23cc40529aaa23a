//! `--ulimit NAME=SOFT[:HARD]`: resource limits of the container's command (docker's names).
//!
//! Validated in the runtime before anything is created: a known name, whole numbers (or
//! `unlimited` / `-1`), soft ≤ hard, and a hard limit no higher than the runtime's own, so the
//! container never gets more than its caller could give it (and a value the kernel would refuse
//! is one clear line, exit 125, not a failed start). Because of that last rule, setting the
//! limits never needs a privilege: the container's init sets them as its very last step before
//! exec, after capabilities are dropped and the user switched, so none of the runtime's own
//! set-up (which opens files and makes mounts) runs under a tiny `nofile`.

use nix::sys::resource::{getrlimit, setrlimit, Resource, RLIM_INFINITY};

use crate::{Error, Result};

/// docker's `--ulimit` names and the resources they set.
pub const NAMES: [(&str, Resource); 15] = [
    ("core", Resource::RLIMIT_CORE),
    ("cpu", Resource::RLIMIT_CPU),
    ("data", Resource::RLIMIT_DATA),
    ("fsize", Resource::RLIMIT_FSIZE),
    ("locks", Resource::RLIMIT_LOCKS),
    ("memlock", Resource::RLIMIT_MEMLOCK),
    ("msgqueue", Resource::RLIMIT_MSGQUEUE),
    ("nice", Resource::RLIMIT_NICE),
    ("nofile", Resource::RLIMIT_NOFILE),
    ("nproc", Resource::RLIMIT_NPROC),
    ("rss", Resource::RLIMIT_RSS),
    ("rtprio", Resource::RLIMIT_RTPRIO),
    ("rttime", Resource::RLIMIT_RTTIME),
    ("sigpending", Resource::RLIMIT_SIGPENDING),
    ("stack", Resource::RLIMIT_STACK),
];

/// One resource limit for the command; `RLIM_INFINITY` is "unlimited".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub name: &'static str,
    pub resource: Resource,
    pub soft: u64,
    pub hard: u64,
}

/// Parse every `--ulimit` (a later one for the same name wins, as in docker) and check each
/// hard limit against the runtime's own (`callers_hard`, normally [`own_hard_limit`]).
pub fn parse_all(
    specs: &[String],
    callers_hard: &dyn Fn(Resource) -> Result<u64>,
) -> Result<Vec<Rlimit>> {
    let mut limits: Vec<Rlimit> = Vec::new();
    for spec in specs {
        let limit = parse(spec)?;
        let ceiling = callers_hard(limit.resource)?;
        if limit.hard > ceiling {
            return Err(Error::Usage(format!(
                "invalid --ulimit {spec:?}: hard limit {} is above the runtime's own hard limit \
                 {} for {} (a container never gets more than its caller; raise the caller's \
                 first, e.g. with ulimit -H)",
                shown(limit.hard),
                shown(ceiling),
                limit.name
            )));
        }
        limits.retain(|l| l.name != limit.name);
        limits.push(limit);
    }
    Ok(limits)
}

/// The runtime's own hard limit for `resource`.
pub fn own_hard_limit(resource: Resource) -> Result<u64> {
    getrlimit(resource)
        .map(|(_, hard)| hard)
        .map_err(|e| Error::io("getrlimit", e.into()))
}

/// `NAME=SOFT[:HARD]`; HARD defaults to SOFT.
pub fn parse(spec: &str) -> Result<Rlimit> {
    let bad = |why: String| Error::Usage(format!("invalid --ulimit {spec:?}: {why}"));
    let (name, values) = spec
        .split_once('=')
        .ok_or_else(|| bad("expected NAME=SOFT[:HARD]".into()))?;
    let (name, resource) = NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .copied()
        .ok_or_else(|| {
            let known: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
            bad(format!(
                "unknown name {name:?} (one of {})",
                known.join(", ")
            ))
        })?;
    let (soft, hard) = match values.split_once(':') {
        Some((soft, hard)) => (value(soft).map_err(&bad)?, value(hard).map_err(&bad)?),
        None => {
            let both = value(values).map_err(&bad)?;
            (both, both)
        }
    };
    if soft > hard {
        return Err(bad(format!(
            "soft limit {} is above hard limit {}",
            shown(soft),
            shown(hard)
        )));
    }
    Ok(Rlimit {
        name,
        resource,
        soft,
        hard,
    })
}

/// A whole number, or `unlimited` / `-1` (docker's spelling) for no limit.
fn value(text: &str) -> std::result::Result<u64, String> {
    match text {
        "unlimited" | "-1" => Ok(RLIM_INFINITY),
        _ if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => text
            .parse::<u64>()
            .ok()
            .filter(|&v| v < RLIM_INFINITY)
            .ok_or_else(|| format!("{text} is too large (use unlimited)")),
        _ => Err(format!("{text:?} is not a whole number, unlimited or -1")),
    }
}

fn shown(value: u64) -> String {
    match value {
        RLIM_INFINITY => "unlimited".into(),
        v => v.to_string(),
    }
}

/// In the container's init, right before exec: every limit is within the inherited hard one
/// (checked by [`parse_all`]), so this needs no privilege.
pub fn apply(limits: &[Rlimit]) -> Result<()> {
    for limit in limits {
        setrlimit(limit.resource, limit.soft, limit.hard).map_err(|e| {
            Error::io(
                format!(
                    "setrlimit {} {}:{}",
                    limit.name,
                    shown(limit.soft),
                    shown(limit.hard)
                ),
                e.into(),
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ceiling(hard: u64) -> impl Fn(Resource) -> Result<u64> {
        move |_| Ok(hard)
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn names_values_and_defaults() {
        let soft = 100 + u64::from(std::process::id() % 900);
        let l = parse(&format!("nofile={soft}:{}", soft * 2)).unwrap();
        assert_eq!(
            (l.name, l.resource, l.soft, l.hard),
            ("nofile", Resource::RLIMIT_NOFILE, soft, soft * 2)
        );
        let l = parse(&format!("nproc={soft}")).unwrap();
        assert_eq!((l.soft, l.hard), (soft, soft), "HARD defaults to SOFT");
        let l = parse("core=0:unlimited").unwrap();
        assert_eq!((l.soft, l.hard), (0, RLIM_INFINITY));
        assert_eq!(parse("stack=-1").unwrap().soft, RLIM_INFINITY);
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for bad in [
            "nofile",
            "nofile=",
            "nofiles=10",
            "NOFILE=10",
            "nofile=ten",
            "nofile=10:",
            "nofile=:10",
            "nofile=20:10",
            "nofile=1.5",
            "nofile=-2",
            "nofile=18446744073709551615",
            "nofile=99999999999999999999",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(matches!(err, Error::Usage(_)), "{bad}: {err}");
            assert!(err.to_string().starts_with("invalid --ulimit"), "{err}");
        }
    }

    #[test]
    fn hard_limits_stop_at_the_callers() {
        let max = 4096;
        assert!(parse_all(&strings(&["nofile=10:4096"]), &ceiling(max)).is_ok());
        let err = parse_all(&strings(&["nofile=10:4097"]), &ceiling(max)).unwrap_err();
        assert!(
            err.to_string()
                .contains("above the runtime's own hard limit 4096"),
            "{err}"
        );
        let err = parse_all(&strings(&["core=unlimited"]), &ceiling(max)).unwrap_err();
        assert!(err.to_string().contains("hard limit unlimited"), "{err}");
        assert!(parse_all(&strings(&["core=unlimited"]), &ceiling(RLIM_INFINITY)).is_ok());
    }

    #[test]
    fn a_later_value_for_a_name_wins() {
        let all = parse_all(
            &strings(&["nofile=10", "core=1", "nofile=20:30"]),
            &ceiling(RLIM_INFINITY),
        )
        .unwrap();
        assert_eq!(all.len(), 2);
        let nofile = all.iter().find(|l| l.name == "nofile").unwrap();
        assert_eq!((nofile.soft, nofile.hard), (20, 30));
    }
}
