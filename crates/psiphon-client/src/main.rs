//! `psiphon`: the console client. Flags as psiphon-tunnel-core's ConsoleClient:
//! `psiphon --config client.json [--server-list FILE] [--data-root DIR]` (single-dash forms
//! `-config`, `-serverList`, `-dataRootDirectory` work too). Notices go to stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use psiphon_client::config::Config;
use psiphon_client::notice::{NoticeFlags, Notices, obj};
use psiphon_protocol::ServerEntry;

const USAGE: &str = "usage: psiphon --config FILE [--server-list FILE] [--data-root DIR]";

/// Startup problems are shown whatever `EmitDiagnosticNotices` says: a user who started the
/// client must see why it stopped or what in their config was ignored. (tunnel-core marks
/// `Warning` and `Error` diagnostic; these are the same notice types, always emitted.)
fn always(notices: &Notices, notice_type: &str, message: &str) {
    notices.emit_with(
        notice_type,
        NoticeFlags::NONE,
        obj([("message", message.into())]),
    );
}

struct Args {
    config: PathBuf,
    server_list: Option<PathBuf>,
    data_root: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut config = None;
    let mut server_list = None;
    let mut data_root = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--config" | "-config" => config = Some(PathBuf::from(value(&a)?)),
            "--server-list" | "-serverList" => server_list = Some(PathBuf::from(value(&a)?)),
            "--data-root" | "-dataRootDirectory" => data_root = Some(PathBuf::from(value(&a)?)),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        config: config.ok_or("--config is required")?,
        server_list,
        data_root,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("psiphon: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (config, unknown) = match Config::read(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("psiphon: {e}");
            return ExitCode::from(2);
        }
    };
    let notices = Notices::stderr(config.emit_diagnostic_notices);
    for key in unknown {
        always(
            &notices,
            "Warning",
            &format!(
                "unknown config key {key:?} in {} (ignored)",
                args.config.display()
            ),
        );
    }
    // The datastore arrives with issue 4; the directory is made now so the flag is honoured.
    let root = args
        .data_root
        .as_ref()
        .or(config.data_root_directory.as_ref());
    if let Some(root) = root
        && let Err(e) = std::fs::create_dir_all(root)
    {
        always(
            &notices,
            "Error",
            &format!("data root {}: {e}", root.display()),
        );
        return ExitCode::FAILURE;
    }
    let entries = match load_entries(&config, args.server_list.as_deref(), &notices) {
        Ok(e) => e,
        Err(e) => {
            always(&notices, "Error", &e);
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            always(&notices, "Error", &format!("cannot start the runtime: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(async {
        let client = match psiphon_client::app::start(&config, entries, notices.clone()).await {
            Ok(c) => c,
            Err(e) => {
                always(&notices, "Error", &e.to_string());
                return ExitCode::FAILURE;
            }
        };
        psiphon_client::app::shutdown_signal().await;
        client.shutdown().await;
        ExitCode::SUCCESS
    });
    notices.exiting();
    code
}

/// `TargetServerEntry` alone when set (as tunnel-core does); otherwise the server list file.
/// Bad entries are skipped with a warning naming the line.
fn load_entries(
    config: &Config,
    server_list: Option<&std::path::Path>,
    notices: &Notices,
) -> Result<Vec<ServerEntry>, String> {
    if let Some(target) = config
        .target_server_entry
        .as_deref()
        .filter(|t| !t.is_empty())
    {
        let e =
            ServerEntry::decode(target.trim()).map_err(|e| format!("TargetServerEntry: {e}"))?;
        return Ok(vec![e]);
    }
    let Some(path) = server_list else {
        return Err(
            "no server entries: give --server-list FILE or set TargetServerEntry".to_owned(),
        );
    };
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let list =
        psiphon_protocol::server_entry::decode_server_entry_list(&text, Some("EMBEDDED"), None);
    for bad in &list.errors {
        let msg = format!(
            "{}: skipping server entry on line {}: {}",
            path.display(),
            bad.line,
            bad.error
        );
        always(notices, "Warning", &msg);
    }
    if list.entries.is_empty() {
        return Err(format!("{}: no usable server entries", path.display()));
    }
    Ok(list.entries)
}
