//! Executes the parsed commands against the database.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{
    ChannelCommand, ClientVersionCommand, Command, ExportCommand, JsonFlag, PlacementArgs,
    PublishCommand, ServerCommand, SimulateCommand, SponsorCommand,
};
use crate::db::{Db, unix_now, write_private};
use crate::error::{Error, Result, io};
use crate::servers::{NewServer, Placement, default_discovery, new_server_id, parse_protocol};
use crate::sponsors::{HttpsRequestRegex, NewSponsor};
use crate::table::Table;
use crate::time;

fn json_text<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string_pretty(value).map_err(|e| Error::InvalidArgument {
        arg: "--json",
        value: String::new(),
        reason: e.to_string(),
    })
}

fn yes(b: bool) -> String {
    if b { "yes".to_owned() } else { String::new() }
}

fn placement(args: &PlacementArgs, now: i64) -> Result<Placement> {
    let discovery = if args.no_discovery {
        None
    } else {
        let start = match &args.discovery_start {
            Some(text) => time::parse(text).ok_or_else(|| Error::InvalidArgument {
                arg: "--discovery-start",
                value: text.clone(),
                reason: "expected a date YYYY-MM-DD".to_owned(),
            })?,
            None => default_discovery(now).0,
        };
        Some((start, start + time::days(args.discovery_days)))
    };
    Ok(Placement {
        id: args.id.clone(),
        channel: args.channel.clone(),
        region: args.region.clone(),
        provider: args.provider.clone(),
        datacenter: args.datacenter.clone(),
        embedded: args.embedded,
        permanent: args.permanent,
        discovery,
    })
}

fn servers_table(servers: &[crate::servers::Server]) -> String {
    let mut t = Table::new(&[
        "ID",
        "IP",
        "PORTS",
        "CHANNEL",
        "REGION",
        "EMBEDDED",
        "PERMANENT",
        "DISCOVERY",
        "RETIRED",
    ]);
    for s in servers {
        let ports: Vec<String> = s.ports.iter().map(|(p, n)| format!("{p}:{n}")).collect();
        let discovery = s
            .discovery_date_range
            .as_ref()
            .map(|[a, b]| {
                format!(
                    "{} .. {}",
                    a.get(..10).unwrap_or(a),
                    b.get(..10).unwrap_or(b)
                )
            })
            .unwrap_or_default();
        t.row(vec![
            s.id.clone(),
            s.ip_address.clone(),
            ports.join(" "),
            s.propagation_channel_id.clone(),
            s.region.clone(),
            yes(s.is_embedded),
            yes(s.is_permanent),
            discovery,
            s.retired.clone().unwrap_or_default(),
        ]);
    }
    t.render()
}

fn sponsor_text(s: &crate::sponsors::Sponsor) -> String {
    let mut out = format!("sponsor {} ({})", s.name, s.id);
    if s.is_default {
        out.push_str(", the default sponsor");
    }
    out.push('\n');
    for (label, pages) in [
        ("home pages", &s.home_pages),
        ("mobile home pages", &s.mobile_home_pages),
    ] {
        for (region, list) in pages {
            for p in list {
                out.push_str(&format!("  {label} [{region}]: {}\n", p.url));
            }
        }
    }
    for r in &s.https_request_regexes {
        out.push_str(&format!("  regex: {} -> {}\n", r.regex, r.replace));
    }
    if !s.branding_text.is_empty() {
        out.push_str(&format!("  branding text: {}\n", s.branding_text));
    }
    if s.banner_bytes > 0 {
        out.push_str(&format!("  banner: {} bytes of PNG\n", s.banner_bytes));
    }
    out
}

pub(super) fn write_or_return(out: Option<&Path>, text: String, what: &str) -> Result<String> {
    match out {
        Some(path) => {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(io("creating directory", parent))?;
            }
            write_private(path, text.as_bytes(), true)?;
            Ok(format!("wrote {what} to {}", path.display()))
        }
        None => Ok(text),
    }
}

/// Runs one command that works on the database (everything but `quickstart`) and returns
/// the text for standard output.
///
/// # Errors
/// The command's [`Error`].
/// `psinet simulate discovery`: one row per K and strategy.
fn simulate_discovery(command: SimulateCommand) -> Result<String> {
    use psiphon_server::discovery::simulate::{SimulationParams, simulate};
    let SimulateCommand::Discovery {
        servers,
        clients,
        adversary_ips,
        same_24,
        days,
        seed,
        json,
    } = command;
    if servers == 0 || days == 0 {
        return Err(Error::InvalidArgument {
            arg: "--servers/--days",
            value: format!("{servers}/{days}"),
            reason: "both must be at least 1".to_owned(),
        });
    }
    let reports: Vec<_> = adversary_ips
        .iter()
        .map(|&k| {
            simulate(&SimulationParams {
                servers,
                clients,
                adversary_ips: k,
                same_24,
                days,
                seed,
            })
        })
        .collect();
    if json {
        return json_text(&reports);
    }
    let mut t = Table::new(&[
        "K (adversary IPs)",
        "STRATEGY",
        "SERVERS LEARNED",
        "% OF NETWORK",
        "CLIENT MEAN",
        "CLIENT MAX",
    ]);
    for r in &reports {
        for s in &r.strategies {
            t.row(vec![
                format!(
                    "{}{}",
                    r.params.adversary_ips,
                    if same_24 { " (one /24)" } else { "" }
                ),
                s.strategy.name().to_owned(),
                s.adversary_servers_learned.to_string(),
                format!("{:.1}", s.adversary_servers_learned_percent),
                format!("{:.1}", s.client_mean_servers_learned),
                s.client_max_servers_learned.to_string(),
            ]);
        }
    }
    Ok(format!(
        "N={servers} servers, M={clients} clients, D={days} days, one handshake per address per hour\n{}",
        t.render()
    ))
}

pub fn run(db_path: &Path, command: Command) -> Result<String> {
    if let Command::Simulate(sim) = command {
        return simulate_discovery(sim);
    }
    let now = unix_now();
    if let Command::Init {
        remote_list_key_bits,
    } = command
    {
        let db = Db::init(db_path, remote_list_key_bits)?;
        let keys = db.public_keys()?;
        return Ok(format!(
            "created {} (schema version {}, mode 0600)\n\
             ServerEntrySignaturePublicKey: {}\n\
             RemoteServerListSignaturePublicKey: {}",
            db_path.display(),
            db.schema_version()?,
            keys.server_entry_signature_public_key,
            keys.remote_server_list_signature_public_key
        ));
    }
    let mut db = Db::open(db_path)?;
    match command {
        Command::Init { .. }
        | Command::Quickstart { .. }
        | Command::Simulate(_)
        | Command::Stats(_)
        | Command::Report(_) => Err(Error::InvalidArgument {
            arg: "COMMAND",
            value: String::new(),
            reason: "not a database command".to_owned(),
        }),
        Command::Keys(JsonFlag { json }) => {
            let keys = db.public_keys()?;
            if json {
                json_text(&keys)
            } else {
                Ok(format!(
                    "ServerEntrySignaturePublicKey: {}\nRemoteServerListSignaturePublicKey: {}",
                    keys.server_entry_signature_public_key,
                    keys.remote_server_list_signature_public_key
                ))
            }
        }
        Command::Sponsor(cmd) => sponsor(&mut db, cmd),
        Command::Channel(ChannelCommand::Add {
            name,
            id,
            mechanisms,
            json,
        }) => {
            let c = db.add_channel(&name, id.as_deref(), &mechanisms)?;
            if json {
                json_text(&c)
            } else {
                Ok(format!("added propagation channel {} ({})", c.name, c.id))
            }
        }
        Command::Channel(ChannelCommand::List(JsonFlag { json })) => {
            let channels = db.channels()?;
            if json {
                return json_text(&channels);
            }
            let mut t = Table::new(&["ID", "NAME", "MECHANISMS"]);
            for c in channels {
                t.row(vec![c.id, c.name, c.mechanisms.join(" ")]);
            }
            Ok(t.render())
        }
        Command::ClientVersion(ClientVersionCommand::Add { platform, version }) => {
            let v = db.add_client_version(&platform, version)?;
            Ok(format!("offering {} version {}", v.platform, v.version))
        }
        Command::ClientVersion(ClientVersionCommand::List(JsonFlag { json })) => {
            let versions = db.client_versions()?;
            if json {
                return json_text(&versions);
            }
            let mut t = Table::new(&["PLATFORM", "VERSION"]);
            for v in versions {
                t.row(vec![v.platform, v.version.to_string()]);
            }
            Ok(t.render())
        }
        Command::Server(cmd) => server(&mut db, cmd, now),
        Command::Export(ExportCommand::Psinet { server, out }) => {
            let psinet = db.export_psinet(&server, now)?;
            let text = json_text(&psinet)? + "\n";
            write_or_return(
                out.as_deref(),
                text,
                &format!("the psinet database of server {server}"),
            )
        }
        Command::EmbeddedList { channel, out } => {
            let list = db.embedded_list(&channel)?;
            write_or_return(out.as_deref(), list, "the embedded server list")
        }
        Command::Publish(PublishCommand::RemoteList { channel, out }) => {
            let p = db.publish_remote_list(&channel, &out)?;
            Ok(format!(
                "wrote {} ({} bytes, {} servers: {})",
                p.path.display(),
                p.bytes,
                p.servers.len(),
                p.servers.join(" ")
            ))
        }
    }
}

fn sponsor(db: &mut Db, cmd: SponsorCommand) -> Result<String> {
    match cmd {
        SponsorCommand::Add {
            name,
            id,
            default,
            branding_text,
            banner,
            json,
        } => {
            let banner_png = match banner {
                Some(path) => Some(std::fs::read(&path).map_err(io("reading", &path))?),
                None => None,
            };
            let s = db.add_sponsor(&NewSponsor {
                name,
                id,
                default,
                branding_text,
                banner_png,
            })?;
            if json {
                json_text(&s)
            } else {
                Ok(format!("added sponsor {} ({})", s.name, s.id))
            }
        }
        SponsorCommand::List(JsonFlag { json }) => {
            let sponsors = db.sponsors()?;
            if json {
                return json_text(&sponsors);
            }
            let mut t = Table::new(&["ID", "NAME", "DEFAULT", "REGIONS", "REGEXES"]);
            for s in sponsors {
                let regions: Vec<String> = s.home_pages.keys().cloned().collect();
                t.row(vec![
                    s.id,
                    s.name,
                    yes(s.is_default),
                    regions.join(" "),
                    s.https_request_regexes.len().to_string(),
                ]);
            }
            Ok(t.render())
        }
        SponsorCommand::Show { sponsor, json } => {
            let s = db.sponsor(&sponsor)?;
            if json {
                json_text(&s)
            } else {
                Ok(sponsor_text(&s))
            }
        }
        SponsorCommand::SetHomepage {
            sponsor,
            region,
            mobile,
            urls,
        } => Ok(sponsor_text(
            &db.set_home_pages(&sponsor, &region, mobile, &urls)?,
        )),
        SponsorCommand::SetRegex {
            sponsor,
            regex,
            replace,
        } => {
            if regex.len() != replace.len() {
                return Err(Error::InvalidArgument {
                    arg: "--regex/--replace",
                    value: format!("{} regexes, {} replacements", regex.len(), replace.len()),
                    reason: "give them in pairs".to_owned(),
                });
            }
            let pairs: Vec<HttpsRequestRegex> = regex
                .into_iter()
                .zip(replace)
                .map(|(regex, replace)| HttpsRequestRegex { regex, replace })
                .collect();
            Ok(sponsor_text(&db.set_regexes(&sponsor, &pairs)?))
        }
    }
}

fn server(db: &mut Db, cmd: ServerCommand, now: i64) -> Result<String> {
    match cmd {
        ServerCommand::New {
            ip,
            protocols,
            out,
            server_dir,
            log_file,
            geoip_files,
            force,
            placement: args,
            json,
        } => {
            let protocols = protocols
                .iter()
                .map(|p| parse_protocol(p))
                .collect::<Result<Vec<_>>>()?;
            let mut placement = placement(&args, now)?;
            // The id names the default directory, so settle it first.
            let id = match placement.id.clone() {
                Some(id) => id,
                None => new_server_id()?,
            };
            placement.id = Some(id.clone());
            let out_dir = out.unwrap_or_else(|| PathBuf::from("servers").join(&id));
            let run_config = server_dir
                .as_deref()
                .unwrap_or(out_dir.as_path())
                .join("psiphond.config");
            let (s, files) = db.new_server(
                &NewServer {
                    ip,
                    protocols,
                    out_dir,
                    server_dir,
                    log_file,
                    geoip_files,
                    force,
                },
                &placement,
            )?;
            if json {
                return json_text(&s);
            }
            Ok(format!(
                "made server {} ({}), signed its entry and recorded it\n\
                 psiphond files:\n  {}\n  {}\n  {}\n  {}\n\
                 copy them to the server and run: psiphond -config {} run",
                s.id,
                s.ip_address,
                files.config.display(),
                files.traffic_rules.display(),
                files.psinet.display(),
                files.server_entry.display(),
                run_config.display(),
            ))
        }
        ServerCommand::Import {
            file,
            placement: args,
            json,
        } => {
            let text = std::fs::read_to_string(&file).map_err(io("reading", &file))?;
            let placement = placement(&args, now)?;
            let s = db.import_server(&text, &placement)?;
            if json {
                json_text(&s)
            } else {
                Ok(format!("imported server {} ({})", s.id, s.ip_address))
            }
        }
        ServerCommand::List { all, json } => {
            let servers = db.servers(all)?;
            if json {
                json_text(&servers)
            } else {
                Ok(servers_table(&servers))
            }
        }
        ServerCommand::Files { server, out, force } => {
            let files = db.write_server_files(&server, &out, force)?;
            Ok(format!(
                "wrote the psiphond files of server {server}:\n  {}\n  {}\n  {}\n  {}",
                files.config.display(),
                files.traffic_rules.display(),
                files.psinet.display(),
                files.server_entry.display(),
            ))
        }
        ServerCommand::Retire { server } => {
            let s = db.retire_server(&server)?;
            Ok(format!("retired server {} ({})", s.id, s.ip_address))
        }
    }
}
