//! `psinet stats` and `psinet report`: they work on the statistics store, not the network
//! database.

use std::path::Path;

use super::run::write_or_return;
use super::{Command, ReportArgs, ReportFormat, StatsCommand};
use crate::db::parse_id;
use crate::error::{Error, Result};
use crate::stats::report::Query;
use crate::stats::{StatsDb, day_text, parse_day, svg, today};

/// What a statistics command prints: `stdout`, and notes for standard error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// For standard output.
    pub stdout: String,
    /// Warnings and notes for standard error, one per line.
    pub notes: Vec<String>,
}

/// Runs `stats ...` or `report` against the statistics store at `stats_db`.
///
/// # Errors
/// The command's [`Error`].
pub fn run_stats(stats_db: &Path, command: Command) -> Result<Output> {
    match command {
        Command::Stats(StatsCommand::Ingest {
            files,
            retention_days,
        }) => {
            let mut db = StatsDb::open(stats_db, true)?;
            let summary = db.ingest(&files, today(), retention_days)?;
            Ok(Output {
                stdout: format!("{}: {}", stats_db.display(), summary.text()),
                notes: summary.warnings,
            })
        }
        Command::Stats(StatsCommand::Prune { retention_days }) => {
            let mut db = StatsDb::open(stats_db, false)?;
            let p = db.prune(today(), retention_days)?;
            Ok(Output {
                stdout: format!(
                    "pruned {}: {} rows and {} fingerprints from before {} deleted",
                    stats_db.display(),
                    p.rows,
                    p.fingerprints,
                    day_text(p.first_day_kept)
                ),
                notes: Vec::new(),
            })
        }
        Command::Report(args) => report(stats_db, args),
        _ => Err(Error::InvalidArgument {
            arg: "COMMAND",
            value: String::new(),
            reason: "not a statistics command".to_owned(),
        }),
    }
}

fn report(stats_db: &Path, args: ReportArgs) -> Result<Output> {
    let query = Query {
        kind: args.kind,
        by: args.by,
        sponsor: args
            .sponsor
            .as_deref()
            .map(|s| parse_id("--sponsor", s))
            .transpose()?,
        from: args
            .from
            .as_deref()
            .map(|d| parse_day("--from", d))
            .transpose()?,
        to: args
            .to
            .as_deref()
            .map(|d| parse_day("--to", d))
            .transpose()?,
        min_count: args.min_count,
    };
    let db = StatsDb::open(stats_db, false)?;
    let report = db.report(&query)?;
    let text = match args.format {
        ReportFormat::Table => report.table(),
        ReportFormat::Csv => report.csv(),
        ReportFormat::Json => {
            serde_json::to_string_pretty(&report.json()).map_err(|e| Error::InvalidArgument {
                arg: "--format json",
                value: String::new(),
                reason: e.to_string(),
            })? + "\n"
        }
        ReportFormat::Svg => svg::render(&report)?,
    };
    let stdout = write_or_return(args.out.as_deref(), text, "the report")?;
    Ok(Output {
        stdout,
        notes: vec![report.suppressed_note()],
    })
}
