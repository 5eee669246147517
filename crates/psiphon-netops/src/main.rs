//! `psinet`: the operators' tool.

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: psinet quickstart [--dir DIR]

  quickstart   run a throwaway Psiphon network on loopback (two servers and a client) and
               print the proxy addresses; Ctrl-C stops it. Files go to DIR (kept) or to a
               temporary directory (removed on exit).";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("quickstart") => {
            let mut dir = None;
            let mut it = args.iter().skip(1);
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--dir" | "-dir" => match it.next() {
                        Some(d) => dir = Some(PathBuf::from(d)),
                        None => return usage_error("--dir needs a directory"),
                    },
                    "-h" | "--help" => {
                        println!("{USAGE}");
                        return ExitCode::SUCCESS;
                    }
                    other => return usage_error(&format!("unknown argument {other:?}")),
                }
            }
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
        Some("-h" | "--help" | "help") | None => {
            println!("{USAGE}");
            if args.is_empty() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        Some(other) => usage_error(&format!("unknown command {other:?}")),
    }
}

fn usage_error(msg: &str) -> ExitCode {
    eprintln!("psinet: {msg}\n\n{USAGE}");
    ExitCode::from(2)
}
