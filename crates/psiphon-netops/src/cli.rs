//! The `psinet` command line (clap): the commands and their flags here, their execution in
//! [`run`], which returns what to print; `main.rs` only parses, prints and sets the exit code.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

mod run;
mod stats;

pub use run::run;
pub use stats::{Output, run_stats};

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
    /// The statistics store (`stats` and `report`), separate from the network database.
    #[arg(
        long,
        global = true,
        env = "PSINET_STATS_DB",
        default_value = "psinet-stats.db",
        value_name = "FILE"
    )]
    pub stats_db: PathBuf,
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
    /// Model the network without touching it (no database needed).
    #[command(subcommand)]
    Simulate(SimulateCommand),
    /// Usage statistics from psiphond's logs, kept in the statistics store (--stats-db).
    #[command(subcommand)]
    Stats(StatsCommand),
    /// Usage aggregates from the statistics store. Cells with fewer than --min-count unique
    /// users or sessions are suppressed, and counted.
    Report(ReportArgs),
}

/// `psinet stats ...`.
#[derive(Debug, Subcommand)]
pub enum StatsCommand {
    /// Load psiphond JSON-lines logs (server_tunnel, unique_user, domain_dest_bytes events)
    /// into the store; a line already ingested is not counted again. Creates the store.
    Ingest {
        /// psiphond log files (rotated ones may overlap).
        #[arg(required = true, value_name = "LOG")]
        files: Vec<PathBuf>,
        /// Events older than this many days are not stored.
        #[arg(long, default_value_t = crate::stats::DEFAULT_RETENTION_DAYS, value_name = "DAYS")]
        retention_days: u32,
    },
    /// Delete everything older than the retention, fingerprints included, and compact the
    /// file.
    Prune {
        /// Keep this many days before today (UTC).
        #[arg(long, default_value_t = crate::stats::DEFAULT_RETENTION_DAYS, value_name = "DAYS")]
        retention_days: u32,
    },
}

/// How `psinet report` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// A text table.
    Table,
    /// CSV with a header row.
    Csv,
    /// JSON.
    Json,
    /// An SVG chart.
    Svg,
}

/// `psinet report [sessions|domains] ...`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// sessions: unique users, sessions, duration, bytes, protocol mix; domains: bytes per
    /// domain.
    #[arg(value_enum, default_value = "sessions")]
    pub kind: crate::stats::report::Kind,
    /// Group by these, comma-separated: date, sponsor, region, asn, isp.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "date,sponsor,region",
        value_name = "DIMS"
    )]
    pub by: Vec<crate::stats::report::Dim>,
    /// Only this sponsor id (16 hex digits).
    #[arg(long, value_name = "ID")]
    pub sponsor: Option<String>,
    /// First day, YYYY-MM-DD (UTC).
    #[arg(long, value_name = "DATE")]
    pub from: Option<String>,
    /// Last day, YYYY-MM-DD (UTC), inclusive.
    #[arg(long, value_name = "DATE")]
    pub to: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: ReportFormat,
    /// Suppress cells with fewer unique users or sessions than this.
    #[arg(long, default_value_t = crate::stats::report::DEFAULT_MIN_COUNT, value_name = "N")]
    pub min_count: u64,
    /// Write to FILE (mode 0600) instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `psinet simulate ...`.
#[derive(Debug, Subcommand)]
pub enum SimulateCommand {
    /// How much of the network an adversary learns through discovery, per strategy: N
    /// servers, M ordinary clients and K adversary addresses each doing one handshake an hour
    /// for D days.
    Discovery {
        /// N: discoverable servers.
        #[arg(long, default_value_t = 1000, value_name = "N")]
        servers: usize,
        /// M: ordinary client addresses.
        #[arg(long, default_value_t = 1000, value_name = "M")]
        clients: usize,
        /// K: the adversary's addresses (repeat the flag for several rows).
        #[arg(long = "adversary-ips", value_name = "K", default_values_t = [1usize, 16, 256, 4096])]
        adversary_ips: Vec<usize>,
        /// The adversary's addresses all sit in one /24.
        #[arg(long = "same-24")]
        same_24: bool,
        /// D: days.
        #[arg(long, default_value_t = 7, value_name = "D")]
        days: u32,
        /// PRNG seed (the run is deterministic).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
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
        /// A MaxMind GeoIP database on the server (City or Country, and ISP or ASN),
        /// repeatable: psiphond logs the region, city, ISP and AS it gives for each client,
        /// never the address.
        #[arg(long = "geoip", value_name = "FILE")]
        geoip_files: Vec<PathBuf>,
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
