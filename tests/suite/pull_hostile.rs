//! `pull` against registries that misbehave (tests/common/hostile.rs): every misbehaviour ends
//! within its bound (the deadlines set small through `DEVOXX_PULL_STALL_TIMEOUT` and
//! `DEVOXX_PULL_REQUEST_TIMEOUT`), in at most 64 MiB, with exit 125 and one line naming the
//! registry, the object and what went wrong, the store as it was; what a retry can mend
//! (a reset, a 5xx) is retried, resuming with a `Range` request; two pulls at once, a pull
//! killed with SIGKILL and a full disk leave a store the next pull can use.

use crate::common;
use crate::pull::staging_leftovers;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use common::hostile::{measure, Fault, Hostile, Measured, Served};
use common::registry::{snapshot, Node};
use common::{marker, random_in, TestRoot};

/// Peak resident memory any pull may reach, whatever the registry sends.
const MAX_RSS_KIB: u64 = 64 << 10;
/// The stall timeout the tests run with (seconds): far below the 30 s default, and still
/// long enough that a starved hostile server (the suite in an emulated VM) is not a stall.
const STALL: u64 = 2;
/// The request timeout the tests run with (seconds).
const REQUEST: u64 = 4;
/// What a test allows on top of a bound for starting the runtime, besides three times what a
/// pull from a well-behaved registry took just before on the same machine (see
/// [`Setup::slack`]): an emulated VM running the whole suite is many times slower than a host.
const SLACK: Duration = Duration::from_secs(3);
/// No test pull may run longer than this: past it, it is killed and the test fails.
const KILL_AFTER: Duration = Duration::from_secs(60);

/// A store holding one image already (pulled from a well-behaved registry), and a hostile
/// registry serving another.
struct Setup {
    root: TestRoot,
    hostile: Hostile,
    repo: String,
    before: BTreeMap<String, Node>,
    /// What a test allows on top of a bound: [`SLACK`] and three times the well-behaved pull.
    slack: Duration,
}

impl Setup {
    /// `noise` random bytes in the served layer; `fault` from the first request on.
    fn new(noise: usize, fault: Fault) -> Setup {
        let root = TestRoot::new();
        Setup::in_root(root, noise, fault)
    }

    fn in_root(root: TestRoot, noise: usize, fault: Fault) -> Setup {
        let kept = Hostile::start(Served::random(random_in(100..=4000) as usize), Fault::None);
        // The default deadlines: this pull only sets the scene (and times this machine).
        let mut cmd = root.std_cmd();
        cmd.args(["pull", &kept.reference("kept", &marker())]);
        let m = measure(cmd, KILL_AFTER);
        assert_eq!(m.code, Some(0), "{m:#?}");
        assert!((1..MAX_RSS_KIB).contains(&m.max_rss_kib), "{m:#?}");
        let before = snapshot(&root.store());
        Setup {
            root,
            hostile: Hostile::start(Served::random(noise), fault),
            repo: format!("hostile-{}", marker()),
            before,
            slack: SLACK + m.elapsed * 3,
        }
    }

    /// `pull` of the hostile registry's image with the small deadlines (and `env`).
    fn pull(&self, env: &[(&str, &str)]) -> Measured {
        pull(&self.root, &self.reference(), env)
    }

    fn reference(&self) -> String {
        self.hostile.reference(&self.repo, "t")
    }

    /// The pull failed as it must: exit 125 within `bound`, stdout empty, one error line (the
    /// last, besides retry progress lines) naming the registry and every one of `words`, peak
    /// memory under [`MAX_RSS_KIB`], and the store exactly as it was.
    fn assert_refused(&self, m: &Measured, bound: Duration, words: &[&str]) {
        let host = [self.hostile.addr.as_str()];
        self.assert_failed(m, bound, &[&host, words].concat());
    }

    /// Same as [`Setup::assert_refused`] without requiring the registry in the line (a
    /// local failure).
    fn assert_failed(&self, m: &Measured, bound: Duration, words: &[&str]) {
        assert_eq!(m.code, Some(125), "{m:#?}");
        assert!(m.stdout.is_empty(), "{m:#?}");
        let errors = m.error_lines();
        assert_eq!(errors.len(), 1, "{m:#?}");
        assert_eq!(m.stderr.lines().last(), Some(errors[0]), "{m:#?}");
        for w in words {
            assert!(errors[0].contains(w), "{w:?} missing from {:?}", errors[0]);
        }
        assert_bounded(m, bound);
        assert_eq!(snapshot(&self.root.store()), self.before, "store changed");
    }

    /// The pull succeeded and stored the served image, verified (digest, marker).
    fn assert_pulled(&self, m: &Measured) {
        assert_eq!(m.code, Some(0), "{m:#?}");
        assert!(m.max_rss_kib < MAX_RSS_KIB, "{m:#?}");
        let store = self.root.store();
        let name = stored_name(&store, &self.reference());
        let meta: serde_json::Value =
            serde_json::from_slice(&fs::read(store.join(&name).join("image.json")).unwrap())
                .unwrap();
        assert_eq!(meta["digest"], self.hostile.image.digest.as_str());
        assert_eq!(
            fs::read_to_string(store.join(&name).join("rootfs/marker")).unwrap(),
            self.hostile.image.marker
        );
        assert!(
            staging_leftovers(&store).is_empty(),
            "{:?}",
            staging_leftovers(&store)
        );
    }
}

/// Run `pull reference` under `root` with the tests' deadlines, measured.
fn pull(root: &TestRoot, reference: &str, env: &[(&str, &str)]) -> Measured {
    measure(pull_cmd(root, reference, env), KILL_AFTER)
}

fn pull_cmd(root: &TestRoot, reference: &str, env: &[(&str, &str)]) -> Command {
    let mut cmd = root.std_cmd();
    cmd.args(["pull", reference])
        .env("DEVOXX_PULL_STALL_TIMEOUT", STALL.to_string())
        .env("DEVOXX_PULL_REQUEST_TIMEOUT", REQUEST.to_string());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

fn assert_bounded(m: &Measured, bound: Duration) {
    assert!(
        m.elapsed < bound,
        "took {:?}, bound {bound:?}: {m:#?}",
        m.elapsed
    );
    assert!(
        (1..MAX_RSS_KIB).contains(&m.max_rss_kib),
        "peak memory {} KiB: {m:#?}",
        m.max_rss_kib
    );
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The store directory `images` lists for `reference`.
fn stored_name(store: &Path, reference: &str) -> String {
    let canonical = reference.to_owned();
    fs::read_dir(store)
        .unwrap()
        .flatten()
        .find(|e| {
            fs::read(e.path().join("image.json")).is_ok_and(|b| {
                serde_json::from_slice::<serde_json::Value>(&b)
                    .is_ok_and(|v| v["reference"] == canonical.as_str())
            })
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .unwrap_or_else(|| panic!("{reference} not stored"))
}

/// A pull from a registry sending `object` one byte every 100 to 400 ms (`trickle`): refused
/// at the request deadline, not before, not much later.
fn ends_at_the_request_deadline(trickle: fn(Duration) -> Fault, object: &str) {
    let every = Duration::from_millis(random_in(100..=400));
    let s = Setup::new(100, trickle(every));
    let m = s.pull(&[]);
    s.assert_refused(
        &m,
        secs(REQUEST) + s.slack,
        &[object, &format!("within {REQUEST} s")],
    );
    assert!(m.elapsed >= secs(REQUEST), "{m:#?}");
}

#[test]
fn a_manifest_sent_at_a_trickle_ends_at_the_request_deadline() {
    require_root!();
    ends_at_the_request_deadline(Fault::ManifestTrickle, "manifest t");
}

#[test]
fn an_endless_manifest_is_refused_at_4_mib_without_being_buffered() {
    require_root!();
    let s = Setup::new(100, Fault::ManifestEndless);
    let m = s.pull(&[]);
    s.assert_refused(&m, s.slack * 2, &["manifest t", "larger than 4 MiB"]);
}

#[test]
fn an_index_of_100000_entries_is_refused_before_it_is_read() {
    require_root!();
    let s = Setup::new(100, Fault::HugeIndex(100_000));
    let m = s.pull(&[]);
    s.assert_refused(&m, s.slack * 2, &["manifest t", "larger than 4 MiB"]);
}

#[test]
fn a_token_sent_at_a_trickle_ends_at_the_request_deadline() {
    require_root!();
    ends_at_the_request_deadline(Fault::TokenTrickle, "pull token");
}

#[test]
fn a_layer_longer_than_its_descriptor_is_refused_and_not_retried() {
    require_root!();
    let s = Setup::new(
        random_in(1000..=100_000) as usize,
        Fault::LayerLonger(random_in(1..=4096) as usize),
    );
    let m = s.pull(&[]);
    s.assert_refused(
        &m,
        s.slack,
        &["digest mismatch", "longer than its descriptor"],
    );
    assert!(m.retry_lines().is_empty(), "{m:#?}");
    assert_eq!(s.hostile.layer_requests().len(), 1);
}

#[test]
fn a_layer_stalling_half_way_ends_within_stall_plus_request_timeout() {
    require_root!();
    let s = Setup::new(random_in(200_000..=400_000) as usize, Fault::LayerStall);
    let m = s.pull(&[]);
    s.assert_refused(
        &m,
        secs(STALL + REQUEST) + s.slack,
        &["layer 1/1", "(gave up after"],
    );
    assert!(!m.retry_lines().is_empty(), "{m:#?}");
    let requests = s.hostile.layer_requests();
    assert!(requests.len() >= 2, "{requests:#?}");
    assert!(
        requests[1].range.is_some(),
        "the retry resumes from what was received: {requests:#?}"
    );
}

/// A pull of a layer whose connection is reset once half way, `ranges` saying whether the
/// registry then honours `Range`: it succeeded, within its bound.
fn pulled_after_one_reset(ranges: bool) -> (Setup, Measured) {
    let s = Setup::new(
        random_in(300_000..=600_000) as usize,
        Fault::LayerReset { times: 1, ranges },
    );
    let m = s.pull(&[]);
    s.assert_pulled(&m);
    assert_bounded(&m, s.slack * 2);
    (s, m)
}

#[test]
fn a_reset_half_way_is_resumed_with_a_range_and_the_digest_verified() {
    require_root!();
    let (s, m) = pulled_after_one_reset(true);
    let retries = m.retry_lines();
    assert_eq!(retries.len(), 1, "{m:#?}");
    assert!(retries[0].contains("layer 1/1"), "{m:#?}");
    let requests = s.hostile.layer_requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    assert_eq!(requests[0].range, None);
    let from: u64 = requests[1]
        .range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes=")?.strip_suffix('-')?.parse().ok())
        .unwrap_or_else(|| panic!("no Range on the retry: {requests:#?}"));
    let half = (s.hostile.image.layer.blob.len() / 2) as u64;
    assert!(
        from > 0 && from <= half,
        "resumed at {from}, half is {half}"
    );
    assert!(
        retries[0].contains(&format!("resuming at byte {from}")),
        "{m:#?}"
    );
}

#[test]
fn a_reset_where_ranges_are_ignored_restarts_the_layer_cleanly() {
    require_root!();
    let (s, _) = pulled_after_one_reset(false);
    assert_eq!(s.hostile.layer_requests().len(), 2);
}

#[test]
fn a_registry_that_keeps_resetting_is_given_up_after_a_few_tries() {
    require_root!();
    let s = Setup::new(
        random_in(100_000..=200_000) as usize,
        Fault::LayerReset {
            times: usize::MAX - 1,
            ranges: true,
        },
    );
    // Retries wait 1 s then 2 s; a 4 s wait would end past the 6 s deadline (counted from the
    // first reset), whatever the tries themselves take up to 3 s.
    let m = s.pull(&[("DEVOXX_PULL_REQUEST_TIMEOUT", "6")]);
    s.assert_refused(
        &m,
        secs(6) + s.slack,
        &["layer 1/1", "interrupted", "(gave up after 3 tries)"],
    );
    assert_eq!(m.retry_lines().len(), 2, "{m:#?}");
    assert_eq!(s.hostile.layer_requests().len(), 3);
}

#[test]
fn a_5xx_on_a_layer_is_retried_after_what_retry_after_asks() {
    require_root!();
    let code = [500, 502, 503, 504][random_in(0..=3) as usize];
    let s = Setup::new(
        random_in(1000..=100_000) as usize,
        Fault::LayerStatus {
            code,
            times: 1,
            retry_after: Some(2),
        },
    );
    let m = s.pull(&[("DEVOXX_PULL_REQUEST_TIMEOUT", "5")]);
    s.assert_pulled(&m);
    assert_bounded(&m, secs(2) + s.slack);
    let retries = m.retry_lines();
    assert_eq!(retries.len(), 1, "{m:#?}");
    assert!(retries[0].contains(&format!("HTTP {code}")), "{m:#?}");
    let requests = s.hostile.layer_requests();
    assert_eq!(requests.len(), 2, "{requests:#?}");
    let gap = requests[1].at - requests[0].at;
    assert!(
        gap >= Duration::from_millis(1900),
        "Retry-After: 2 not honoured: {gap:?}"
    );
}

#[test]
fn a_4xx_on_a_layer_is_final() {
    require_root!();
    let (code, words) = [
        (403, "access denied"),
        (404, "not found"),
        (400, "HTTP 400"),
    ][random_in(0..=2) as usize];
    let s = Setup::new(
        random_in(1000..=100_000) as usize,
        Fault::LayerStatus {
            code,
            times: 1,
            retry_after: None,
        },
    );
    let m = s.pull(&[]);
    s.assert_refused(&m, s.slack, &[words]);
    assert!(m.retry_lines().is_empty(), "{m:#?}");
    assert_eq!(s.hostile.layer_requests().len(), 1);
}

#[test]
fn a_429_resetting_past_the_deadline_is_final_at_once() {
    require_root!();
    let wait = random_in(600..=7000);
    let s = Setup::new(
        random_in(1000..=100_000) as usize,
        Fault::LayerStatus {
            code: 429,
            times: usize::MAX - 1,
            retry_after: Some(wait),
        },
    );
    let m = s.pull(&[]);
    s.assert_refused(&m, s.slack, &["rate limited", "resets in"]);
    assert_eq!(s.hostile.layer_requests().len(), 1);
}

#[test]
fn two_pulls_of_one_image_at_once_download_it_once_and_both_succeed() {
    require_root!();
    // About 2 s of download (64 KiB pieces 120 ms apart): the second pull waits for longer than
    // the store's quiet wait, so it says it waits.
    let s = Setup::new(
        random_in(900_000..=1_100_000) as usize,
        Fault::LayerPaced(Duration::from_millis(120)),
    );
    let first = {
        let cmd = pull_cmd(&s.root, &s.reference(), &[]);
        thread::spawn(move || measure(cmd, KILL_AFTER))
    };
    let start = Instant::now();
    while s
        .hostile
        .layer_bytes_sent
        .load(std::sync::atomic::Ordering::SeqCst)
        == 0
    {
        assert!(
            start.elapsed() < secs(20),
            "the first pull never started its download"
        );
        thread::sleep(Duration::from_millis(10));
    }
    let second = pull(&s.root, &s.reference(), &[]);
    let first = first.join().expect("first pull");
    s.assert_pulled(&first);
    s.assert_pulled(&second);
    assert!(
        second.stderr.contains("waiting for another pull"),
        "{second:#?}"
    );
    assert!(second.stderr.contains("up to date"), "{second:#?}");
    assert_eq!(s.hostile.layer_requests().len(), 1, "downloaded once");
}

#[test]
fn a_pull_killed_with_sigkill_leaves_nothing_the_next_pull_does_not_reclaim() {
    require_root!();
    let s = Setup::new(random_in(200_000..=400_000) as usize, Fault::LayerStall);
    let mut cmd = pull_cmd(
        &s.root,
        &s.reference(),
        &[("DEVOXX_PULL_STALL_TIMEOUT", "30")],
    );
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("spawn pull");
    let start = Instant::now();
    while s
        .hostile
        .layer_bytes_sent
        .load(std::sync::atomic::Ordering::SeqCst)
        == 0
        || staging_leftovers(&s.root.store()).is_empty()
    {
        assert!(
            start.elapsed() < secs(20),
            "the pull never got to the layer"
        );
        thread::sleep(Duration::from_millis(10));
    }
    thread::sleep(Duration::from_millis(200));
    child.kill().expect("SIGKILL");
    child.wait().expect("reap");
    assert!(
        !staging_leftovers(&s.root.store()).is_empty(),
        "what SIGKILL leaves"
    );

    s.hostile.set(Fault::None);
    let m = s.pull(&[]);
    s.assert_pulled(&m);
    let mut now = snapshot(&s.root.store());
    let name = stored_name(&s.root.store(), &s.reference());
    now.retain(|k, _| !k.starts_with(&name));
    assert_eq!(
        now, s.before,
        "besides the new image, the store is as it was"
    );
}

/// A tmpfs of `size` mounted on `path` for the length of a test.
struct Tmpfs<'a>(&'a Path);

impl<'a> Tmpfs<'a> {
    fn mount(path: &'a Path, size: &str) -> Option<Tmpfs<'a>> {
        nix::mount::mount(
            Some("devoxx-test-full"),
            path,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some(format!("size={size},mode=0755").as_str()),
        )
        .ok()
        .map(|()| Tmpfs(path))
    }
}

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn a_full_disk_is_one_line_and_the_store_as_it_was() {
    require_root!();
    let root = TestRoot::new();
    // Only this test's own tmpfs counts: a neighbour's (an engine's shm) may come and go.
    let dir = root.dir.path().display().to_string();
    let store = root.store();
    let Some(tmpfs) = Tmpfs::mount(&store, "1m") else {
        skip!("cannot mount a tmpfs here");
    };
    let s = Setup::in_root(root, random_in(2_000_000..=3_000_000) as usize, Fault::None);
    let m = s.pull(&[]);
    s.assert_failed(&m, s.slack * 2, &["No space left"]);
    drop(tmpfs);
    drop(s);
    let left: Vec<String> = common::host_mounts()
        .lines()
        .filter(|l| l.contains(&dir))
        .map(str::to_owned)
        .collect();
    assert!(left.is_empty(), "tmpfs left mounted: {left:?}");
}
