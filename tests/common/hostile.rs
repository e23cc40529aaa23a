//! A registry that misbehaves on purpose: a small HTTP/1.1 server on 127.0.0.1 (std threads)
//! serving one image from memory, doing wrong the one thing its [`Fault`] says — trickling or
//! never ending a manifest, an index too large, a token that never comes, a layer that stalls,
//! is reset, is longer than its descriptor, or fails with a status first. It records every
//! request (with its `Range`) and how many bytes of each layer it sent. Everything stops when
//! the [`Hostile`] is dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use super::registry::{
    image_config, sha256, Layer, LayerBuilder, OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST,
};

/// What the registry does wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Nothing: a well-behaved registry.
    None,
    /// The manifest one byte per `interval`.
    ManifestTrickle(Duration),
    /// A manifest body that never ends, as fast as it can (no Content-Length).
    ManifestEndless,
    /// The tag names an index of this many entries, none for linux/amd64.
    HugeIndex(usize),
    /// `/v2/` asks for a bearer token whose realm answers one byte per `interval`.
    TokenTrickle(Duration),
    /// The layer body has this many bytes more than its descriptor says.
    LayerLonger(usize),
    /// Half the layer, then silence with the connection open (every time).
    LayerStall,
    /// Half the layer, then a TCP reset, `times` times; `ranges` says whether `Range` is
    /// honoured afterwards (206) or ignored (200, whole blob).
    LayerReset { times: usize, ranges: bool },
    /// The layer answers `code` (with `Retry-After` when given) `times` times first.
    LayerStatus {
        code: u16,
        times: usize,
        retry_after: Option<u64>,
    },
    /// The layer is sent in 64 KiB pieces `pace` apart (a pull that takes a while).
    LayerPaced(Duration),
}

/// One request the registry received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// The `Range` header, when there was one.
    pub range: Option<String>,
    pub at: Instant,
}

/// The image it serves: one random layer of `layer_size`-ish bytes.
pub struct Served {
    pub layer: Layer,
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
    /// Digest of the manifest (what a successful pull stores as the image digest).
    pub digest: String,
    /// The random content of `/marker` in the image.
    pub marker: String,
}

/// The running server.
pub struct Hostile {
    /// `127.0.0.1:PORT`.
    pub addr: String,
    pub image: Arc<Served>,
    pub fault: Arc<Mutex<Fault>>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Layer bytes written to sockets so far, all answers together.
    pub layer_bytes_sent: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Served {
    /// An image whose layer holds `/marker` (random) and `/noise` (`noise` random bytes, which
    /// gzip cannot shrink).
    pub fn random(noise: usize) -> Served {
        let marker = super::marker();
        let noise: Vec<u8> = (0..noise).map(|_| rand::random::<u8>()).collect();
        let layer = LayerBuilder::new()
            .file("marker", marker.as_bytes(), 0o644)
            .file("noise", &noise, 0o644)
            .build();
        let config = serde_json::to_vec(&image_config(
            std::slice::from_ref(&layer),
            "amd64",
            json!({}),
        ))
        .expect("config");
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256(&config), "size": config.len()},
            "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": layer.digest, "size": layer.blob.len()}],
        }))
        .expect("manifest");
        Served {
            digest: sha256(&manifest),
            layer,
            config,
            manifest,
            marker,
        }
    }
}

impl Hostile {
    /// Serve `image`, doing `fault` wrong.
    pub fn start(image: Served, fault: Fault) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("address").to_string();
        let h = Hostile {
            addr,
            image: Arc::new(image),
            fault: Arc::new(Mutex::new(fault)),
            seen: Arc::default(),
            layer_bytes_sent: Arc::default(),
            stop: Arc::default(),
        };
        let server = Server {
            addr: h.addr.clone(),
            image: h.image.clone(),
            fault: h.fault.clone(),
            seen: h.seen.clone(),
            layer_bytes_sent: h.layer_bytes_sent.clone(),
            stop: h.stop.clone(),
            failures_left: Arc::new(AtomicUsize::new(usize::MAX)),
            index: Arc::default(),
        };
        if let Fault::HugeIndex(n) = *h.fault.lock().expect("lock") {
            server.index.get_or_init(|| huge_index(n));
        }
        thread::spawn(move || {
            for conn in listener.incoming() {
                if server.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let server = server.clone();
                thread::spawn(move || server.connection(conn));
            }
        });
        h
    }

    /// `127.0.0.1:PORT/REPO:TAG` for the served image.
    pub fn reference(&self, repo: &str, tag: &str) -> String {
        format!("{}/{repo}:{tag}", self.addr)
    }

    /// Change what it does wrong from now on.
    pub fn set(&self, fault: Fault) {
        *self.fault.lock().expect("lock") = fault;
    }

    /// Requests for the layer blob so far.
    pub fn layer_requests(&self) -> Vec<Seen> {
        let path = format!("/blobs/{}", self.image.layer.digest);
        self.seen
            .lock()
            .expect("lock")
            .iter()
            .filter(|s| s.path.ends_with(&path))
            .cloned()
            .collect()
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.addr);
    }
}

#[derive(Clone)]
struct Server {
    addr: String,
    image: Arc<Served>,
    fault: Arc<Mutex<Fault>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    layer_bytes_sent: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    /// Failures still to inject for the counted faults (set on their first use).
    failures_left: Arc<AtomicUsize>,
    /// The index [`Fault::HugeIndex`] serves, built once.
    index: Arc<std::sync::OnceLock<Vec<u8>>>,
}

/// The parts of a request the server looks at.
struct Request {
    method: String,
    path: String,
    range: Option<u64>,
}

impl Server {
    /// Answer requests on one connection (keep-alive) until it closes or a fault ends it.
    fn connection(&self, conn: TcpStream) {
        let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
        let mut reader = BufReader::new(conn.try_clone().expect("clone socket"));
        let mut conn = conn;
        while let Some(req) = read_request(&mut reader) {
            self.seen.lock().expect("lock").push(Seen {
                method: req.method.clone(),
                path: req.path.clone(),
                range: req.range.map(|r| format!("bytes={r}-")),
                at: Instant::now(),
            });
            if !self.answer(&mut conn, &req) {
                return;
            }
        }
    }

    /// Answer one request; false when the connection must end.
    fn answer(&self, conn: &mut TcpStream, req: &Request) -> bool {
        let fault = self.fault.lock().expect("lock").clone();
        let image = &self.image;
        let path = req.path.split('?').next().unwrap_or_default();
        if path == "/v2/" {
            return match fault {
                Fault::TokenTrickle(_) => respond(
                    conn,
                    401,
                    &[(
                        "WWW-Authenticate",
                        format!(
                            r#"Bearer realm="http://{}/token",service="hostile""#,
                            self.addr
                        ),
                    )],
                    b"",
                ),
                _ => respond(conn, 200, &[], b"{}"),
            };
        }
        if path == "/token" {
            if let Fault::TokenTrickle(every) = fault {
                // Long enough to outlast any request deadline a test sets at its fastest pace
                // (26 bytes at 100 ms once finished within the 4 s deadline in the VM).
                let token = format!("{{\"token\":\"{}\"}}", "n".repeat(400));
                return self.trickle(conn, token.as_bytes(), every);
            }
            return respond(conn, 200, &[], br#"{"token":"t"}"#);
        }
        if path.contains("/manifests/") {
            return match fault {
                Fault::ManifestTrickle(every) => self.trickle(conn, &image.manifest, every),
                Fault::ManifestEndless => self.endless(conn),
                Fault::HugeIndex(n) => {
                    let index = self.index.get_or_init(|| huge_index(n));
                    respond(conn, 200, &[ctype(OCI_INDEX)], index)
                }
                _ => respond(conn, 200, &[ctype(OCI_MANIFEST)], &image.manifest),
            };
        }
        if path.ends_with(&format!("/blobs/{}", sha256(&image.config))) {
            return respond(conn, 200, &[], &image.config);
        }
        if path.ends_with(&format!("/blobs/{}", image.layer.digest)) {
            return self.layer(conn, req, fault);
        }
        respond(
            conn,
            404,
            &[],
            br#"{"errors":[{"code":"NOT_FOUND","message":"no"}]}"#,
        )
    }

    /// The layer blob, as the fault has it.
    fn layer(&self, conn: &mut TcpStream, req: &Request, fault: Fault) -> bool {
        let blob = &self.image.layer.blob;
        let half = blob.len() / 2;
        match fault {
            Fault::LayerLonger(extra) => {
                let mut longer = blob.clone();
                longer.extend((0..extra).map(|_| rand::random::<u8>()));
                self.send_layer(conn, 200, &[], &longer, None)
            }
            Fault::LayerStall => {
                let from = req.range.unwrap_or(0) as usize;
                let part = &blob[from..];
                let _ = self.send_layer(
                    conn,
                    206,
                    &range_header(from, blob.len()),
                    part,
                    Some(part.len() / 2),
                );
                self.hold_open();
                false
            }
            Fault::LayerReset { times, ranges } if self.take_failure(times) => {
                let (code, from) = match (ranges, req.range) {
                    (true, Some(from)) => (206, from as usize),
                    _ => (200, 0),
                };
                let part = &blob[from..];
                let headers = if code == 206 {
                    range_header(from, blob.len())
                } else {
                    vec![]
                };
                let _ = self.send_layer(conn, code, &headers, part, Some(half.min(part.len() / 2)));
                reset(conn);
                false
            }
            Fault::LayerReset { ranges: true, .. } if req.range.is_some() => {
                let from = req.range.unwrap_or(0) as usize;
                self.send_layer(
                    conn,
                    206,
                    &range_header(from, blob.len()),
                    &blob[from..],
                    None,
                )
            }
            Fault::LayerStatus {
                code,
                times,
                retry_after,
            } if self.take_failure(times) => {
                let headers: Vec<(&str, String)> = retry_after
                    .map(|s| vec![("Retry-After", s.to_string())])
                    .unwrap_or_default();
                respond(
                    conn,
                    code,
                    &headers,
                    b"{\"errors\":[{\"code\":\"UNAVAILABLE\",\"message\":\"try later\"}]}",
                )
            }
            Fault::LayerPaced(pace) => {
                if !write_head(conn, 200, &[], Some(blob.len())) {
                    return false;
                }
                for piece in blob.chunks(64 << 10) {
                    if conn.write_all(piece).is_err() {
                        return false;
                    }
                    self.layer_bytes_sent
                        .fetch_add(piece.len(), Ordering::SeqCst);
                    thread::sleep(pace);
                }
                true
            }
            _ => self.send_layer(conn, 200, &[], blob, None),
        }
    }

    /// True while the counted fault still has failures to inject (`times` in all).
    fn take_failure(&self, times: usize) -> bool {
        let _ = self.failures_left.compare_exchange(
            usize::MAX,
            times,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        self.failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Head and `body` (announced whole), of which only `cut` bytes are sent when given.
    fn send_layer(
        &self,
        conn: &mut TcpStream,
        code: u16,
        headers: &[(&str, String)],
        body: &[u8],
        cut: Option<usize>,
    ) -> bool {
        if !write_head(conn, code, headers, Some(body.len())) {
            return false;
        }
        let sent = &body[..cut.unwrap_or(body.len())];
        let ok = conn.write_all(sent).and_then(|()| conn.flush()).is_ok();
        if ok {
            self.layer_bytes_sent
                .fetch_add(sent.len(), Ordering::SeqCst);
        }
        ok
    }

    /// `body` one byte per `every`, until done, the client leaves, or the server stops.
    fn trickle(&self, conn: &mut TcpStream, body: &[u8], every: Duration) -> bool {
        if !write_head(conn, 200, &[ctype(OCI_MANIFEST)], Some(body.len())) {
            return false;
        }
        for b in body {
            if self.stop.load(Ordering::SeqCst) || conn.write_all(&[*b]).is_err() {
                return false;
            }
            thread::sleep(every);
        }
        true
    }

    /// A body without end, as fast as the client reads it.
    fn endless(&self, conn: &mut TcpStream) -> bool {
        if !write_head(conn, 200, &[ctype(OCI_MANIFEST)], None) {
            return false;
        }
        let piece = vec![b' '; 64 << 10];
        while !self.stop.load(Ordering::SeqCst) && conn.write_all(&piece).is_ok() {}
        false
    }

    /// Keep the connection open and silent until the server stops.
    fn hold_open(&self) {
        while !self.stop.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(50));
        }
    }
}

fn ctype(t: &str) -> (&'static str, String) {
    ("Content-Type", t.to_owned())
}

fn range_header(from: usize, total: usize) -> Vec<(&'static str, String)> {
    vec![(
        "Content-Range",
        format!("bytes {from}-{}/{total}", total.saturating_sub(1)),
    )]
}

/// An index of `n` entries, none of them linux/amd64 (written out directly: it is large).
fn huge_index(n: usize) -> Vec<u8> {
    let mut out = format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":["#);
    for i in 0..n {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            r#"{{"mediaType":"{OCI_MANIFEST}","digest":"sha256:{i:064x}","size":{},"platform":{{"os":"linux","architecture":"arch{i}"}}}}"#,
            1000 + i
        ));
    }
    out.push_str("]}");
    out.into_bytes()
}

/// Read one request head; `None` when the connection closed or sent garbage.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut range = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("range") {
                range = value
                    .trim()
                    .strip_prefix("bytes=")
                    .and_then(|v| v.strip_suffix('-'))
                    .and_then(|v| v.parse().ok());
            }
        }
    }
    Some(Request {
        method,
        path,
        range,
    })
}

/// Status line and headers; `length` None means the body runs until the connection closes.
fn write_head(
    conn: &mut TcpStream,
    code: u16,
    headers: &[(&str, String)],
    length: Option<usize>,
) -> bool {
    let mut head = format!("HTTP/1.1 {code} X\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    match length {
        Some(n) => head.push_str(&format!("Content-Length: {n}\r\n")),
        None => head.push_str("Connection: close\r\n"),
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes()).is_ok()
}

fn respond(conn: &mut TcpStream, code: u16, headers: &[(&str, String)], body: &[u8]) -> bool {
    write_head(conn, code, headers, Some(body.len()))
        && conn.write_all(body).and_then(|()| conn.flush()).is_ok()
}

/// Close with a TCP reset (SO_LINGER 0), as a dropped connection looks to the client.
fn reset(conn: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket and a properly sized linger struct.
    unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::addr_of!(linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    let _ = conn.shutdown(std::net::Shutdown::Read);
}

/// How a finished child went: exit code, output, time taken, peak memory (`ru_maxrss`).
#[derive(Debug)]
pub struct Measured {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    /// Peak resident memory in KiB (`VmHWM`).
    pub max_rss_kib: u64,
    /// What made up the resident memory when the peak was last seen rising (`VmRSS`,
    /// `RssAnon`, `RssFile`, `RssShmem`, `Threads`): a failed bound says why.
    pub at_peak: String,
}

impl Measured {
    /// The lines that are not retry progress (`retry N/M in ...`).
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("devoxx-docker:") && !is_retry_line(l))
            .collect()
    }

    /// The retry progress lines.
    pub fn retry_lines(&self) -> Vec<&str> {
        self.stderr.lines().filter(|l| is_retry_line(l)).collect()
    }
}

/// A pull's progress line announcing a retry (`…; retry 2/4 in 1 s…`).
pub fn is_retry_line(l: &str) -> bool {
    l.starts_with("devoxx-docker: ")
        && l.split("; retry ").skip(1).any(|rest| {
            let (count, after) = rest.split_once(" in ").unwrap_or_default();
            after.chars().next().is_some_and(|c| c.is_ascii_digit())
                && count.split_once('/').is_some_and(|(a, b)| {
                    [a, b]
                        .iter()
                        .all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
                })
        })
}

/// Run `cmd` to its end (killed after `limit`), measuring time and peak memory.
///
/// The peak is the child's `VmHWM`, read every few milliseconds while it runs, once the child
/// is the program `cmd` names (`/proc/PID/exe`). `std` spawns with `posix_spawn`, a vfork
/// sharing this test process's memory, and the kernel wakes the parent as `execve` lets go of
/// that memory, a moment before the child switches to its own: a status read in between shows
/// this test process (in the VM, with the whole suite running, 1 or 2 such reads in 18 of 30
/// pulls, 85 to 118 MiB, a single thread holding this process's malloc arenas; the pulls
/// themselves peaked at 7 to 13 MiB). Its `ru_maxrss` would not do either, as Linux counts in
/// it the memory the child had before its `exec`.
pub fn measure(mut cmd: std::process::Command, limit: Duration) -> Measured {
    let program = std::fs::canonicalize(cmd.get_program()).expect("the program measured");
    let out = tempfile::tempfile().expect("stdout file");
    let err = tempfile::tempfile().expect("stderr file");
    cmd.stdout(out.try_clone().expect("dup"))
        .stderr(err.try_clone().expect("dup"))
        .stdin(std::process::Stdio::null());
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn the runtime");
    let proc_dir = std::path::PathBuf::from(format!("/proc/{}", child.id()));
    let mut execed = false;
    let mut peak = 0;
    let mut at_peak = String::new();
    let status = loop {
        // The memory only changes to the program's once: a status read after the program was
        // seen is the program's.
        execed = execed || std::fs::read_link(proc_dir.join("exe")).is_ok_and(|e| e == program);
        if let Some((hwm, detail)) = vm_hwm_kib(&proc_dir.join("status")).filter(|_| execed) {
            if hwm > peak {
                (peak, at_peak) = (hwm, detail);
            }
        }
        if let Some(status) = child.try_wait().expect("wait for the runtime") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
        }
        thread::sleep(Duration::from_millis(3));
    };
    let elapsed = start.elapsed();
    let read = |mut f: std::fs::File| {
        use std::io::{Read, Seek};
        let mut s = String::new();
        f.rewind().expect("rewind");
        f.read_to_string(&mut s).expect("read output");
        s
    };
    Measured {
        code: status.code(),
        stdout: read(out),
        stderr: read(err),
        elapsed,
        max_rss_kib: peak,
        at_peak,
    }
}

/// `VmHWM` (KiB) from a `/proc/PID/status`, while the process still has its memory, with
/// the status lines that break the resident memory down.
fn vm_hwm_kib(status_file: &std::path::Path) -> Option<(u64, String)> {
    let status = std::fs::read_to_string(status_file).ok()?;
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let detail = status
        .lines()
        .filter(|l| {
            ["VmRSS:", "RssAnon:", "RssFile:", "RssShmem:", "Threads:"]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", ");
    Some((hwm, detail))
}
