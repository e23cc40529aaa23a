//! Which `config.json` fields this runtime implements. A typed parse (oci-spec) would drop a
//! field it does not know and we would silently not do what the config asks, so the raw JSON
//! is first walked against this allow-list: any other field that carries a value is refused
//! with one line naming it (`linux.intelRdt is not supported`). Values are checked later, by
//! the translation ([`super::bundle`]).

use serde_json::Value;

use crate::{Error, Result};

/// The shape of the supported part of the config.
#[derive(Debug)]
enum Node {
    /// A value taken as a whole (checked by the translation).
    Leaf,
    /// An object with these keys only.
    Object(&'static [(&'static str, Node)]),
    /// An array of elements of this shape.
    Array(&'static Node),
}

use Node::{Array, Leaf, Object};

const USER: Node = Object(&[
    ("uid", Leaf),
    ("gid", Leaf),
    ("umask", Leaf),
    ("additionalGids", Leaf),
]);

const CAPABILITIES: Node = Object(&[
    ("bounding", Leaf),
    ("effective", Leaf),
    ("inheritable", Leaf),
    ("permitted", Leaf),
    ("ambient", Leaf),
]);

const RLIMIT: Node = Object(&[("type", Leaf), ("hard", Leaf), ("soft", Leaf)]);

const PROCESS: Node = Object(&[
    ("terminal", Leaf),
    ("user", USER),
    ("args", Leaf),
    ("env", Leaf),
    ("cwd", Leaf),
    ("capabilities", CAPABILITIES),
    ("rlimits", Array(&RLIMIT)),
    ("noNewPrivileges", Leaf),
    ("oomScoreAdj", Leaf),
]);

const MOUNT: Node = Object(&[
    ("destination", Leaf),
    ("type", Leaf),
    ("source", Leaf),
    ("options", Leaf),
]);

const NAMESPACE: Node = Object(&[("type", Leaf), ("path", Leaf)]);

const DEVICE_RULE: Node = Object(&[
    ("allow", Leaf),
    ("type", Leaf),
    ("major", Leaf),
    ("minor", Leaf),
    ("access", Leaf),
]);

const RESOURCES: Node = Object(&[
    (
        "memory",
        Object(&[("limit", Leaf), ("swap", Leaf), ("disableOOMKiller", Leaf)]),
    ),
    (
        "cpu",
        Object(&[
            ("quota", Leaf),
            ("period", Leaf),
            ("shares", Leaf),
            ("cpus", Leaf),
            ("mems", Leaf),
        ]),
    ),
    ("pids", Object(&[("limit", Leaf)])),
    ("devices", Array(&DEVICE_RULE)),
]);

const DEVICE: Node = Object(&[
    ("path", Leaf),
    ("type", Leaf),
    ("major", Leaf),
    ("minor", Leaf),
    ("fileMode", Leaf),
    ("uid", Leaf),
    ("gid", Leaf),
]);

const ID_MAPPING: Node = Object(&[("containerID", Leaf), ("hostID", Leaf), ("size", Leaf)]);

const SYSCALL: Node = Object(&[
    ("names", Leaf),
    ("action", Leaf),
    ("errnoRet", Leaf),
    ("args", Leaf),
]);

const SECCOMP: Node = Object(&[
    ("defaultAction", Leaf),
    ("defaultErrnoRet", Leaf),
    ("architectures", Leaf),
    ("flags", Leaf),
    ("syscalls", Array(&SYSCALL)),
]);

const LINUX: Node = Object(&[
    ("namespaces", Array(&NAMESPACE)),
    ("resources", RESOURCES),
    ("cgroupsPath", Leaf),
    ("maskedPaths", Leaf),
    ("readonlyPaths", Leaf),
    ("rootfsPropagation", Leaf),
    ("seccomp", SECCOMP),
    ("sysctl", Leaf),
    ("devices", Array(&DEVICE)),
    ("uidMappings", Array(&ID_MAPPING)),
    ("gidMappings", Array(&ID_MAPPING)),
]);

const HOOK: Node = Object(&[
    ("path", Leaf),
    ("args", Leaf),
    ("env", Leaf),
    ("timeout", Leaf),
]);

const HOOKS: Node = Object(&[
    ("prestart", Array(&HOOK)),
    ("createRuntime", Array(&HOOK)),
    ("createContainer", Array(&HOOK)),
    ("startContainer", Array(&HOOK)),
    ("poststart", Array(&HOOK)),
    ("poststop", Array(&HOOK)),
]);

const CONFIG: Node = Object(&[
    ("ociVersion", Leaf),
    ("root", Object(&[("path", Leaf), ("readonly", Leaf)])),
    ("mounts", Array(&MOUNT)),
    ("process", PROCESS),
    ("hostname", Leaf),
    ("annotations", Leaf),
    ("linux", LINUX),
    ("hooks", HOOKS),
]);

/// The top-level properties the spec defines (1.1, and 1.2's `freebsd`): any other is an
/// extension the spec says a runtime MUST ignore, not refuse (config.md, "Extensibility").
const SPEC_PROPERTIES: [&str; 14] = [
    "ociVersion",
    "root",
    "mounts",
    "process",
    "hostname",
    "domainname",
    "hooks",
    "annotations",
    "linux",
    "solaris",
    "windows",
    "vm",
    "zos",
    "freebsd",
];

/// Refuse the first field of `config` that carries a value and is not implemented; top-level
/// properties the spec does not define are ignored, as it requires.
pub fn check(config: &Value) -> Result<()> {
    let mut defined = config.clone();
    if let Value::Object(map) = &mut defined {
        map.retain(|key, _| SPEC_PROPERTIES.contains(&key.as_str()));
    }
    walk(&CONFIG, &defined, "")
}

/// The same for `exec --process FILE` (a `process` object on its own).
pub fn check_process(process: &Value) -> Result<()> {
    walk(&PROCESS, process, "process")
}

fn walk(node: &Node, value: &Value, at: &str) -> Result<()> {
    match (node, value) {
        (Leaf, _) => Ok(()),
        (Object(keys), Value::Object(map)) => {
            for (key, child) in map {
                let path = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{at}.{key}")
                };
                match keys.iter().find(|(k, _)| k == key) {
                    Some((_, shape)) => walk(shape, child, &path)?,
                    None if is_empty(child) => {}
                    None => return Err(unsupported(&path)),
                }
            }
            Ok(())
        }
        (Array(element), Value::Array(items)) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| walk(element, item, &format!("{at}[{i}]"))),
        // A wrong type is the typed parse's error to report.
        _ => Ok(()),
    }
}

/// A field that asks for nothing: null, false, "", [] or {} (every OCI default).
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(_) => false,
    }
}

/// The one line for a field this runtime does not implement.
pub fn unsupported(path: &str) -> Error {
    Error::Usage(format!("config.json: {path} is not supported"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn supported_fields_pass_and_empty_unknown_ones_are_absent() {
        let config = json!({
            "ociVersion": "1.1.0",
            "root": {"path": "rootfs", "readonly": true},
            "process": {"args": ["sh"], "cwd": "/", "apparmorProfile": "", "user": {"uid": 0, "gid": 0}},
            "linux": {"namespaces": [{"type": "pid"}], "sysctl": {}, "resources": {"memory": {"limit": 1}}},
            "hooks": null,
        });
        check(&config).unwrap();
    }

    #[test]
    fn top_level_properties_the_spec_does_not_define_are_ignored() {
        let key = format!("org.example.x{}", std::process::id());
        check(&json!({"ociVersion": "1.1.0", key.clone(): {"anything": [1, 2]}})).unwrap();
        let err = check(&json!({key: 1, "domainname": "d"})).unwrap_err();
        assert_eq!(err.to_string(), "config.json: domainname is not supported");
    }

    #[test]
    fn the_first_unsupported_field_is_named_with_its_path() {
        let n = (std::process::id() % 5) as usize;
        let mut mounts = vec![json!({"destination": "/x", "type": "tmpfs"}); n + 1];
        mounts[n] = json!({"destination": "/x", "uidMappings": [{"size": 1}]});
        for (config, path) in [
            (
                json!({"linux": {"intelRdt": {"closID": "x"}}}),
                "linux.intelRdt".to_owned(),
            ),
            (
                json!({"process": {"terminal": false, "apparmorProfile": "p"}}),
                "process.apparmorProfile".to_owned(),
            ),
            (
                json!({"linux": {"resources": {"memory": {"reservation": 5}}}}),
                "linux.resources.memory.reservation".to_owned(),
            ),
            (
                json!({"mounts": mounts}),
                format!("mounts[{n}].uidMappings"),
            ),
            (
                json!({"hooks": {"prestart": [{"path": "/bin/true", "uid": 1}]}}),
                "hooks.prestart[0].uid".to_owned(),
            ),
        ] {
            let err = check(&config).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("config.json: {path} is not supported")
            );
            assert_eq!(err.exit_code(), 125);
        }
    }
}
