//! The terminal's foreground, given back to the runtime when an interactive container took it.

use std::os::fd::AsFd;

/// Hands the terminal's foreground back to the runtime's process group when an interactive
/// container (a shell with job control) took it, so the user's shell gets a sane terminal.
#[derive(Debug)]
pub struct TerminalGuard {
    restore: bool,
}

impl TerminalGuard {
    /// Remember whether the runtime is the terminal's foreground job now.
    pub fn capture() -> TerminalGuard {
        let stdin = std::io::stdin();
        let restore = nix::unistd::isatty(stdin.as_fd()).unwrap_or(false)
            && nix::unistd::tcgetpgrp(stdin.as_fd()).ok() == Some(nix::unistd::getpgrp());
        TerminalGuard { restore }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        if self.restore {
            let stdin = std::io::stdin();
            let _ = nix::unistd::tcsetpgrp(stdin.as_fd(), nix::unistd::getpgrp());
        }
    }
}
