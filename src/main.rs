//! Thin CLI: parse arguments, call the library, map errors to the contract's exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use devoxx_docker::config::{Paths, DEFAULT_ROOT, DEFAULT_VOLUMES};
use devoxx_docker::container::id::is_live;
use devoxx_docker::container::security::SecurityArgs;
use devoxx_docker::container::spec::RunOptions;
use devoxx_docker::{container, image, Error};

mod oci_cli;

/// `--version`, runc's lines: the runtime's version and the OCI runtime spec it implements.
const LONG_VERSION: &str = concat!("version ", env!("CARGO_PKG_VERSION"), "\nspec: ", "1.1.0");

/// A lean Linux container runtime (devoxx-docker workshop).
#[derive(Parser, Debug)]
#[command(
    name = "devoxx-docker",
    version,
    long_version = LONG_VERSION,
    about,
    propagate_version = true
)]
struct Cli {
    /// Image store directory; OCI containers' state lives under it too, in `.oci/<id>/`.
    #[arg(long, global = true, env = "DEVOXX_ROOT", default_value = DEFAULT_ROOT)]
    root: PathBuf,
    #[command(flatten)]
    oci: oci_cli::OciGlobals,
    /// Named volumes directory.
    #[arg(long, global = true, env = "DEVOXX_VOLUMES", default_value = DEFAULT_VOLUMES, hide = true)]
    volumes_root: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Pull an image from a registry into the store.
    Pull {
        /// Image reference: alpine, name:tag, user/name, host:port/a/b:tag, name@sha256:...
        image: String,
        #[command(flatten)]
        mirrors: MirrorArgs,
    },
    /// Run a command in a new container.
    Run(Box<RunArgs>),
    /// List pulled images.
    Images,
    /// Remove a pulled image.
    Rmi {
        /// Image reference or store name.
        image: String,
        /// Remove an image running containers use: it leaves the store now, its files are
        /// deleted when the last of them exits.
        #[arg(short, long)]
        force: bool,
    },
    #[command(flatten)]
    Oci(oci_cli::OciCommand),
}

#[derive(Args, Debug)]
struct MirrorArgs {
    /// Registry mirror for Docker Hub images, tried before the Hub (repeatable, or comma-separated).
    #[arg(
        long = "registry-mirror",
        env = "DEVOXX_REGISTRY_MIRROR",
        value_delimiter = ','
    )]
    registry_mirror: Vec<String>,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Hostname inside the container (UTS namespace).
    #[arg(long, default_value = "container")]
    hostname: String,
    /// Memory limit: 100m, 1g, bytes; 0 or max = none.
    #[arg(short = 'm', long, default_value = "100m", allow_hyphen_values = true)]
    memory: String,
    /// CPU limit as a fraction of CPUs (0.5 = half a CPU); 0 = none.
    #[arg(long, default_value = "0.5", allow_hyphen_values = true)]
    cpus: String,
    /// Maximum number of processes.
    #[arg(long, allow_hyphen_values = true)]
    pids_limit: Option<String>,
    /// Bind mount: SRC:DST[:ro|:rw]; SRC starting with /, ./ or ../ is a host path, else a named volume.
    #[arg(short = 'v', long = "volume", allow_hyphen_values = true)]
    volumes: Vec<String>,
    /// Environment variable KEY=VALUE.
    #[arg(short = 'e', long = "env", allow_hyphen_values = true)]
    env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long)]
    workdir: Option<String>,
    /// Network mode: host, none or bridge.
    #[arg(long, default_value = "host")]
    network: String,
    /// Seconds to wait after forwarding SIGINT/SIGTERM before killing the container.
    #[arg(long, default_value_t = 10)]
    stop_timeout: u64,
    /// Every capability, no seccomp filter, nothing masked, devices usable in volumes.
    #[arg(long)]
    privileged: bool,
    /// Add a capability to the default set (NET_ADMIN, CAP_NET_ADMIN, ALL).
    #[arg(long = "cap-add")]
    cap_add: Vec<String>,
    /// Drop a capability from the default set (CHOWN, CAP_CHOWN, ALL).
    #[arg(long = "cap-drop")]
    cap_drop: Vec<String>,
    /// seccomp=unconfined (no seccomp filter) or no-new-privileges[=true|false].
    #[arg(long = "security-opt")]
    security_opt: Vec<String>,
    /// Run as USER[:GROUP] (names or numbers, resolved in the image's /etc/passwd and /etc/group).
    #[arg(short = 'u', long, allow_hyphen_values = true)]
    user: Option<String>,
    /// Mount the container's root read-only (volumes, --tmpfs, /dev and /etc files stay as they are).
    #[arg(long)]
    read_only: bool,
    /// Mount a tmpfs: PATH[:size=N,mode=OCTAL,uid=N,gid=N,ro,exec,...] (default nosuid,nodev,noexec).
    #[arg(long, allow_hyphen_values = true)]
    tmpfs: Vec<String>,
    /// Resource limit of the command: NAME=SOFT[:HARD] (nofile, nproc, core, ...; unlimited or -1).
    #[arg(long = "ulimit", allow_hyphen_values = true)]
    ulimit: Vec<String>,
    /// Cgroup namespace: private or host (default: private on cgroup v2, host on v1).
    #[arg(long, allow_hyphen_values = true)]
    cgroupns: Option<String>,
    /// Allocate a pseudo-terminal for the container (its /dev/console and /dev/pts/0).
    #[arg(short = 't', long)]
    tty: bool,
    /// Keep stdin attached: with -t, relayed to the container's terminal (raw mode on yours).
    #[arg(short = 'i', long)]
    interactive: bool,
    #[command(flatten)]
    mirrors: MirrorArgs,
    /// Image to run.
    image: String,
    /// Command and arguments (default: the image's Entrypoint/Cmd).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

impl RunArgs {
    fn into_options(self: Box<Self>) -> RunOptions {
        RunOptions {
            image: self.image,
            command: self.command,
            hostname: self.hostname,
            memory: self.memory,
            cpus: self.cpus,
            pids_limit: self.pids_limit,
            volumes: self.volumes,
            env: self.env,
            workdir: self.workdir,
            network: self.network,
            stop_timeout: self.stop_timeout,
            security: SecurityArgs {
                privileged: self.privileged,
                cap_add: self.cap_add,
                cap_drop: self.cap_drop,
                security_opt: self.security_opt,
            },
            registry_mirrors: self.mirrors.registry_mirror,
            user: self.user,
            read_only: self.read_only,
            tmpfs: self.tmpfs,
            ulimits: self.ulimit,
            cgroupns: self.cgroupns,
            tty: self.tty,
            interactive: self.interactive,
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 125 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let paths = Paths {
        root: cli.root.clone(),
        volumes: cli.volumes_root.clone(),
    };
    let result = match cli.command {
        Command::Pull { image, mirrors } => {
            image::pull(&paths, &image, &mirrors.registry_mirror, &is_live).map(|_| 0)
        }
        Command::Images => image::print_images(&paths).map(|_| 0),
        Command::Rmi { image, force } => image::remove(&paths, &image, force, &is_live).map(|_| 0),
        Command::Run(args) => container::run(&paths, args.into_options()),
        Command::Oci(command) => return oci_cli::run(&paths, &cli.oci, &command),
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => report(&e),
    }
}

/// One line on stderr, prefixed, then the contract's exit code.
pub(crate) fn report(e: &Error) -> ExitCode {
    eprintln!("devoxx-docker: {e}");
    ExitCode::from(e.exit_code() as u8)
}
