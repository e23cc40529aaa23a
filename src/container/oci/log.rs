//! runc's `--log FILE --log-format text|json --debug`: engines read the log file, containerd
//! shows its last `error` line. One line per message; JSON lines are `{"level","msg","time"}`.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::PathBuf;

use crate::{Error, Result};

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

impl Format {
    /// `text` or `json` (anything else: one line, exit 125).
    pub fn parse(value: &str) -> Result<Format> {
        match value {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            other => Err(Error::Usage(format!(
                "invalid --log-format {other:?}: expected text or json"
            ))),
        }
    }
}

/// Where the OCI commands log; without a file, nothing is logged (errors still go to stderr).
#[derive(Debug, Clone, Default)]
pub struct Log {
    pub file: Option<PathBuf>,
    pub format: Format,
    /// `--debug`: debug lines too.
    pub debug: bool,
}

impl Log {
    /// An `error` line (best effort: a log that cannot be written never hides the error).
    pub fn error(&self, msg: &str) {
        self.write("error", msg);
    }

    /// A `debug` line, with `--debug` only.
    pub fn debug(&self, msg: &str) {
        if self.debug {
            self.write("debug", msg);
        }
    }

    fn write(&self, level: &str, msg: &str) {
        let Some(path) = &self.file else { return };
        let line = render(self.format, level, msg, &super::state::now_rfc3339());
        if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// One log line, newline-terminated.
fn render(format: Format, level: &str, msg: &str, time: &str) -> String {
    match format {
        Format::Json => {
            let value = serde_json::json!({"level": level, "msg": msg, "time": time});
            format!("{value}\n")
        }
        Format::Text => format!(
            "time=\"{time}\" level={level} msg={:?}\n",
            msg.replace('\n', " ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_have_level_msg_time() {
        let msg = format!("boom {} \"quoted\"\nnext", std::process::id());
        let line = render(Format::Json, "error", &msg, "2026-01-01T00:00:00Z");
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], msg.as_str());
        assert_eq!(v["time"], "2026-01-01T00:00:00Z");
        assert_eq!(v.as_object().unwrap().len(), 3);
    }

    #[test]
    fn formats_parse_and_text_stays_one_line() {
        assert_eq!(Format::parse("json").unwrap(), Format::Json);
        assert_eq!(Format::parse("text").unwrap(), Format::Text);
        assert_eq!(Format::parse("xml").unwrap_err().exit_code(), 125);
        let line = render(Format::Text, "error", "a\nb", "t");
        assert_eq!(line, "time=\"t\" level=error msg=\"a b\"\n");
    }
}
