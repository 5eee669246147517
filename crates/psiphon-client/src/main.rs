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
    // The data root: the flag, else `DataRootDirectory`, else the current directory (as
    // tunnel-core's ConsoleClient).
    let mut config = config;
    if let Some(root) = args.data_root.clone() {
        config.data_root_directory = Some(root);
    }
    let root = config
        .data_root_directory
        .clone()
        .unwrap_or_else(|| PathBuf::from("."));
    let store = match psiphon_client::datastore::Datastore::open(&root) {
        Ok(s) => std::sync::Arc::new(s),
        Err(e) => {
            always(&notices, "Error", &e.to_string());
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = load_entries(&config, args.server_list.as_deref(), &store, &notices) {
        always(&notices, "Error", &e);
        return ExitCode::FAILURE;
    }
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
        let client = match psiphon_client::app::start(&config, store, notices.clone()).await {
            Ok(c) => c,
            Err(e) => {
                always(&notices, "Error", &e.to_string());
                return ExitCode::FAILURE;
            }
        };
        let code = tokio::select! {
            () = psiphon_client::app::shutdown_signal() => ExitCode::SUCCESS,
            () = client.stopped() => ExitCode::FAILURE,
        };
        client.shutdown().await;
        code
    });
    notices.exiting();
    code
}

/// Imports `TargetServerEntry` (source TARGET; it alone is dialed) or the `--server-list`
/// file (source EMBEDDED, never replacing what the store has) into the datastore. Bad entries
/// are skipped with a warning naming the line. Fails only when nothing at all is usable: no
/// list, no stored entries and no remote server list to fetch.
fn load_entries(
    config: &Config,
    server_list: Option<&std::path::Path>,
    store: &psiphon_client::datastore::Datastore,
    notices: &Notices,
) -> Result<(), String> {
    use psiphon_client::datastore::Source;
    let key = config.server_entry_signature_public_key.as_deref();
    if let Some(target) = config
        .target_server_entry
        .as_deref()
        .filter(|t| !t.is_empty())
    {
        let e =
            ServerEntry::decode(target.trim()).map_err(|e| format!("TargetServerEntry: {e}"))?;
        psiphon_client::app::import_entries(store, vec![e], Source::Target, key, notices)
            .map_err(|e| e.to_string())?;
        return Ok(());
    }
    if let Some(path) = server_list {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let stamp = psiphon_protocol::time::rfc3339_hour(std::time::SystemTime::now());
        let list = psiphon_protocol::server_entry::decode_server_entry_list(
            &text,
            Some("EMBEDDED"),
            Some(&stamp),
        );
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
            always(
                notices,
                "Warning",
                &format!("{}: no usable server entries", path.display()),
            );
        }
        psiphon_client::app::import_entries(store, list.entries, Source::Embedded, key, notices)
            .map_err(|e| e.to_string())?;
    }
    let stored = store.count().map_err(|e| e.to_string())?;
    if stored == 0 && config.remote_server_list_urls.is_empty() {
        return Err(
            "no server entries: give --server-list FILE, set TargetServerEntry, or set RemoteServerListURLs"
                .to_owned(),
        );
    }
    Ok(())
}
