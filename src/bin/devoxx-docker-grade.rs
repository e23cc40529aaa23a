//! Thin CLI of the grader: `check` (in the guest), `collect` (on the host, from the guest's
//! console), `merge` (a class table from many reports).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use devoxx_docker::grade;

/// Grade devoxx-docker workshop submissions.
#[derive(Parser, Debug)]
#[command(name = "devoxx-docker-grade", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
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
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Merge { out, reports } => {
            let paths: Vec<&std::path::Path> = reports.iter().map(PathBuf::as_path).collect();
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
