//! Blobs (the config and the layers): streamed into a [`Sink`] while hashed, never read past
//! their descriptor's size, and fetched again where that helps (see [`super::retry`]): from the
//! bytes already received with a `Range` request when the registry serves ranges (`206`), from
//! the start when it answers the whole blob (`200`). The digest of the whole is checked last.

use std::io::Write;
use std::path::Path;

use reqwest::header::CONTENT_RANGE;
use reqwest::{Response, StatusCode};
use sha2::{Digest, Sha256};

use super::errors::Object;
use super::limits::{self, MAX_CONFIG};
use super::retry::{self, Retry};
use super::transport::{self, Clock, Failure};
use super::{digest_mismatch, LayerRef, Registry, Resolved};
use crate::error::IoContext;
use crate::{Error, Result};

/// Where a blob download stands: what was received and hashed so far (a retry resumes there).
struct Partial {
    hasher: Sha256,
    received: u64,
}

/// Where a blob's bytes go: a file for layers, memory for the config.
trait Sink {
    fn write(&mut self, bytes: &[u8]) -> Result<()>;
    /// Drop what was written: the registry sends the whole blob again.
    fn restart(&mut self) -> Result<()>;
}

impl Sink for Vec<u8> {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.extend_from_slice(bytes);
        Ok(())
    }

    fn restart(&mut self) -> Result<()> {
        self.clear();
        Ok(())
    }
}

/// A layer blob being written to its staging file.
struct FileSink<'a> {
    out: std::io::BufWriter<std::fs::File>,
    path: &'a Path,
}

impl Sink for FileSink<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .ctx(|| format!("write {}", self.path.display()))
    }

    fn restart(&mut self) -> Result<()> {
        use std::io::Seek;
        self.out
            .flush()
            .and_then(|()| self.out.get_mut().set_len(0))
            .and_then(|()| self.out.get_mut().rewind())
            .ctx(|| format!("truncate {}", self.path.display()))
    }
}

impl Registry {
    /// The image config (at most [`MAX_CONFIG`] bytes), verified against its digest and size.
    pub async fn config(&self, resolved: &Resolved) -> Result<Vec<u8>> {
        let what = Object::Config(resolved.config_digest.clone());
        if resolved.config_size > MAX_CONFIG {
            return Err(self.failure_error(Failure::TooLarge(MAX_CONFIG), &what, 0));
        }
        let mut body = Vec::new();
        self.blob(
            &what,
            &resolved.config_digest,
            resolved.config_size,
            &mut body,
            &mut |_: u64| {},
        )
        .await?;
        Ok(body)
    }

    /// Stream layer `index` (of `count`) into `dest` (never whole in memory), hashing as it
    /// goes; fails unless size and digest match the manifest. `progress` gets the bytes
    /// received so far.
    pub async fn download(
        &self,
        layer: &LayerRef,
        (index, count): (usize, usize),
        dest: &Path,
        mut progress: impl FnMut(u64),
    ) -> Result<()> {
        let file = std::fs::File::create(dest).ctx(|| format!("create {}", dest.display()))?;
        let mut sink = FileSink {
            out: std::io::BufWriter::with_capacity(1 << 20, file),
            path: dest,
        };
        let what = Object::Layer(layer.digest.clone(), index + 1, count);
        self.blob(&what, &layer.digest, layer.size, &mut sink, &mut progress)
            .await?;
        sink.out.flush().ctx(|| format!("write {}", dest.display()))
    }

    /// Fetch one blob into `sink`, retrying what may pass (see [`retry`]) from the bytes
    /// already received when the registry serves ranges, from the start otherwise; then check
    /// its digest.
    async fn blob(
        &self,
        what: &Object,
        digest: &str,
        size: u64,
        sink: &mut dyn Sink,
        progress: &mut dyn FnMut(u64),
    ) -> Result<()> {
        let mut partial = Partial {
            hasher: Sha256::new(),
            received: 0,
        };
        let mut retry = Retry::new(self.limits);
        loop {
            let attempt = self
                .blob_attempt(digest, size, &mut partial, sink, progress, &retry.clock())
                .await;
            let failure = match attempt {
                Ok(()) => break,
                Err(f) => f,
            };
            let Some(wait) = retry.after(&failure) else {
                return Err(self.failure_error(failure, what, retry.done));
            };
            let why = self.failure_error(failure, what, 0).to_string();
            let why = why
                .strip_prefix(&format!("{}: ", self.display))
                .unwrap_or(&why);
            let resume = match partial.received {
                0 => String::new(),
                n => format!(", resuming at byte {n}"),
            };
            crate::note!(
                "{}: {why}; retry {}/{} in {}{resume}",
                self.display,
                retry.done,
                retry::MAX_RETRIES,
                limits::seconds(wait)
            );
            tokio::time::sleep(wait).await;
        }
        let got = format!("sha256:{}", hex::encode(partial.hasher.finalize()));
        if got != digest || partial.received != size {
            let kind = if matches!(what, Object::Config(_)) {
                "config"
            } else {
                "layer"
            };
            return Err(digest_mismatch(&self.display, kind, digest, &got));
        }
        Ok(())
    }

    /// One GET of a blob (a range from what `partial` holds, when it holds something), its
    /// bytes hashed into `partial` and written to `sink`, never past `size`.
    async fn blob_attempt(
        &self,
        digest: &str,
        size: u64,
        partial: &mut Partial,
        sink: &mut dyn Sink,
        progress: &mut dyn FnMut(u64),
        clock: &Clock,
    ) -> std::result::Result<(), Failure> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base, self.repository);
        let from = (partial.received > 0 && partial.received < size).then_some(partial.received);
        let mut answer = self.get(&url, None, from, clock).await?;
        let resumed = from.is_some()
            && answer.status() == StatusCode::PARTIAL_CONTENT
            && range_start(&answer) == from;
        if !resumed && partial.received > 0 {
            // The registry sends the whole blob again (no ranges, or not the one asked).
            if answer.status() == StatusCode::PARTIAL_CONTENT {
                return Err(Failure::Final(Error::Registry(format!(
                    "{}: registry {} answered a range other than the one asked for {digest}",
                    self.display, self.host
                ))));
            }
            sink.restart().map_err(Failure::Final)?;
            *partial = Partial {
                hasher: Sha256::new(),
                received: 0,
            };
        }
        if answer
            .content_length()
            .is_some_and(|n| partial.received + n > size)
        {
            return Err(Failure::Final(longer_blob(&self.display, digest)));
        }
        while let Some(piece) = transport::chunk(clock, &mut answer).await? {
            if partial.received + piece.len() as u64 > size {
                return Err(Failure::Final(longer_blob(&self.display, digest)));
            }
            partial.hasher.update(&piece);
            sink.write(&piece).map_err(Failure::Final)?;
            partial.received += piece.len() as u64;
            progress(partial.received);
        }
        if partial.received < size {
            // The registry ended the body early (a dropped connection can look like this).
            return Err(Failure::Interrupted(format!(
                "the body ended after {} of {size} bytes",
                partial.received
            )));
        }
        Ok(())
    }
}

/// Where a `206` answer's `Content-Range: bytes START-END/SIZE` starts.
fn range_start(answer: &Response) -> Option<u64> {
    let v = answer.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    v.strip_prefix("bytes ")?
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
}

fn longer_blob(r: &str, digest: &str) -> Error {
    digest_mismatch(r, "blob", digest, "a blob longer than its descriptor says")
}
