//! Docker Hub's shape on loopback: `docker-registry` over TLS (test CA) at
//! `registry.devoxx.test`, behind a token server issuing ES256 JWTs it verifies (`auth: token:`
//! with `rootcertbundle`), its blob GETs redirected (307, the `redirect` storage middleware) to
//! `cdn.devoxx.test`, a small HTTP server that serves the blobs and records every request's
//! headers. Names resolve to loopback only in the pull's private mount namespace
//! ([`super::registry::with_hosts`]). Everything stops when the [`Hub`] is dropped.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde_json::json;

use super::registry::{hosts_file, registry, spawn_registry_on, test_ca, tls_config, Registry};

pub const REGISTRY_HOST: &str = "registry.devoxx.test";
pub const CDN_HOST: &str = "cdn.devoxx.test";
const SERVICE: &str = "devoxx-test-registry";
const ISSUER: &str = "devoxx-test-issuer";

/// One request a test server received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub target: String,
    /// When it arrived.
    pub at: SystemTime,
    /// Header names lowercased.
    pub headers: BTreeMap<String, String>,
}

/// Response headers, as `(name, value)`.
pub type Headers = Vec<(String, String)>;

/// What the token server requires and hands out.
#[derive(Default)]
pub struct TokenPolicy {
    /// `(user, password)` required (HTTP Basic on the realm) for repositories under `private/`.
    pub private_user: Option<(String, String)>,
    /// The first N tokens are signed by a key the registry does not trust (refused like an
    /// expired token).
    pub refused_tokens: AtomicUsize,
    /// Seconds from issue to a token's `exp` (300 when unset).
    pub lifetime: Option<u64>,
}

/// Token lifetime when [`TokenPolicy::lifetime`] is unset.
const DEFAULT_LIFETIME: u64 = 300;

/// The running fixture.
pub struct Hub {
    /// `registry.devoxx.test:PORT`.
    pub host: String,
    /// The CA that signed the registry's certificate.
    pub ca: PathBuf,
    /// A hosts file mapping both names to loopback.
    pub hosts: PathBuf,
    pub token_requests: Arc<Mutex<Vec<Request>>>,
    pub cdn_requests: Arc<Mutex<Vec<Request>>>,
    /// When set, the CDN answers every request 429 with these headers.
    pub cdn_rate_limit: Arc<Mutex<Option<Headers>>>,
    /// When set, the CDN holds its first blob answer until the newest token has expired by
    /// the client's clock (a second past its `exp`).
    pub cdn_hold_until_expiry: Arc<AtomicBool>,
    /// The `exp` of the newest token issued (Unix seconds).
    pub last_token_exp: Arc<AtomicU64>,
    pub policy: Arc<TokenPolicy>,
    _registry: Registry,
    _dir: tempfile::TempDir,
}

impl Hub {
    /// Serve the shared registry's storage (push images there first) the Hub's way.
    pub fn start(policy: TokenPolicy) -> Hub {
        let dir = tempfile::Builder::new()
            .prefix("devoxx-hub-")
            .tempdir()
            .expect("tempdir");
        let (ca, cert, key) = test_ca(dir.path(), &[REGISTRY_HOST]);
        let hosts = hosts_file(dir.path(), &[REGISTRY_HOST, CDN_HOST]);
        let signer = Signer::new(dir.path());
        let untrusted = Signer::new(&dir.path().join("untrusted"));
        let policy = Arc::new(policy);

        let token_requests = Arc::new(Mutex::new(Vec::new()));
        let last_token_exp = Arc::new(AtomicU64::new(0));
        let token_port = {
            let (requests, policy) = (token_requests.clone(), policy.clone());
            let last_exp = last_token_exp.clone();
            serve(move |req| {
                requests.lock().expect("lock").push(req.clone());
                token_answer(req, &policy, &signer, &untrusted, &last_exp)
            })
        };
        let storage = registry().storage.clone();
        let cdn_requests = Arc::new(Mutex::new(Vec::new()));
        let cdn_rate_limit = Arc::new(Mutex::new(None::<Headers>));
        let cdn_hold_until_expiry = Arc::new(AtomicBool::new(false));
        let cdn_port = {
            let (requests, limit) = (cdn_requests.clone(), cdn_rate_limit.clone());
            let (hold, last_exp) = (cdn_hold_until_expiry.clone(), last_token_exp.clone());
            serve(move |req| {
                requests.lock().expect("lock").push(req.clone());
                if let Some(headers) = limit.lock().expect("lock").clone() {
                    return (429, headers, b"slow down".to_vec());
                }
                if hold.swap(false, Ordering::SeqCst) {
                    sleep_past_exp(last_exp.load(Ordering::SeqCst));
                }
                cdn_answer(&storage, &req.target)
            })
        };
        let extra = format!(
            "auth:\n  token:\n    realm: http://127.0.0.1:{token_port}/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\nmiddleware:\n  storage:\n    - name: redirect\n      options:\n        baseurl: http://{CDN_HOST}:{cdn_port}/\n",
            dir.path().join("signer.pem").display()
        );
        let reg = spawn_registry_on(Some(&registry().storage), &tls_config(&cert, &key), &extra);
        let port = reg.addr.rsplit(':').next().expect("port");
        Hub {
            host: format!("{REGISTRY_HOST}:{port}"),
            ca,
            hosts,
            token_requests,
            cdn_requests,
            cdn_rate_limit,
            cdn_hold_until_expiry,
            last_token_exp,
            policy,
            _registry: reg,
            _dir: dir,
        }
    }

    /// Token requests whose scope names `repo`.
    pub fn tokens_for(&self, repo: &str) -> Vec<Request> {
        let scope = format!("repository%3A{}%3Apull", repo.replace('/', "%2F"));
        self.token_requests
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| {
                r.target.contains(&scope) || r.target.contains(&format!("repository:{repo}:pull"))
            })
            .cloned()
            .collect()
    }
}

/// Signs JWTs with an ES256 key whose self-signed certificate the registry trusts.
struct Signer {
    key: EcdsaKeyPair,
    cert_der: Vec<u8>,
}

impl Signer {
    fn new(dir: &Path) -> Signer {
        std::fs::create_dir_all(dir).expect("signer dir");
        let key = rcgen::KeyPair::generate().expect("signing key");
        let cert = rcgen::CertificateParams::new(vec!["token-signer".to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("signer cert");
        std::fs::write(dir.join("signer.pem"), cert.pem()).expect("write signer.pem");
        Signer {
            key: EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &key.serialize_der())
                .expect("pkcs8"),
            cert_der: cert.der().to_vec(),
        }
    }

    fn token(&self, subject: &str, repo: &str, exp: u64) -> String {
        let now = unix_now();
        let header =
            json!({"alg": "ES256", "typ": "JWT", "x5c": [STANDARD.encode(&self.cert_der)]});
        let claims = json!({
            "iss": ISSUER, "sub": subject, "aud": SERVICE,
            "exp": exp, "nbf": now - 10, "iat": now, "jti": super::marker(),
            "access": [{"type": "repository", "name": repo, "actions": ["pull"]}],
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let sig = self.key.sign(&rng, signing_input.as_bytes()).expect("sign");
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

type Answer = (u16, Headers, Vec<u8>);

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// Sleep until whole Unix seconds exceed `exp`: oci-client (like any client comparing whole
/// seconds) then holds a token with that `exp` expired.
fn sleep_past_exp(exp: u64) {
    let past = UNIX_EPOCH + Duration::from_secs(exp + 1) + Duration::from_millis(200);
    if let Ok(wait) = past.duration_since(SystemTime::now()) {
        std::thread::sleep(wait);
    }
}

fn token_answer(
    req: &Request,
    policy: &TokenPolicy,
    good: &Signer,
    bad: &Signer,
    last_exp: &AtomicU64,
) -> Answer {
    let scope = query_param(&req.target, "scope").unwrap_or_default();
    let repo = scope
        .strip_prefix("repository:")
        .and_then(|s| s.rsplit_once(':'))
        .map(|(name, _)| name.to_owned())
        .unwrap_or_default();
    let mut subject = String::new();
    if let Some((user, password)) = &policy.private_user {
        if repo.starts_with("private/") {
            let want = format!("Basic {}", STANDARD.encode(format!("{user}:{password}")));
            if req.headers.get("authorization") != Some(&want) {
                return (401, vec![], br#"{"details":"bad credentials"}"#.to_vec());
            }
            subject = user.clone();
        }
    }
    let refused = policy
        .refused_tokens
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let lifetime = policy.lifetime.unwrap_or(DEFAULT_LIFETIME);
    let exp = unix_now() + lifetime;
    last_exp.store(exp, Ordering::SeqCst);
    let token = if refused { bad } else { good }.token(&subject, &repo, exp);
    let body = json!({"token": token, "access_token": token, "expires_in": lifetime});
    (
        200,
        vec![("Content-Type".into(), "application/json".into())],
        body.to_string().into_bytes(),
    )
}

/// The blob file the redirect middleware points at (`/docker/registry/v2/blobs/...`).
fn cdn_answer(storage: &Path, target: &str) -> Answer {
    let path = target.split('?').next().unwrap_or_default();
    let rel = path.trim_start_matches('/');
    if !rel.starts_with("docker/registry/v2/blobs/") || rel.contains("..") {
        return (404, vec![], Vec::new());
    }
    match std::fs::read(storage.join(rel)) {
        Ok(data) => (
            200,
            vec![("Content-Type".into(), "application/octet-stream".into())],
            data,
        ),
        Err(_) => (404, vec![], Vec::new()),
    }
}

/// URL-decoded value of `name` in a request target's query.
fn query_param(target: &str, name: &str) -> Option<String> {
    let query = target.split_once('?')?.1;
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A plain HTTP/1.1 server on a loopback port, one thread per connection, `Connection: close`.
/// Runs until the test binary ends (it only ever listens on loopback).
fn serve(handler: impl Fn(&Request) -> Answer + Send + Sync + 'static) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let handler = Arc::new(handler);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let handler = handler.clone();
            std::thread::spawn(move || {
                let _ = answer(stream, &*handler);
            });
        }
    });
    port
}

fn answer(stream: TcpStream, handler: &dyn Fn(&Request) -> Answer) -> std::io::Result<()> {
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let at = SystemTime::now();
    let mut words = line.split_whitespace();
    let method = words.next().unwrap_or("GET").to_owned();
    let target = words.next().unwrap_or("/").to_owned();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_lowercase(), v.trim().to_owned());
        }
    }
    let head_only = method == "HEAD";
    let (status, extra, body) = handler(&Request {
        method,
        target,
        at,
        headers,
    });
    let mut out = stream;
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    if !head_only {
        out.write_all(&body)?;
    }
    out.flush()
}
