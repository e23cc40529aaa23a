//! `kill ID [SIGNAL]`: a number or a name, with or without `SIG`, any case (runc's rule).

use std::str::FromStr;

use nix::sys::signal::Signal;

use crate::{Error, Result};

/// Parse `value` (`9`, `KILL`, `SIGKILL`, `sigterm`...).
pub fn parse(value: &str) -> Result<Signal> {
    let bad = || Error::Usage(format!("invalid signal {value:?}"));
    if let Ok(n) = value.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let upper = value.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    Signal::from_str(&format!("SIG{name}")).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names_with_or_without_sig() {
        for (given, want) in [
            ("9", Signal::SIGKILL),
            ("KILL", Signal::SIGKILL),
            ("SIGKILL", Signal::SIGKILL),
            ("term", Signal::SIGTERM),
            ("SigUsr1", Signal::SIGUSR1),
            ("15", Signal::SIGTERM),
        ] {
            assert_eq!(parse(given).unwrap(), want, "{given}");
        }
        for bad in ["", "0", "99", "SIG", "NOPE", "-9"] {
            assert_eq!(parse(bad).unwrap_err().exit_code(), 125, "{bad}");
        }
    }
}
