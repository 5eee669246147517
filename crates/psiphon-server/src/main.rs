//! `psiphond`: parse flags, load config, run until SIGTERM or SIGINT; SIGHUP reopens the log
//! file (for log rotation).

use std::process::ExitCode;

use psiphon_server::cli::{Command, USAGE, parse_args};
use psiphon_server::{Config, Server, generate_files};

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Runs the server until SIGTERM or SIGINT, reopening the log file on each SIGHUP.
async fn serve(config: Config) -> psiphon_server::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let server = Server::start(config).await?;
    let mut hangup = signal(SignalKind::hangup()).ok();
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        let hup = async {
            match hangup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = &mut stop => break,
            Some(()) = hup => {
                if let Err(e) = server.reopen_log() {
                    eprintln!("psiphond: reopening the log: {e}");
                }
            }
        }
    }
    server.shutdown().await;
    Ok(())
}

fn main() -> ExitCode {
    let command = match parse_args(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("psiphond: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        Command::Generate(opts) => match generate_files(&opts) {
            Ok(_) => {
                println!(
                    "wrote {}, {}, {}, {}",
                    opts.config_path.display(),
                    opts.traffic_rules_path.display(),
                    opts.psinet_path.display(),
                    opts.server_entry_path.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("psiphond generate: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run { config } => {
            let config = match Config::read(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("psiphond: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("psiphond: starting runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(serve(config)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("psiphond: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
