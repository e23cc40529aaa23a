//! Step "volumes": the volume is bind-mounted — seen in the container's own mount table, a file
//! written inside is on the host and a file the host adds is visible inside *while the
//! container runs* (a runtime that copies files in and back out passes none of these) — the
//! mount lives only in the container's mount namespace, and nothing of it is left in the host's
//! mount table after exit.

use std::fs;
use std::path::Path;

use super::{fail, not_attempted, pass, verdict, with_effects, Ctx, Job};
use crate::grade::config::Volume;
use crate::grade::inspect;
use crate::grade::invoke::random_word;
use crate::grade::report::Check;

const MOUNT_HINT: &str = "step 5 (volumes): bind-mount the volume in the child, inside the new mount namespace made private (MS_REC|MS_PRIVATE on /), onto <rootfs>/<target> before the root switch";

const LEAK_HINT: &str = "step 5 (volumes): the bind mount reached the host's mount table: make / private first (syscall.Mount(\"\", \"/\", \"\", MS_REC|MS_PRIVATE, \"\")) in the child — MS_PRIVATE passed together with MS_BIND is ignored by the kernel";

const DEPENDS_ON_ROOTFS: &str = "depends on rootfs: the volume is mounted at <rootfs>/<target>, which a command run without a root switch never sees: step 3 (rootfs) comes first";

const COPY_HINT: &str = "step 5 (volumes): the files were copied, not mounted: bind-mount the volume's directory (syscall.Mount(src, target, \"\", MS_BIND, \"\")) so both sides see the same files while the container runs";

pub fn grade(ctx: &mut Ctx) -> Vec<Check> {
    let volume = match prepare(ctx) {
        Ok(v) => v,
        Err(e) => {
            return vec![fail(
                "volume-prepared",
                "the volume's host directory",
                e.to_string(),
                "check volume_source in devoxx-grade.toml",
            )]
        }
    };
    let vols = [volume.clone()];
    let inside_path = |name: &str| format!("{}/{name}", volume.target);
    let (name, text) = (format!("in-{}", random_word("")), random_word("v"));
    // The probe writes its file, then holds: everything below is seen while it runs.
    let job = Job::of(&[&["put", &inside_path(&name), &text]]).volumes(&vols);
    let hold = match ctx.hold(job) {
        Ok(hold) => hold,
        // Commands ran before, without a volume: the runtime does not take -v yet.
        Err(check) if ctx.commands_ran && check.name == "container-stays-up" => {
            return vec![not_attempted(
                "volume-mounted",
                &format!("{} mounted at {}", volume.source.display(), volume.target),
                format!("the command did not run when a volume was given: {}", check.seen),
                "step 5 (volumes): accept -v SRC:DST before the image and bind-mount SRC onto <rootfs>/DST in the child (or declare a hard-coded volume in devoxx-grade.toml)",
            )]
        }
        Err(check) => return vec![check],
    };
    let pid = hold.held.pid;
    let no_switch = super::rootfs::same_file(&format!("/proc/{pid}/root"), "/");
    let mounted = inspect::mounts(&pid.to_string())
        .into_iter()
        .any(|(_, p, _)| p == volume.target || p.ends_with(&format!("/rootfs{}", volume.target)));
    let written_during = read(&volume.source.join(&name)) == text;
    let (host_name, host_text) = (format!("host-{}", random_word("")), random_word("h"));
    let _ = fs::write(volume.source.join(&host_name), &host_text);
    // Through the container's own root and mount namespace, as the host sees them.
    let seen_inside = read(
        &Path::new(&format!("/proc/{pid}/root"))
            .join(inside_path(&host_name).trim_start_matches('/')),
    ) == host_text;
    let on_host_during = hold.host_mounts();
    let (out, fx) = hold.finish(ctx);
    let written_after = read(&volume.source.join(&name)) == text;
    let copied = !written_during && written_after;
    if !mounted && !written_during && !seen_inside && !written_after {
        return vec![with_effects(
            not_attempted(
                "volume-mounted",
                &format!("{} mounted at {}", volume.source.display(), volume.target),
                format!(
                    "no mount at the target and no file crossed; {}",
                    out.describe()
                ),
                MOUNT_HINT,
            ),
            &fx,
        )];
    }
    let hint = if copied {
        COPY_HINT
    } else if no_switch {
        DEPENDS_ON_ROOTFS
    } else {
        MOUNT_HINT
    };
    let mount_seen = verdict(
        mounted,
        "volume-mounted",
        &format!(
            "a mount at {} in the container's mount table",
            volume.target
        ),
        if mounted {
            "mounted".into()
        } else {
            "no mount there (/proc/<pid>/mountinfo)".to_owned()
        },
        hint,
    );
    let written = verdict(
        written_during,
        "written-inside-visible-on-host",
        &format!(
            "{}/{name} written inside holds {text} on the host while the container runs",
            volume.source.display()
        ),
        if written_during {
            "same content".to_owned()
        } else if copied {
            "only after the container exited (copied back)".to_owned()
        } else {
            format!("absent; {}", out.describe())
        },
        hint,
    );
    let visible = verdict(
        seen_inside,
        "host-file-visible-inside",
        &format!(
            "{} added on the host while the container runs is readable at {} inside",
            host_name,
            inside_path(&host_name)
        ),
        if seen_inside {
            "read through /proc/<pid>/root"
        } else {
            "not there"
        },
        hint,
    );
    let during = if on_host_during.is_empty() {
        pass(
            "not-in-host-mount-table",
            "the volume's mount is not in the host's mount table while the container runs",
            "absent",
        )
    } else {
        fail(
            "not-in-host-mount-table",
            "the volume's mount is not in the host's mount table while the container runs",
            format!("host gained: {}", on_host_during.join(", ")),
            LEAK_HINT,
        )
    };
    let after = if fx.volume_leaked.is_empty() {
        pass(
            "nothing-mounted-after-exit",
            "after exit, nothing of the volume in the host's mount table",
            "nothing left",
        )
    } else {
        fail(
            "nothing-mounted-after-exit",
            "after exit, nothing of the volume in the host's mount table",
            format!("left: {}", fx.volume_leaked.join(", ")),
            LEAK_HINT,
        )
    };
    vec![
        mount_seen,
        written,
        visible,
        during,
        with_effects(after, &fx),
    ]
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_default()
}

/// The volume's host directory, fresh (or the hard-coded one), and its target pre-created in
/// the image (the workshop does not ask a runtime to create mount points).
fn prepare(ctx: &mut Ctx) -> std::io::Result<Volume> {
    let volume = ctx.hard_coded_volume().unwrap_or_else(|| Volume {
        source: ctx.scratch.join(random_word("vol-")),
        target: format!("/data-{}", random_word("")),
    });
    fs::create_dir_all(&volume.source)?;
    ctx.image.add(&volume.target, None, false)?;
    ctx.add_volume_point(&volume.target);
    Ok(volume)
}
