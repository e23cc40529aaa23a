//! Thin CLI of the grader: `check` (in the guest), `collect` (on the host, from the guest's
//! console), `config` (validate a devoxx-grade.toml), `merge` (a class table from many reports).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use devoxx_docker::grade::{
    self, check, config::Config, console, render, report, workshop::Workshop,
};

/// Grade devoxx-docker workshop submissions.
#[derive(Parser, Debug)]
#[command(name = "devoxx-docker-grade", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Grade one submission (inside the grading VM only: it runs the submission as root).
    Check {
        /// The submission's executable.
        #[arg(long)]
        runtime: PathBuf,
        /// Directory the submission runs from (default: the executable's directory's parent).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// devoxx-grade.toml (default: DIR/devoxx-grade.toml if present).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Steps to grade, comma-separated (default: the workshop's, all six without one).
        #[arg(long, value_delimiter = ',')]
        steps: Vec<String>,
        /// The teacher's workshop file (default: the devoxx-docker workshop).
        #[arg(long)]
        workshop: Option<PathBuf>,
        /// Name in the reports.
        #[arg(long, default_value = "submission")]
        name: String,
        /// Write report.json, report.md and junit.xml here too.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long, default_value = "/fs")]
        store: PathBuf,
        #[arg(long, default_value = "/bin/busybox")]
        busybox: PathBuf,
        #[arg(long, env = "DEVOXX_PROBE", default_value = "/usr/local/bin/probe")]
        probe: PathBuf,
        #[arg(long, default_value = "/tmp/devoxx-grade")]
        scratch: PathBuf,
        /// Run even outside the grading VM (a disposable machine of your own).
        #[arg(long, hide = true)]
        disposable_machine: bool,
        /// Sign the console lines with this secret (read, then deleted before any run).
        #[arg(long)]
        secret_file: Option<PathBuf>,
        /// Write the signed lines here (the guest's virtio serial port only one process can
        /// hold open: opened before the first run, nothing a submission runs can write there),
        /// not on stdout.
        #[arg(long)]
        report_to: Option<PathBuf>,
    },
    /// Rebuild the report from a guest's console log and write report.json/.md and junit.xml.
    Collect {
        #[arg(long)]
        console: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        name: String,
        #[arg(long, value_delimiter = ',')]
        steps: Vec<String>,
        /// Why the guest stopped early, if it did (timeout, crash).
        #[arg(long)]
        guest_problem: Option<String>,
        /// Seconds the whole grading took on the host (boot included).
        #[arg(long)]
        seconds: Option<f64>,
        /// Grading could not even start (build failure...): the report says so.
        #[arg(long)]
        error: Option<String>,
        /// The secret the guest's lines are signed with.
        #[arg(long)]
        secret_file: Option<PathBuf>,
    },
    /// GitHub Classroom's results, one line `<step>=<base64 JSON>` per step from REPORT_DIR's
    /// report.json (each check a test worth its share of the step's points), for
    /// `>> "$GITHUB_OUTPUT"`; every step gets its line even when the grading wrote no report.
    Classroom {
        report_dir: PathBuf,
        /// Points per step, `step=N,…` (the steps given are the ones reported).
        #[arg(long, default_value = grade::classroom::DEFAULT_POINTS)]
        points: String,
    },
    /// Validate a devoxx-grade.toml (exit 2 with the key, the value and the reason).
    Config {
        file: PathBuf,
        /// A path the grading guest needs (the grader's checkout): `rootfs` may lie neither over
        /// nor under it.
        #[arg(long)]
        guest_path: Vec<PathBuf>,
    },
    /// Validate a workshop file (what a workshop teaches: steps, image_dirs, cgroup, limits);
    /// prints `cgroup=v1|v2` and `steps=a,b,...` for vm/grade.sh.
    Workshop { file: PathBuf },
    /// Merge report.json files into one class table (Markdown on stdout, class.md + class.csv).
    Merge {
        /// Directory for class.md and class.csv.
        #[arg(long)]
        out: Option<PathBuf>,
        /// report.json files, one per submission.
        #[arg(required = true)]
        reports: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Check {
            runtime,
            dir,
            config,
            steps,
            workshop,
            name,
            out,
            store,
            busybox,
            probe,
            scratch,
            disposable_machine,
            secret_file,
            report_to,
        } => check::ensure_disposable_machine(disposable_machine).and_then(|()| {
            let mut channel: Box<dyn std::io::Write> = match &report_to {
                Some(path) => Box::new(
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(path)
                        .with_context(|| format!("open the report channel {}", path.display()))?,
                ),
                None => Box::new(std::io::stdout()),
            };
            let mut signer = match secret_file {
                Some(f) => check::Signer::from_secret_file(&f)?,
                None => check::Signer::new(Vec::new()),
            };
            let dir = dir.unwrap_or_else(|| default_dir(&runtime));
            let config =
                Config::load(&config.unwrap_or_else(|| dir.join(grade::config::FILE_NAME)))?;
            let workshop = match workshop {
                Some(path) => Workshop::load(&path)?,
                None => Workshop::default(),
            };
            let steps = match steps_or_all(steps)? {
                None => workshop.steps.clone(),
                Some(steps) => steps,
            };
            let job = check::Job {
                name,
                runtime: std::path::absolute(&runtime)?,
                dir,
                config,
                workshop,
                steps,
                store,
                busybox,
                probe,
                scratch,
            };
            let report = check::grade(&job, &mut |e| {
                let _ = writeln!(channel, "{}", signer.line(e));
                let _ = channel.flush();
            })?;
            if let Some(out) = out {
                render::write_all(&report, &out)?;
            }
            Ok(verdict(&report))
        }),
        Command::Collect {
            console,
            out,
            name,
            steps,
            guest_problem,
            seconds,
            error,
            secret_file,
        } => {
            let key = secret_file
                .map(std::fs::read)
                .transpose()
                .map_err(anyhow::Error::from);
            key.and_then(|key| {
                let guest = Guest {
                    console_log: &console,
                    key: key.unwrap_or_default(),
                    problem: guest_problem,
                };
                collect(&guest, &out, &name, steps, seconds, error)
            })
        }
        Command::Classroom { report_dir, points } => classroom(&report_dir, &points),
        Command::Config { file, guest_path } => Config::load(&file).and_then(|c| {
            if let Some(root) = &c.rootfs {
                c.check_rootfs(root, &guest_path)
                    .with_context(|| format!("{}", file.display()))?;
            }
            Ok(ExitCode::SUCCESS)
        }),
        Command::Workshop { file } => Workshop::load(&file).map(|w| {
            println!("cgroup={}\nsteps={}", w.cgroup.as_str(), w.steps.join(","));
            ExitCode::SUCCESS
        }),
        Command::Merge { out, reports } => {
            let paths: Vec<&Path> = reports.iter().map(PathBuf::as_path).collect();
            grade::class::merge(&paths, out.as_deref()).map(|table| {
                print!("{table}");
                ExitCode::SUCCESS
            })
        }
    };
    result.unwrap_or_else(|e| {
        eprintln!("devoxx-docker-grade: {e:#}");
        ExitCode::from(2)
    })
}

/// Print the Classroom reporter's lines for the grading in `dir`.
fn classroom(dir: &Path, points: &str) -> anyhow::Result<ExitCode> {
    use grade::classroom;
    let points = classroom::parse_points(points).context("--points")?;
    let path = dir.join("report.json");
    let report = match std::fs::read(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        read => Some(
            read.map_err(anyhow::Error::from)
                .and_then(|b| Ok(serde_json::from_slice::<report::Report>(&b)?))
                .unwrap_or_else(|e| report::Report {
                    submission: String::new(),
                    steps: Default::default(),
                    extras: Default::default(),
                    seconds: 0.0,
                    error: Some(format!("{} is unreadable: {e:#}", path.display())),
                }),
        ),
    };
    print!(
        "{}",
        classroom::output_lines(&classroom::results(report.as_ref(), &points))?
    );
    Ok(ExitCode::SUCCESS)
}

/// `bin/devoxx-docker` lives in the submission's directory: run from there.
fn default_dir(runtime: &Path) -> PathBuf {
    let parent = runtime.parent().unwrap_or(Path::new("."));
    if parent.file_name().is_some_and(|n| n == "bin") {
        parent.parent().unwrap_or(parent).to_path_buf()
    } else {
        parent.to_path_buf()
    }
}

/// The steps asked for, validated; `None` when none were named (the default applies).
fn steps_or_all(steps: Vec<String>) -> anyhow::Result<Option<Vec<String>>> {
    let steps: Vec<String> = steps.into_iter().filter(|s| !s.is_empty()).collect();
    if let Some(bad) = steps.iter().find(|s| !report::STEPS.contains(&s.as_str())) {
        anyhow::bail!("unknown step {bad:?} (steps: {})", report::STEPS.join(", "));
    }
    Ok((!steps.is_empty()).then_some(steps))
}

/// What the guest left: its console and how to read it.
struct Guest<'a> {
    console_log: &'a Path,
    key: Vec<u8>,
    problem: Option<String>,
}

fn collect(
    guest: &Guest,
    out: &Path,
    name: &str,
    steps: Vec<String>,
    seconds: Option<f64>,
    error: Option<String>,
) -> anyhow::Result<ExitCode> {
    let text = std::fs::read(guest.console_log)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let steps = steps_or_all(steps)?
        .unwrap_or_else(|| report::STEPS.iter().map(|s| s.to_string()).collect());
    let verified = console::verified_events(&text, &guest.key);
    let void = verified.void_reason();
    let mut report = match &error {
        Some(why) if verified.events.is_empty() => console::not_graded(name, &steps, why),
        _ => console::collect(verified.events, name, &steps, guest.problem.as_deref()),
    };
    if let Some(s) = seconds {
        report.seconds = s;
    }
    report.error = error.or(void).or(report.error);
    render::write_all(&report, out)?;
    let md = render::markdown(&report);
    // The summary table: the report's head, up to the first step section.
    print!("{}", md.split("\n## ").next().unwrap_or(&md));
    println!(
        "\nreports: {}/report.md, report.json, junit.xml",
        out.display()
    );
    Ok(verdict(&report))
}

fn verdict(report: &report::Report) -> ExitCode {
    if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
