//! `psinet`: the operators' tool. Parses the command line and hands over to the library.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;
use psiphon_netops::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Quickstart { dir } => {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("psinet: cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match rt.block_on(psiphon_netops::quickstart::run_until_interrupted(dir)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("psinet quickstart: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        command @ (Command::Stats(_) | Command::Report(_)) => {
            match psiphon_netops::cli::run_stats(&cli.stats_db, command) {
                Ok(output) => {
                    for note in &output.notes {
                        eprintln!("psinet: {note}");
                    }
                    print(&output.stdout)
                }
                Err(e) => {
                    eprintln!("psinet: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        command => {
            if let Command::Init {
                remote_list_key_bits,
            } = &command
            {
                eprintln!(
                    "psinet: generating the network keys (an RSA-{remote_list_key_bits} key can \
                     take a minute)..."
                );
            }
            run(&cli.db, command)
        }
    }
}

fn run(db: &std::path::Path, command: Command) -> ExitCode {
    match psiphon_netops::cli::run(db, command) {
        Ok(text) => print(&text),
        Err(e) => {
            eprintln!("psinet: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print(text: &str) -> ExitCode {
    // A closed pipe (`psinet export ... | head`) is not an error worth a panic.
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{}", text.trim_end_matches('\n')) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("psinet: writing to standard output: {e}");
            ExitCode::FAILURE
        }
    }
}
