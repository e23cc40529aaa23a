//! What one run of the probe does: its job lines, arguments, volumes and stdin.

use crate::grade::config::Volume;

/// One run of the probe as the container's command: the job it does (one subcommand and its
/// arguments per line) and the arguments it is called with (none but in the process step's
/// `args` check: every other check needs a one-word command).
pub struct Job<'a> {
    pub lines: Vec<Vec<String>>,
    pub args: Vec<String>,
    pub volumes: &'a [Volume],
    pub stdin: Option<&'a [u8]>,
}

impl<'a> Job<'a> {
    /// A job of these lines, with no argument, volume or stdin.
    pub fn of(lines: &[&[&str]]) -> Job<'a> {
        Job {
            lines: lines
                .iter()
                .map(|l| l.iter().map(|w| w.to_string()).collect())
                .collect(),
            args: Vec::new(),
            volumes: &[],
            stdin: None,
        }
    }

    /// With `volumes` passed to the runtime.
    pub fn volumes(mut self, volumes: &'a [Volume]) -> Job<'a> {
        self.volumes = volumes;
        self
    }

    /// With `data` on the runtime's stdin.
    pub fn stdin(mut self, data: &'a [u8]) -> Job<'a> {
        self.stdin = Some(data);
        self
    }

    /// With these arguments after the one-word command.
    pub fn args(mut self, args: &[&str]) -> Job<'a> {
        self.args = args.iter().map(|a| a.to_string()).collect();
        self
    }
}
