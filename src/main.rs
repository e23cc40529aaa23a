//! Thin CLI: parse arguments, call the library, map errors to the contract's exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use devoxx_docker::config::{Paths, DEFAULT_ROOT, DEFAULT_VOLUMES};
use devoxx_docker::container::id::is_live;
use devoxx_docker::container::oci::{self, log::Log};
use devoxx_docker::container::security::SecurityArgs;
use devoxx_docker::container::spec::RunOptions;
use devoxx_docker::{container, image, Error};

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
    /// OCI commands: also write errors (and --debug lines) to FILE.
    #[arg(long, value_name = "FILE")]
    log: Option<PathBuf>,
    /// OCI commands: the --log file's format, text or json ({"level","msg","time"} lines).
    #[arg(long = "log-format", default_value = "text")]
    log_format: String,
    /// OCI commands: debug lines in the --log file.
    #[arg(long)]
    debug: bool,
    /// Refused: cgroups are managed through cgroupfs (systemd's driver is not implemented).
    #[arg(long = "systemd-cgroup")]
    systemd_cgroup: bool,
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
    /// OCI: create a container from a bundle; its init waits for `start`.
    Create(CreateArgs),
    /// OCI: start a created container's program.
    Start {
        /// Container id.
        id: String,
    },
    /// OCI: run a process in a running container (--process FILE, or ID CMD...).
    Exec(ExecArgs),
    /// OCI: print a container's state as JSON.
    State {
        /// Container id.
        id: String,
    },
    /// OCI: send a signal to a container's init (or, with --all, to all its processes).
    Kill {
        /// Every process of the container, not only its init.
        #[arg(short, long)]
        all: bool,
        /// Container id.
        id: String,
        /// Number or name, with or without SIG.
        #[arg(default_value = "TERM")]
        signal: String,
    },
    /// OCI: remove a stopped container's state and cgroup (--force: kill it first).
    Delete {
        /// Kill the container if it is not stopped.
        #[arg(short, long)]
        force: bool,
        /// Container id.
        id: String,
    },
    /// OCI: list a container's processes.
    Ps {
        /// json (an array of pids) or table.
        #[arg(short, long, default_value = "table")]
        format: String,
        /// Container id.
        id: String,
    },
    /// OCI: print the features this runtime implements (JSON).
    Features,
}

/// runc's `exec` options.
#[derive(Args, Debug)]
struct ExecArgs {
    /// A JSON file holding the process (the config's `process` object).
    #[arg(short, long)]
    process: Option<PathBuf>,
    /// Write the process's pid there.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Do not wait for the process.
    #[arg(short, long)]
    detach: bool,
    /// Refused: terminals are not supported yet.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Refused: terminals are not supported yet.
    #[arg(short, long)]
    tty: bool,
    /// Pass file descriptors 3..3+N-1 to the process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Container id.
    id: String,
    /// The command (instead of --process), with its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// runc's `create` options (accepted before or after the id).
#[derive(Args, Debug)]
struct CreateArgs {
    /// The bundle directory (holding config.json).
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Write the init's pid there.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Unix socket to send the pty master to (needs process.terminal, not supported yet).
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Move and chroot instead of pivot_root.
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Accepted: no new session keyring is ever created.
    #[arg(long = "no-new-keyring")]
    _no_new_keyring: bool,
    /// Pass file descriptors 3..3+N-1 to the container.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Container id.
    id: String,
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
    if is_oci(&cli.command) {
        return run_oci(&paths, &cli);
    }
    let result = match cli.command {
        Command::Pull { image, mirrors } => {
            image::pull(&paths, &image, &mirrors.registry_mirror, &is_live).map(|_| 0)
        }
        Command::Images => image::print_images(&paths).map(|_| 0),
        Command::Rmi { image, force } => image::remove(&paths, &image, force, &is_live).map(|_| 0),
        Command::Run(args) => container::run(&paths, args.into_options()),
        _ => unreachable!("OCI commands are dispatched by run_oci"),
    };
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => report(&e),
    }
}

fn is_oci(command: &Command) -> bool {
    !matches!(
        command,
        Command::Pull { .. } | Command::Images | Command::Rmi { .. } | Command::Run(_)
    )
}

/// The OCI commands: their output on stdout, an error also in the `--log` file.
fn run_oci(paths: &Paths, cli: &Cli) -> ExitCode {
    let log = Log {
        file: cli.log.clone(),
        format: oci::log::Format::parse(&cli.log_format).unwrap_or_default(),
        debug: cli.debug,
    };
    log.debug(&format!("{:?}", cli.command));
    if let Command::Exec(args) = &cli.command {
        return match oci_exec(paths, cli, args) {
            Ok(code) => ExitCode::from(code as u8),
            Err(e) => {
                log.error(&e.to_string());
                report(&e)
            }
        };
    }
    let result = oci_command(paths, cli);
    match result {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            log.error(&e.to_string());
            report(&e)
        }
    }
}

/// The global options every OCI command checks first.
fn oci_globals(cli: &Cli) -> Result<(), Error> {
    oci::log::Format::parse(&cli.log_format)?;
    if cli.systemd_cgroup {
        return Err(Error::Usage(
            "--systemd-cgroup is not supported: cgroups are managed through cgroupfs \
             (podman: --cgroup-manager cgroupfs)"
                .into(),
        ));
    }
    Ok(())
}

/// `exec`: the process's exit code (0 with --detach).
fn oci_exec(paths: &Paths, cli: &Cli, args: &ExecArgs) -> Result<i32, Error> {
    oci_globals(cli)?;
    if args.tty || args.console_socket.is_some() {
        return Err(Error::Usage(
            "exec --tty/--console-socket: terminals are not supported yet".into(),
        ));
    }
    oci::exec(
        paths,
        &oci::ExecOptions {
            id: args.id.clone(),
            process: args.process.clone(),
            args: args.command.clone(),
            pid_file: args.pid_file.clone(),
            detach: args.detach,
            preserve_fds: args.preserve_fds,
        },
    )
}

fn oci_command(paths: &Paths, cli: &Cli) -> Result<String, Error> {
    oci_globals(cli)?;
    let none = |()| String::new();
    match &cli.command {
        Command::Create(args) => oci::create(
            paths,
            &oci::CreateOptions {
                id: args.id.clone(),
                bundle: args.bundle.clone(),
                pid_file: args.pid_file.clone(),
                console_socket: args.console_socket.clone(),
                no_pivot: args.no_pivot,
                preserve_fds: args.preserve_fds,
            },
        )
        .map(none),
        Command::Start { id } => oci::start(paths, id).map(none),
        Command::State { id } => oci::state(paths, id),
        Command::Kill { all, id, signal } => oci::kill(paths, id, signal, *all).map(none),
        Command::Delete { force, id } => oci::delete(paths, id, *force).map(none),
        Command::Ps { format, id } => oci::ps(paths, id, format),
        Command::Features => Ok(oci::features()),
        _ => unreachable!("not an OCI command"),
    }
}

/// One line on stderr, prefixed, then the contract's exit code.
fn report(e: &Error) -> ExitCode {
    eprintln!("devoxx-docker: {e}");
    ExitCode::from(e.exit_code() as u8)
}
