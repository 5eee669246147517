//! The `psinet` command line (clap). [`run`] executes one parsed command and returns what to
//! print; `main.rs` only parses, prints and sets the exit code.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::db::{Db, unix_now, write_private};
use crate::error::{Error, Result, io};
use crate::servers::{NewServer, Placement, default_discovery, new_server_id, parse_protocol};
use crate::sponsors::{HttpsRequestRegex, NewSponsor};
use crate::table::Table;
use crate::time;

/// psinet: the Psiphon network operators' tool.
#[derive(Debug, Parser)]
#[command(name = "psinet", version, about, long_about = None)]
pub struct Cli {
    /// The network database.
    #[arg(
        long,
        global = true,
        env = "PSINET_DB",
        default_value = "psinet.db",
        value_name = "FILE"
    )]
    pub db: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a throwaway Psiphon network on loopback (two servers and a client) and print the
    /// proxy addresses; Ctrl-C stops it.
    Quickstart {
        /// Keep the files (database, configs, logs) in DIR instead of a temporary directory.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Create a new network database with fresh signing keys (file mode 0600).
    Init {
        /// Size of the remote server list RSA key (public exponent 3, as psi_ops).
        #[arg(long, default_value_t = psiphon_protocol::auth_package::DEFAULT_KEY_BITS, value_name = "BITS")]
        remote_list_key_bits: usize,
    },
    /// Print the network's public keys, as client configs take them.
    Keys(JsonFlag),
    /// Sponsors: home pages, statistics regexes, branding.
    #[command(subcommand)]
    Sponsor(SponsorCommand),
    /// Propagation channels.
    #[command(subcommand)]
    Channel(ChannelCommand),
    /// Client versions offered as upgrades.
    #[command(subcommand, name = "client-version")]
    ClientVersion(ClientVersionCommand),
    /// Servers.
    #[command(subcommand)]
    Server(ServerCommand),
    /// Files for servers.
    #[command(subcommand)]
    Export(ExportCommand),
    /// Print (or write) a channel's embedded server list for client builds: signed entries,
    /// one per line.
    EmbeddedList {
        /// Propagation channel id or name.
        #[arg(long)]
        channel: String,
        /// Write to FILE (mode 0600) instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Publish signed files for clients.
    #[command(subcommand)]
    Publish(PublishCommand),
}

/// `--json`.
#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `psinet sponsor ...`.
#[derive(Debug, Subcommand)]
pub enum SponsorCommand {
    /// Add a sponsor.
    Add {
        /// Its name (unique).
        #[arg(long)]
        name: String,
        /// Its id, 16 hex digits (random if not given).
        #[arg(long)]
        id: Option<String>,
        /// Make it the sponsor of clients whose sponsor id is unknown.
        #[arg(long)]
        default: bool,
        /// Text shown in its client builds.
        #[arg(long, default_value = "")]
        branding_text: String,
        /// A PNG banner for its client builds.
        #[arg(long)]
        banner: Option<PathBuf>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List sponsors.
    List(JsonFlag),
    /// Show one sponsor (by id or name).
    Show {
        /// Id or name.
        sponsor: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set the home pages for a client region (replacing those it had; no URL removes them).
    SetHomepage {
        /// Sponsor id or name.
        sponsor: String,
        /// Two-letter region code, or None for clients of any region.
        #[arg(long)]
        region: String,
        /// For Android and iOS clients.
        #[arg(long)]
        mobile: bool,
        /// The URLs, in order.
        urls: Vec<String>,
    },
    /// Set the statistics regexes (replacing all; give none to clear): --regex R --replace S,
    /// repeated in pairs.
    SetRegex {
        /// Sponsor id or name.
        sponsor: String,
        /// A regex (Go syntax).
        #[arg(long)]
        regex: Vec<String>,
        /// Its replacement.
        #[arg(long)]
        replace: Vec<String>,
    },
}

/// `psinet channel ...`.
#[derive(Debug, Subcommand)]
pub enum ChannelCommand {
    /// Add a propagation channel.
    Add {
        /// Its name (unique).
        #[arg(long)]
        name: String,
        /// Its id, 16 hex digits (random if not given).
        #[arg(long)]
        id: Option<String>,
        /// A propagation mechanism (repeatable), e.g. email-autoresponder.
        #[arg(long = "mechanism")]
        mechanisms: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List propagation channels.
    List(JsonFlag),
}

/// `psinet client-version ...`.
#[derive(Debug, Subcommand)]
pub enum ClientVersionCommand {
    /// Offer a client version for a platform.
    Add {
        /// Windows, Android, iOS or Other.
        #[arg(long)]
        platform: String,
        /// The version number.
        #[arg(long)]
        version: u32,
    },
    /// List client versions.
    List(JsonFlag),
}

/// Where a server's host is and what it is for.
#[derive(Debug, Args)]
pub struct PlacementArgs {
    /// Propagation channel id or name.
    #[arg(long)]
    pub channel: String,
    /// Server id (random if not given).
    #[arg(long)]
    pub id: Option<String>,
    /// The host's two-letter region, written into the server entry.
    #[arg(long, default_value = "")]
    pub region: String,
    /// The host's provider.
    #[arg(long, default_value = "")]
    pub provider: String,
    /// The host's datacenter.
    #[arg(long, default_value = "")]
    pub datacenter: String,
    /// Put it in its channel's embedded and remote server lists.
    #[arg(long)]
    pub embedded: bool,
    /// Put it in every channel's lists.
    #[arg(long)]
    pub permanent: bool,
    /// First day of discovery (YYYY-MM-DD, UTC); default tomorrow.
    #[arg(long, conflicts_with = "no_discovery", value_name = "DATE")]
    pub discovery_start: Option<String>,
    /// Length of the discovery range in days.
    #[arg(
        long,
        default_value_t = 7,
        conflicts_with = "no_discovery",
        value_name = "DAYS"
    )]
    pub discovery_days: u32,
    /// Not a discovery server.
    #[arg(long)]
    pub no_discovery: bool,
}

/// `psinet server ...`.
#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Make a new server: write its psiphond files, sign its entry, record it.
    New {
        /// The server's public IP address (written into its entry; psiphond listens on it).
        #[arg(long)]
        ip: IpAddr,
        /// PROTOCOL:PORT, repeatable (OSSH, SSH).
        #[arg(long = "protocol", required = true, value_name = "PROTOCOL:PORT")]
        protocols: Vec<String>,
        /// Directory for its psiphond files (default ./servers/ID).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Where the files will be on the server (written into psiphond.config); default the
        /// --out directory.
        #[arg(long, value_name = "DIR")]
        server_dir: Option<PathBuf>,
        /// psiphond's log file on the server (default: standard output).
        #[arg(long, value_name = "FILE")]
        log_file: Option<PathBuf>,
        /// Overwrite files in the --out directory.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        placement: PlacementArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Record an existing server from its psiphond server-entry.dat (re-signed with the
    /// network key).
    Import {
        /// The server-entry.dat file.
        file: PathBuf,
        #[command(flatten)]
        placement: PlacementArgs,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List servers.
    List {
        /// Include retired servers.
        #[arg(long)]
        all: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a server's psiphond files again from the database (its stored config, default
    /// traffic rules, a fresh psinet export, its signed entry).
    Files {
        /// Server id.
        server: String,
        /// Output directory.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Retire a server: it leaves every list, export and set of valid tags.
    Retire {
        /// Server id.
        server: String,
    },
}

/// `psinet export ...`.
#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    /// The psinet JSON a server's psiphond reads (PsinetDatabaseFilename).
    Psinet {
        /// Server id.
        #[arg(long)]
        server: String,
        /// Write to FILE (mode 0600) instead of standard output.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// `psinet publish ...`.
#[derive(Debug, Subcommand)]
pub enum PublishCommand {
    /// Write a channel's signed remote server list to DIR/server_list_compressed.
    RemoteList {
        /// Propagation channel id or name.
        #[arg(long)]
        channel: String,
        /// Output directory.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

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

fn write_or_return(out: Option<&Path>, text: String, what: &str) -> Result<String> {
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
pub fn run(db_path: &Path, command: Command) -> Result<String> {
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
        Command::Init { .. } | Command::Quickstart { .. } => Err(Error::InvalidArgument {
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
