//! The OCI runtime command line (runc's), parsed by clap and handed to
//! [`devoxx_docker::container::oci`]: the globals engines pass before the subcommand, the
//! subcommands, and their output (stdout) and errors (stderr, and the `--log` file).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use devoxx_docker::config::Paths;
use devoxx_docker::container::oci::{self, log::Log};
use devoxx_docker::Error;

/// The globals runc takes before the subcommand.
#[derive(Args, Debug)]
pub struct OciGlobals {
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
}

/// runc's subcommands.
#[derive(Subcommand, Debug)]
pub enum OciCommand {
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
pub struct ExecArgs {
    /// A JSON file holding the process (the config's `process` object).
    #[arg(short, long)]
    process: Option<PathBuf>,
    /// Write the process's pid there.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Do not wait for the process.
    #[arg(short, long)]
    detach: bool,
    /// Unix socket to send the pty master to (the process's terminal).
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// The command (short form) gets a terminal; needs --console-socket.
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
pub struct CreateArgs {
    /// The bundle directory (holding config.json).
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Write the init's pid there.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Unix socket to send the pty master to (needs process.terminal true).
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

/// The OCI commands: their output on stdout, an error also in the `--log` file.
pub fn run(paths: &Paths, globals: &OciGlobals, command: &OciCommand) -> ExitCode {
    let log = Log {
        file: globals.log.clone(),
        format: oci::log::Format::parse(&globals.log_format).unwrap_or_default(),
        debug: globals.debug,
    };
    log.debug(&format!("{:?}", command));
    if let OciCommand::Exec(args) = command {
        return match exec(paths, globals, args) {
            Ok(code) => ExitCode::from(code as u8),
            Err(e) => {
                log.error(&e.to_string());
                crate::report(&e)
            }
        };
    }
    let result = dispatch(paths, globals, command);
    match result {
        Ok(out) => {
            if !out.is_empty() {
                println!("{out}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            log.error(&e.to_string());
            crate::report(&e)
        }
    }
}

/// The global options every OCI command checks first.
fn check_globals(globals: &OciGlobals) -> Result<(), Error> {
    oci::log::Format::parse(&globals.log_format)?;
    if globals.systemd_cgroup {
        return Err(Error::Usage(
            "--systemd-cgroup is not supported: cgroups are managed through cgroupfs \
             (podman: --cgroup-manager cgroupfs)"
                .into(),
        ));
    }
    Ok(())
}

/// `exec`: the process's exit code (0 with --detach).
fn exec(paths: &Paths, globals: &OciGlobals, args: &ExecArgs) -> Result<i32, Error> {
    check_globals(globals)?;
    oci::exec(
        paths,
        &oci::ExecOptions {
            id: args.id.clone(),
            process: args.process.clone(),
            args: args.command.clone(),
            pid_file: args.pid_file.clone(),
            detach: args.detach,
            preserve_fds: args.preserve_fds,
            tty: args.tty,
            console_socket: args.console_socket.clone(),
        },
    )
}

fn dispatch(paths: &Paths, globals: &OciGlobals, command: &OciCommand) -> Result<String, Error> {
    check_globals(globals)?;
    let none = |()| String::new();
    match command {
        OciCommand::Create(args) => oci::create(
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
        OciCommand::Start { id } => oci::start(paths, id).map(none),
        OciCommand::State { id } => oci::state(paths, id),
        OciCommand::Kill { all, id, signal } => oci::kill(paths, id, signal, *all).map(none),
        OciCommand::Delete { force, id } => oci::delete(paths, id, *force).map(none),
        OciCommand::Ps { format, id } => oci::ps(paths, id, format),
        OciCommand::Features => Ok(oci::features()),
        OciCommand::Exec(_) => unreachable!("exec is dispatched by run"),
    }
}
