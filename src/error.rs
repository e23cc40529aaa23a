//! One error type for the whole runtime, so `main` can map every failure to the
//! contract's exit codes (125 runtime, 126 not executable, 127 not found) in one place.

use std::io;
use std::path::PathBuf;

/// Every way the runtime can fail. Variants carry a ready-to-print, one-line message.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user asked for something malformed (bad option value, bad reference, bad volume spec).
    #[error("{0}")]
    Usage(String),
    /// A privilege or host capability is missing (not root, no cgroup controller...).
    #[error("{0}")]
    Host(String),
    /// Talking to a registry failed (unreachable, unknown image, auth refused...).
    #[error("{0}")]
    Registry(String),
    /// The image content is invalid (digest mismatch, unsupported media type, hostile layer...).
    #[error("{0}")]
    Image(String),
    /// The image is not in the store.
    #[error("image not found: {0}")]
    ImageNotFound(String),
    /// The container's command does not exist inside the container.
    #[error("{0}: command not found")]
    CommandNotFound(String),
    /// The container's command exists but cannot be executed.
    #[error("{0}: permission denied / not executable")]
    NotExecutable(String),
    /// An OS call failed; `context` says what the runtime was doing.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// Anything else that went wrong inside the runtime.
    #[error("{0}")]
    Runtime(String),
    /// SIGINT/SIGTERM/SIGHUP/SIGQUIT reached the runtime before the command started: the
    /// half-built container is torn down and `run` exits 128+N, as if the command had died of it.
    #[error("interrupted by {0} while the container was starting")]
    Interrupted(nix::sys::signal::Signal),
}

impl Error {
    /// Exit code of the `run`/`pull` commands for this error (the contract's table).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::CommandNotFound(_) => 127,
            Error::NotExecutable(_) => 126,
            Error::Interrupted(signal) => 128 + *signal as i32,
            _ => 125,
        }
    }

    /// Wrap an `io::Error` with what we were doing, so the user's one line says why.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Same as [`Error::io`] for a path operation: "<what> <path>: <errno>".
    pub fn path(what: &str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::io(format!("{what} {}", path.into().display()), source)
    }
}

impl From<nix::Error> for Error {
    fn from(e: nix::Error) -> Self {
        Error::Runtime(e.to_string())
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach context to `io::Result`s concisely: `fs::read(p).ctx(|| format!("read {p}"))?`.
pub trait IoContext<T> {
    fn ctx<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Error::io(f(), e))
    }
}

impl<T> IoContext<T> for nix::Result<T> {
    fn ctx<S: Into<String>>(self, f: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| Error::io(f(), io::Error::from(e)))
    }
}
