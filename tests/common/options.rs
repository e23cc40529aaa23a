//! Fixtures for the tests of docker's run options beyond the workshop (issue 25: `user`,
//! `read_only`, `ulimit`, `cgroupns`, `no_pivot`): the standard test image with extra config
//! keys, and a run that must be refused before anything is created.

use super::run::{run, run_args, standard_config, Arranged};
use super::TestRoot;

/// The standard test image (busybox + probe, `PATH=/bin`, `/bin/sh`) with `extra` merged into
/// its config (`{"User": ...}`); returns its name.
pub fn image_with(root: &TestRoot, extra: serde_json::Value) -> String {
    root.install_image(config_with(extra)).0
}

/// The standard test image's config with `extra` merged into it.
pub fn config_with(extra: serde_json::Value) -> serde_json::Value {
    let mut config = standard_config();
    if let (Some(c), Some(e)) = (config.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    config
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

impl Arranged {
    /// `run OPTIONS IMAGE /bin/probe echo never` must be refused as [`assert_refused`] says.
    pub fn assert_refused(&self, options: &[&str], needle: &str) {
        let args = run_args(options, &self.img, &["/bin/probe", "echo", "never"]);
        assert_refused(&self.root, &args, needle);
    }
}
