//! Step "volumes": a file written inside appears on the host, a host file is visible inside,
//! the bind mount lives only in the container's mount namespace, and nothing of it is left
//! in the host's mount table after exit.

use std::fs;

use super::{fail, not_attempted, pass, verdict, with_effects, Ctx};
use crate::grade::config::Volume;
use crate::grade::inspect;
use crate::grade::invoke::random_word;
use crate::grade::report::Check;

const MOUNT_HINT: &str = "step 5 (volumes): bind-mount the volume in the child, inside the new mount namespace made private (MS_REC|MS_PRIVATE on /), onto <rootfs>/<target> before the root switch";

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
    // 1. While a container holds the volume: mounted inside, not in the host's table.
    let hold = match ctx.hold(&vols) {
        Ok(hold) => hold,
        Err(check) => return vec![check],
    };
    let held = &hold.held;
    let inside = inspect::mounts(&held.pid.to_string())
        .into_iter()
        .any(|(_, p, _)| p == volume.target || p.ends_with(&format!("/rootfs{}", volume.target)));
    let on_host_during = ctx.leaked_mounts();
    let (_, fx_hold) = hold.finish(ctx);
    // 2. Inside → host, 3. host → inside.
    let (name, text) = (format!("in-{}", random_word("")), random_word("v"));
    let (wrote, fx_w) = ctx.run(
        &["write", &format!("{}/{name}", volume.target), &text],
        &vols,
        None,
    );
    let on_host = fs::read_to_string(volume.source.join(&name)).unwrap_or_default();
    let (host_name, host_text) = (format!("host-{}", random_word("")), random_word("h"));
    let _ = fs::write(volume.source.join(&host_name), &host_text);
    let (read, fx_r) = ctx.run(
        &["cat", &format!("{}/{host_name}", volume.target)],
        &vols,
        None,
    );
    let seen_inside = read.stdout.contains(&host_text);
    let written = on_host == text;
    if !inside && !written && !seen_inside {
        return vec![not_attempted(
            "volume-mounted",
            &format!("{} mounted at {}", volume.source.display(), volume.target),
            "no mount at the target and no file crossed",
            MOUNT_HINT,
        )];
    }
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
            MOUNT_HINT,
        )
    };
    vec![
        with_effects(
            verdict(
                written,
                "written-inside-visible-on-host",
                &format!(
                    "{}/{name} written inside holds {text} on the host",
                    volume.source.display()
                ),
                if written {
                    "same content".into()
                } else {
                    format!("{on_host:?}; {}", wrote.describe())
                },
                MOUNT_HINT,
            ),
            &fx_w,
        ),
        with_effects(
            verdict(
                seen_inside,
                "host-file-visible-inside",
                &format!("{}/{host_name} readable inside", volume.target),
                read.describe(),
                MOUNT_HINT,
            ),
            &fx_r,
        ),
        during,
        with_effects(
            pass(
                "nothing-mounted-after-exit",
                "after exit, nothing of the volume in the host's mount table",
                "nothing left",
            ),
            &fx_hold,
        ),
    ]
}

/// The volume's host directory, fresh, and its target pre-created in the image (the workshop
/// does not ask a runtime to create mount points).
fn prepare(ctx: &Ctx) -> std::io::Result<Volume> {
    let volume = ctx
        .sub
        .config
        .hard_coded_volume(&ctx.sub.dir)
        .unwrap_or_else(|| Volume {
            source: ctx.scratch.join(random_word("vol-")),
            target: format!("/data-{}", random_word("")),
        });
    fs::create_dir_all(&volume.source)?;
    fs::create_dir_all(ctx.rootfs.join(volume.target.trim_start_matches('/')))?;
    Ok(volume)
}
