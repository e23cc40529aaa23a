//! HTTP to a registry with every wait bounded: the answer's headers and each read of its body
//! within the stall timeout (and within a deadline when one applies), bodies read chunk by
//! chunk and capped as they stream in, never buffered whole on the registry's word.
//!
//! What went wrong is kept as a [`Failure`], so the blob retries can tell what is worth another
//! try from what is final, and [`super::errors`] can word it for the user.

use std::future::Future;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, Response};

use super::limits::{Limits, MAX_SMALL_BODY};
use crate::Error;

/// Why one request failed.
#[derive(Debug)]
pub(super) enum Failure {
    /// No answer at all: connecting, TLS, or the request itself failed.
    Request(reqwest::Error),
    /// Nothing received for this long.
    Stalled(Duration),
    /// Not done within this deadline.
    Deadline(Duration),
    /// The connection broke in the middle of the body.
    Interrupted(String),
    /// A status that is not success, with the answer's headers and (the start of) its body.
    Status {
        code: u16,
        headers: Box<HeaderMap>,
        body: Vec<u8>,
    },
    /// The body is larger than this many bytes.
    TooLarge(u64),
    /// Final whatever the registry does next: a blob longer than its descriptor, a bad
    /// range answer, or a local failure (disk full).
    Final(Error),
}

impl Failure {
    /// Worth another try: the registry or the network may do better next time.
    pub(super) fn is_transient(&self) -> bool {
        match self {
            Failure::Request(e) => !super::errors::is_certificate_error(e),
            Failure::Stalled(_) | Failure::Deadline(_) | Failure::Interrupted(_) => true,
            Failure::Status { code, .. } => *code == 429 || (500..600).contains(code),
            Failure::TooLarge(_) | Failure::Final(_) => false,
        }
    }

    /// The answer's headers when the registry answered with a failure status.
    pub(super) fn headers(&self) -> Option<&HeaderMap> {
        match self {
            Failure::Status { headers, .. } => Some(headers),
            _ => None,
        }
    }
}

/// How long each wait of a request may take: the stall timeout, and a deadline in all when
/// one applies (token and manifest requests, blob retries).
#[derive(Debug, Clone, Copy)]
pub(super) struct Clock {
    stall: Duration,
    /// When everything must be done, and the span it was set for (for the message).
    deadline: Option<(Instant, Duration)>,
}

impl Clock {
    /// Only the stall timeout.
    pub(super) fn stall(limits: &Limits) -> Clock {
        Clock {
            stall: limits.stall,
            deadline: None,
        }
    }

    /// The stall timeout, and everything done within `total` from now.
    pub(super) fn deadline(limits: &Limits, total: Duration) -> Clock {
        Clock::stall(limits).until(Instant::now() + total, total)
    }

    /// This clock, ending at `at` at the latest (`total` is how the message names it).
    pub(super) fn until(self, at: Instant, total: Duration) -> Clock {
        Clock {
            deadline: Some((at, total)),
            ..self
        }
    }

    /// The clock for a token request made on the way: this one when it has a deadline (the
    /// token shares it), else the request timeout from now.
    pub(super) fn for_token(&self, limits: &Limits) -> Clock {
        match self.deadline {
            Some(_) => *self,
            None => Clock::deadline(limits, limits.request),
        }
    }

    /// Run `fut`, failing when it takes longer than a stall or reaches the deadline.
    pub(super) async fn bound<T>(&self, fut: impl Future<Output = T>) -> Result<T, Failure> {
        let left = self
            .deadline
            .map(|(at, total)| (at.saturating_duration_since(Instant::now()), total));
        let (limit, by_deadline) = match left {
            Some((left, total)) if left <= self.stall => (left, Some(total)),
            _ => (self.stall, None),
        };
        tokio::time::timeout(limit, fut)
            .await
            .map_err(|_| match by_deadline {
                Some(total) => Failure::Deadline(total),
                None => Failure::Stalled(self.stall),
            })
    }
}

/// A client whose connecting is bounded; every other wait is bounded by a [`Clock`].
/// reqwest's defaults are the ones oci-client used: the system's trust store (or
/// `SSL_CERT_FILE`/`SSL_CERT_DIR`), redirects followed with `Authorization` dropped when they
/// leave the origin.
pub(super) fn client(limits: &Limits) -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .connect_timeout(limits.connect())
        .user_agent(concat!("devoxx-docker/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::Registry(format!("cannot set up HTTP: {e}")))
}

/// Send `request`; a status outside 2xx is a [`Failure::Status`].
pub(super) async fn send(clock: &Clock, request: RequestBuilder) -> Result<Response, Failure> {
    let answer = clock
        .bound(request.send())
        .await?
        .map_err(Failure::Request)?;
    if answer.status().is_success() {
        Ok(answer)
    } else {
        Err(status_failure(clock, answer).await)
    }
}

/// The next piece of the body, `None` at its end.
pub(super) async fn chunk(
    clock: &Clock,
    answer: &mut Response,
) -> Result<Option<bytes::Bytes>, Failure> {
    clock
        .bound(answer.chunk())
        .await?
        .map_err(|e| Failure::Interrupted(super::errors::root_cause(&e)))
}

/// The whole body, refused as soon as it is known to pass `cap` bytes (announced or sent).
pub(super) async fn read_capped(
    clock: &Clock,
    mut answer: Response,
    cap: u64,
) -> Result<Vec<u8>, Failure> {
    if answer.content_length().is_some_and(|n| n > cap) {
        return Err(Failure::TooLarge(cap));
    }
    let mut body = Vec::new();
    while let Some(piece) = chunk(clock, &mut answer).await? {
        if (body.len() + piece.len()) as u64 > cap {
            return Err(Failure::TooLarge(cap));
        }
        body.extend_from_slice(&piece);
    }
    Ok(body)
}

/// A failure status with its headers and the first [`MAX_SMALL_BODY`] bytes of its body
/// (whatever cannot be read in time is left out: the status says enough).
async fn status_failure(clock: &Clock, mut answer: Response) -> Failure {
    let code = answer.status().as_u16();
    let headers = Box::new(answer.headers().clone());
    let mut body = Vec::new();
    while let Ok(Some(piece)) = chunk(clock, &mut answer).await {
        let room = MAX_SMALL_BODY as usize - body.len();
        body.extend_from_slice(&piece[..piece.len().min(room)]);
        if body.len() == MAX_SMALL_BODY as usize {
            break;
        }
    }
    Failure::Status {
        code,
        headers,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(stall_ms: u64) -> Limits {
        Limits {
            stall: Duration::from_millis(stall_ms),
            request: Duration::from_secs(60),
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_wait_ends_at_the_stall_or_the_deadline_whichever_comes_first() {
        let never = std::future::pending::<()>;
        let stall = Clock::stall(&limits(300));
        assert!(matches!(
            stall.bound(never()).await,
            Err(Failure::Stalled(d)) if d == Duration::from_millis(300)
        ));
        let deadline = Clock::deadline(&limits(300), Duration::from_millis(100));
        assert!(matches!(
            deadline.bound(never()).await,
            Err(Failure::Deadline(d)) if d == Duration::from_millis(100)
        ));
        assert!(matches!(stall.bound(async { 7 }).await, Ok(7)));
    }

    #[test]
    fn only_what_may_pass_is_transient() {
        let status = |code| Failure::Status {
            code,
            headers: Box::default(),
            body: Vec::new(),
        };
        for code in [429, 500, 502, 503] {
            assert!(status(code).is_transient(), "{code}");
        }
        for code in [400, 401, 403, 404, 416] {
            assert!(!status(code).is_transient(), "{code}");
        }
        assert!(Failure::Stalled(Duration::ZERO).is_transient());
        assert!(Failure::Interrupted("reset".into()).is_transient());
        assert!(!Failure::TooLarge(1).is_transient());
        assert!(!Failure::Final(Error::Image("x".into())).is_transient());
    }
}
