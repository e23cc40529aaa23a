//! Fixtures for the tests of docker's run options beyond the workshop (issue 25: `user`,
//! `read_only`, `ulimit`, `cgroupns`, `no_pivot`): the standard test image with extra config
//! keys, and a run that must be refused before anything is created.

use serde_json::json;

use super::run::run;
use super::TestRoot;

/// The standard test image (busybox + probe, `PATH=/bin`, `/bin/sh`) with `extra` merged into
/// its config (`{"User": ...}`); returns its name.
pub fn image_with(root: &TestRoot, extra: serde_json::Value) -> String {
    let mut config = json!({"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]});
    if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    root.install_image(config).0
}

/// A run that must fail before anything is created: 125, one prefixed line containing `needle`.
pub fn assert_refused(root: &TestRoot, args: &[&str], needle: &str) {
    let ran = run(root, args);
    ran.assert_code(125).assert_one_error_line();
    assert!(
        ran.stderr.contains(needle),
        "{args:?}: want {needle:?} in {:?}",
        ran.stderr
    );
}
