//! What to run: the CLI's options as given, then resolved once against the image config.

/// `run`'s options exactly as the user gave them (values parsed and validated by the modules
/// that own them, so every bad value gets the same one-line error and exit 125).
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub image: String,
    pub command: Vec<String>,
    pub hostname: String,
    pub memory: String,
    pub cpus: String,
    pub pids_limit: Option<String>,
    pub volumes: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub network: String,
    pub stop_timeout: u64,
}
