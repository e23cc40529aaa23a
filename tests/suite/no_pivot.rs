//! The root switch without pivot_root (issue 25): where `pivot_root(2)` answers EINVAL, the
//! runtime moves the container's root onto `/` and chroots into it. Forced with
//! `DEVOXX_NO_PIVOT=1`, and for real with the runtime chrooted under a shared parent mount; the
//! container must see the same root and the same mounts as after pivot_root.

use crate::common;

use common::run::*;
use common::*;

/// Shell run under `unshare --mount --propagation private`: a private tmpfs made shared (a new
/// peer group, so nothing reaches the host), a directory in it bind-mounted onto itself, the
/// host's system directories, the store and the runtime bound into it, and the runtime
/// chrooted there. Its root's parent mount is shared, so pivot_root(2) answers EINVAL, as it
/// does on an initramfs.
const CHROOTED: &str = r#"set -e
W=$1; STORE=$2; RT=$3; shift 3
P=$W/p; mkdir -p $P; mount -t tmpfs -o mode=755 tmpfs $P; mount --make-shared $P
D=$P/d; mkdir $D; mount --bind $D $D
for d in usr etc proc sys dev run; do mkdir -p $D/$d; mount --rbind /$d $D/$d; done
for l in bin sbin lib lib64; do
  if [ -L /$l ]; then cp -P /$l $D/$l; elif [ -d /$l ]; then mkdir -p $D/$l; mount --rbind /$l $D/$l; fi
done
R=$(dirname $RT); mkdir -p $D$STORE $D$R; mount --rbind $STORE $D$STORE; mount --bind $R $D$R
exec chroot $D "$RT" "$@"
"#;

/// `ls /`, the same after climbing `..`, the container's mount points; then exit `code`.
fn root_view(code: u64) -> String {
    format!("ls /; echo --; cd ../../..; ls; echo --; cut -d' ' -f5 /proc/self/mountinfo | sort; exit {code}")
}

/// `ran` exited with `code`, took the no-pivot_root path (its start trace says so) and saw
/// what `reference`, the run with pivot_root, saw.
fn assert_no_pivot_run(ran: &Ran, code: u64, reference: &Ran, expected_top: &[String]) {
    ran.assert_code(code as i32);
    assert!(
        ran.stderr.contains("trace child-no-pivot "),
        "pivot_root did not fail: {}",
        ran.stderr
    );
    assert_same_view(ran, reference, expected_top);
}

fn assert_same_view(ran: &Ran, reference: &Ran, expected_top: &[String]) {
    let view: Vec<&str> = ran.stdout.split("--\n").collect();
    assert_eq!(view.len(), 3, "{ran:?}");
    for listing in &view[..2] {
        assert_eq!(listing.lines().collect::<Vec<_>>(), expected_top, "{ran:?}");
    }
    // The same mounts as after pivot_root: none of the old root's is left.
    assert_eq!(
        view[2],
        reference.stdout.split("--\n").nth(2).unwrap_or_default()
    );
}

#[test]
fn without_pivot_root_the_root_is_moved_and_chrooted_with_the_same_isolation() {
    require_root!();
    let arranged = Arranged::standard();
    let (root, img) = (&arranged.root, arranged.img.as_str());
    let expected = image_top_level(root, img);
    let code = random_in(1..=100);
    let cmd = ["/bin/sh", "-c", &root_view(code)];

    let reference = arranged.run(&[], &cmd);
    reference.assert_code(code as i32);
    let forced = root
        .cmd()
        .env("DEVOXX_NO_PIVOT", "1")
        .env("DEVOXX_TRACE_START", "1")
        .args(run_args(&[], img, &cmd))
        .output()
        .expect("run");
    assert_no_pivot_run(&Ran::from_output(&forced), code, &reference, &expected);

    // The real condition: a runtime whose root cannot be pivoted away.
    let runtime = runtime();
    let store = root.store();
    let work = root.dir.path().join(format!("w-{}", marker()));
    let mut args: Vec<String> = [
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        CHROOTED,
        "sh",
    ]
    .map(String::from)
    .to_vec();
    args.extend([&work, &store, &runtime].map(|p| p.display().to_string()));
    args.extend(run_args(&[], img, &cmd).iter().map(|s| s.to_string()));
    let out = std::process::Command::new("unshare")
        .args(&args)
        .env("DEVOXX_ROOT", &store)
        .env("DEVOXX_VOLUMES", root.volumes())
        .env("DEVOXX_TRACE_START", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("unshare (util-linux)");
    let out = output_within(out, RUN_TIMEOUT);
    assert_no_pivot_run(&Ran::from_output(&out), code, &reference, &expected);
    arranged.assert_clean(&[]);
}
