//! Step "rootfs": the image's files are at `/`, a file of the host is not, and `..` cannot
//! climb out of the root (the classic chroot-without-chdir escape).

use std::fs;

use super::{fail, not_attempted, pass, with_effects, Ctx, Job};
use crate::grade::invoke::random_word;
use crate::grade::report::Check;

const ROOT_HINT: &str = "step 3 (rootfs): chroot (or pivot_root) into /fs/<image>/rootfs in the child before running the command";

pub fn grade(ctx: &mut Ctx) -> Vec<Check> {
    let (image_file, image_text) = (
        format!("grade-image-{}", random_word("")),
        random_word("img"),
    );
    let (host_file, host_text) = (
        format!("grade-host-{}", random_word("")),
        random_word("host"),
    );
    let host_path = std::path::Path::new("/").join(&host_file);
    if let Err(e) = ctx
        .image
        .add(&image_file, Some(&image_text), false)
        .and_then(|_| fs::write(&host_path, &host_text))
    {
        return vec![fail(
            "grader-setup",
            "marker files written",
            e.to_string(),
            "grader error: rerun",
        )];
    }
    let (img, fx1) = ctx.run(Job::of(&[&["cat", &format!("/{image_file}")]]));
    let (host, fx2) = ctx.run(Job::of(&[&["cat", &format!("/{host_file}")]]));
    let climb_path = format!("{}{host_file}", "../".repeat(24));
    let (climb, fx3) = ctx.run(Job::of(&[&["cat", &climb_path]]));
    let write_name = format!("/tmp/grade-write-{}", random_word(""));
    let (_, fx4) = ctx.run(Job::of(&[&["write", &write_name, "x"]]));
    let _ = fs::remove_file(&host_path);
    ctx.extra(super::verdict(
        !ctx.image.rootfs.join(write_name.trim_start_matches('/')).exists(),
        "image-unchanged-by-container",
        "a file written inside is not in the image's rootfs afterwards (copy-on-write, e.g. overlayfs)",
        "checked /fs/<image>/rootfs after a write to /tmp",
        "mount an overlayfs with the image as lowerdir and a per-container upperdir",
    ));
    let sees_image = img.stdout.contains(&image_text);
    let sees_host = host.stdout.contains(&host_text);
    let no_switch = !sees_image && sees_host;
    let file_at_root = if sees_image {
        pass(
            "image-files-at-root",
            &format!("/{image_file} of the image readable inside"),
            "read",
        )
    } else if no_switch {
        not_attempted(
            "image-files-at-root",
            "the image's files at /",
            "the host's / instead",
            ROOT_HINT,
        )
    } else {
        fail(
            "image-files-at-root",
            &format!("/{image_file} of the image readable inside"),
            img.describe(),
            ROOT_HINT,
        )
    };
    let host_hidden = if no_switch {
        not_attempted(
            "host-file-invisible",
            "a host file is not visible inside",
            "visible: no root switch",
            ROOT_HINT,
        )
    } else if sees_host {
        fail(
            "host-file-invisible",
            &format!("/{host_file} of the host invisible inside"),
            "visible",
            ROOT_HINT,
        )
    } else {
        pass(
            "host-file-invisible",
            &format!("/{host_file} of the host invisible inside"),
            "not visible",
        )
    };
    let climbs = climb.stdout.contains(&host_text);
    let no_climb = if no_switch {
        not_attempted(
            "cannot-climb-out",
            "../.. stays inside the root",
            "no root switch",
            ROOT_HINT,
        )
    } else if climbs {
        fail(
            "cannot-climb-out",
            "a path of ../../.. from the starting directory stays inside the root",
            "reached the host's files",
            "step 3 (rootfs): after chroot, chdir to \"/\" (syscall.Chdir(\"/\")): the old working directory lies outside the new root",
        )
    } else {
        pass(
            "cannot-climb-out",
            "../../.. stays inside the root",
            "host file not reached",
        )
    };
    vec![
        with_effects(file_at_root, &fx1),
        with_effects(host_hidden, &fx2),
        with_effects(with_effects(no_climb, &fx3), &fx4),
    ]
}
