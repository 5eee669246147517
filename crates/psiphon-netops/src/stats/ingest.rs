//! `psinet stats ingest`: log lines into daily aggregates, each line once.
//!
//! A line is counted once, ever (until pruned): its SHA-256 goes into the `seen` set in the
//! same transaction as its aggregate, so ingesting a file again, or rotated files that
//! overlap, adds nothing. Only counted events are fingerprinted.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};

use rusqlite::{Transaction, params};
use serde::Serialize;

use super::event::{Event, Parsed, parse_line};
use super::{StatsDb, first_day_kept};
use crate::error::{Error, Result};

/// The most malformed lines named one by one in [`IngestSummary::warnings`].
const MAX_NAMED_MALFORMED: usize = 20;

/// What an ingest did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IngestSummary {
    /// Files read.
    pub files: u64,
    /// Lines read (blank lines included).
    pub lines: u64,
    /// Events added to the store.
    pub added: u64,
    /// Events already in the store (seen before).
    pub duplicates: u64,
    /// Lines that are other events or messages.
    pub ignored: u64,
    /// Events dated before the retention window (not stored).
    pub too_old: u64,
    /// Lines that are not JSON objects, or counted events without a valid timestamp.
    pub malformed: u64,
    /// Address-like fields seen on counted events (never stored).
    pub address_fields: u64,
    /// Kept values that looked like an address or URL and were stored as "(redacted)".
    pub redacted_values: u64,
    /// Warnings for standard error: malformed lines by `file:line`, refused fields.
    pub warnings: Vec<String>,
}

impl IngestSummary {
    /// One line for standard output.
    pub fn text(&self) -> String {
        format!(
            "read {} lines from {} files: {} events added, {} already ingested, {} older than \
             the retention, {} other lines ignored, {} malformed; {} address-like fields dropped and \
             {} address-like values redacted",
            self.lines,
            self.files,
            self.added,
            self.duplicates,
            self.too_old,
            self.ignored,
            self.malformed,
            self.address_fields,
            self.redacted_values
        )
    }
}

fn fingerprint(line: &str) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, line.as_bytes())
        .as_ref()
        .to_vec()
}

/// Adds one event to its row. Sums saturate at `i64::MAX` (SQLite would turn an overflowing
/// integer into a float, and a client can report any byte count up to `i64::MAX`).
fn add(tx: &Transaction<'_>, event: &Event) -> rusqlite::Result<usize> {
    match event {
        Event::Session {
            at,
            isp,
            protocol,
            duration_ms,
            bytes_up,
            bytes_down,
        } => tx
            .prepare_cached(
                "INSERT INTO sessions (day, sponsor_id, region, asn, isp, protocol, sessions,
                                   duration_ms, bytes_up, bytes_down)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?8, ?9)
             ON CONFLICT DO UPDATE SET
                 sessions = min(sessions, 9223372036854775806) + 1,
                 duration_ms = duration_ms + min(excluded.duration_ms,
                                                 9223372036854775807 - duration_ms),
                 bytes_up = bytes_up + min(excluded.bytes_up, 9223372036854775807 - bytes_up),
                 bytes_down = bytes_down + min(excluded.bytes_down,
                                               9223372036854775807 - bytes_down)",
            )?
            .execute(params![
                at.day,
                at.sponsor_id,
                at.region,
                at.asn,
                isp,
                protocol,
                duration_ms,
                bytes_up,
                bytes_down
            ]),
        Event::UniqueUser { at, isp } => tx
            .prepare_cached(
                "INSERT INTO unique_users (day, sponsor_id, region, asn, isp, users)
             VALUES (?1, ?2, ?3, ?4, ?5, 1)
             ON CONFLICT DO UPDATE SET users = min(users, 9223372036854775806) + 1",
            )?
            .execute(params![at.day, at.sponsor_id, at.region, at.asn, isp]),
        Event::DomainBytes { at, domain, bytes } => tx
            .prepare_cached(
                "INSERT INTO domain_bytes (day, sponsor_id, region, asn, domain, bytes)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT DO UPDATE SET
                 bytes = bytes + min(excluded.bytes, 9223372036854775807 - bytes)",
            )?
            .execute(params![
                at.day,
                at.sponsor_id,
                at.region,
                at.asn,
                domain,
                bytes
            ]),
    }
}

fn day_of(event: &Event) -> i64 {
    match event {
        Event::Session { at, .. }
        | Event::UniqueUser { at, .. }
        | Event::DomainBytes { at, .. } => at.day,
    }
}

impl StatsDb {
    /// Ingests JSON-lines logs: each file in one transaction. Events dated before
    /// `today - retention_days` are not stored (a pruned fingerprint must not let them back).
    ///
    /// # Errors
    /// [`Error::Io`] naming the file, [`Error::Sqlite`]. Malformed lines are not errors: they
    /// are counted and named in the summary's warnings.
    pub fn ingest(
        &mut self,
        files: &[PathBuf],
        today: i64,
        retention_days: u32,
    ) -> Result<IngestSummary> {
        let mut summary = IngestSummary::default();
        let first_kept = first_day_kept(today, retention_days);
        for path in files {
            self.ingest_file(path, first_kept, &mut summary)?;
            summary.files += 1;
        }
        // So far the warnings are the malformed lines named one by one.
        let more = summary
            .malformed
            .saturating_sub(summary.warnings.len() as u64);
        if more > 0 {
            summary
                .warnings
                .push(format!("... and {more} more malformed lines skipped"));
        }
        if summary.address_fields > 0 {
            summary.warnings.push(format!(
                "dropped {} address-like fields (names with ip or addr, such as client_ip or \
                 meek_dial_address): none is ever stored",
                summary.address_fields
            ));
        }
        if summary.redacted_values > 0 {
            summary.warnings.push(format!(
                "{} kept values looked like an address or URL and were stored as \"(redacted)\"",
                summary.redacted_values
            ));
        }
        Ok(summary)
    }

    fn ingest_file(
        &mut self,
        path: &Path,
        first_kept: i64,
        summary: &mut IngestSummary,
    ) -> Result<()> {
        let file = std::fs::File::open(path).map_err(crate::error::io("reading", path))?;
        let reader = std::io::BufReader::new(file);
        let db_path = self.path.clone();
        let sql = |what| {
            let path = db_path.clone();
            move |source| Error::Sqlite { path, what, source }
        };
        let tx = self.conn.transaction().map_err(sql("ingesting"))?;
        let mut named = 0;
        for (number, line) in (1u64..).zip(reader.split(b'\n')) {
            let line = line.map_err(crate::error::io("reading", path))?;
            summary.lines += 1;
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches('\r');
            if text.trim().is_empty() {
                continue;
            }
            match parse_line(text) {
                Err(reason) => {
                    summary.malformed += 1;
                    if named < MAX_NAMED_MALFORMED {
                        named += 1;
                        summary.warnings.push(format!(
                            "{}:{number}: malformed line skipped: {reason}",
                            path.display()
                        ));
                    }
                }
                Ok(Parsed::Ignored) => summary.ignored += 1,
                Ok(Parsed::Event {
                    event,
                    address_fields,
                    redacted,
                }) => {
                    summary.address_fields += address_fields as u64;
                    let day = day_of(&event);
                    if day < first_kept {
                        summary.too_old += 1;
                        continue;
                    }
                    let new = tx
                        .prepare_cached(
                            "INSERT OR IGNORE INTO seen (fingerprint, day) VALUES (?1, ?2)",
                        )
                        .and_then(|mut insert| insert.execute(params![fingerprint(text), day]))
                        .map_err(sql("ingesting"))?;
                    if new == 0 {
                        summary.duplicates += 1;
                        continue;
                    }
                    summary.redacted_values += redacted as u64;
                    add(&tx, &event).map_err(sql("ingesting"))?;
                    summary.added += 1;
                }
            }
        }
        tx.commit().map_err(sql("ingesting"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn line(event: &str, day: &str, extra: &str) -> String {
        format!(
            r#"{{"event_name":"{event}","timestamp":"{day}T12:00:00.000Z","sponsor_id":"0123456789ABCDEF","client_region":"CA","client_asn":"64500","client_isp":"Example"{extra}}}"#
        )
    }

    fn count(db: &StatsDb, sql: &str) -> i64 {
        db.conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    #[test]
    fn ingest_is_idempotent_and_prune_removes_old_days() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = StatsDb::open(&dir.path().join("s.db"), true).unwrap();
        let today = crate::stats::parse_day("--", "2026-11-21").unwrap();
        let lines = [
            line(
                "server_tunnel",
                "2026-11-20",
                r#","relay_protocol":"OSSH","duration":1000,"bytes_up_tcp":5,"bytes_down_tcp":50,"session_id":"a""#,
            ),
            line(
                "server_tunnel",
                "2026-11-20",
                r#","relay_protocol":"OSSH","duration":3000,"bytes_up_tcp":7,"bytes_down_tcp":70,"session_id":"b""#,
            ),
            line("unique_user", "2026-11-20", r#","session_id":"a""#),
            line("unique_user", "2026-09-01", r#","session_id":"old""#),
            line(
                "domain_dest_bytes",
                "2026-11-20",
                r#","domain":"example.org","bytes":9"#,
            ),
            "{broken".to_owned(),
            r#"{"msg":"x","level":"info"}"#.to_owned(),
            line("unique_user", "1999-01-01", ""),
        ];
        let a = dir.path().join("a.log");
        std::fs::write(&a, lines.join("\n") + "\n").unwrap();
        // A rotated file overlapping the first in two lines, plus one new.
        let b = dir.path().join("b.log");
        let more = [
            lines[2].clone(),
            lines[4].clone(),
            line("unique_user", "2026-11-21", r#","session_id":"c""#),
        ];
        std::fs::write(&b, more.join("\r\n")).unwrap();

        let s = db.ingest(std::slice::from_ref(&a), today, 100).unwrap();
        assert_eq!(
            (s.added, s.duplicates, s.malformed, s.ignored, s.too_old),
            (5, 0, 1, 1, 1),
            "{s:?}"
        );
        assert!(
            s.warnings.iter().any(|w| w.contains("a.log:6: malformed")),
            "{:?}",
            s.warnings
        );
        let again = db.ingest(&[a.clone(), b.clone()], today, 100).unwrap();
        assert_eq!((again.added, again.duplicates), (1, 7), "{again:?}");
        assert_eq!(count(&db, "SELECT SUM(sessions) FROM sessions"), 2);
        assert_eq!(count(&db, "SELECT SUM(duration_ms) FROM sessions"), 4000);
        assert_eq!(count(&db, "SELECT SUM(bytes_down) FROM sessions"), 120);
        assert_eq!(count(&db, "SELECT SUM(users) FROM unique_users"), 3);
        assert_eq!(count(&db, "SELECT SUM(bytes) FROM domain_bytes"), 9);

        // Prune with 60 days: the September user goes, fingerprints with it.
        let pruned = db.prune(today, 60).unwrap();
        assert_eq!((pruned.rows, pruned.fingerprints), (1, 1), "{pruned:?}");
        assert!(db.oldest_day().unwrap().unwrap() >= today - 60);
        assert_eq!(count(&db, "SELECT SUM(users) FROM unique_users"), 2);
        // The pruned line is now older than the retention and stays out.
        let s = db.ingest(&[a], today, 60).unwrap();
        assert_eq!((s.added, s.too_old), (0, 2), "{s:?}");
        assert_eq!(db.prune(today, 0).unwrap().fingerprints, 4);
        assert_eq!(db.oldest_day().unwrap(), Some(today));
    }

    #[test]
    fn sums_saturate() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = StatsDb::open(&dir.path().join("s.db"), true).unwrap();
        let max = i64::MAX;
        let lines: Vec<String> = (0..3)
            .map(|i| {
                line(
                    "domain_dest_bytes",
                    "2026-11-20",
                    &format!(r#","domain":"example.org","bytes":{max},"n":{i}"#),
                )
            })
            .chain((0..3).map(|i| {
                line(
                    "server_tunnel",
                    "2026-11-20",
                    &format!(
                        r#","duration":{max},"bytes_up_tcp":{max},"bytes_up_udp":{max},"bytes_down_tcp":{max},"n":{i}"#
                    ),
                )
            }))
            .collect();
        let log = dir.path().join("big.log");
        std::fs::write(&log, lines.join("\n")).unwrap();
        let today = crate::stats::parse_day("--", "2026-11-21").unwrap();
        assert_eq!(db.ingest(&[log], today, 60).unwrap().added, 6);
        assert_eq!(count(&db, "SELECT bytes FROM domain_bytes"), max);
        assert_eq!(count(&db, "SELECT duration_ms FROM sessions"), max);
        assert_eq!(count(&db, "SELECT bytes_up FROM sessions"), max);
        assert_eq!(count(&db, "SELECT sessions FROM sessions"), 3);
        assert_eq!(
            count(&db, "SELECT typeof(bytes_down) = 'integer' FROM sessions"),
            1
        );
    }

    #[test]
    fn many_malformed_lines_are_named_up_to_a_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = StatsDb::open(&dir.path().join("s.db"), true).unwrap();
        let log = dir.path().join("junk.log");
        std::fs::write(&log, "junk\n".repeat(25)).unwrap();
        let s = db.ingest(&[log], 0, 60).unwrap();
        assert_eq!(s.malformed, 25);
        assert_eq!(
            s.warnings.len(),
            MAX_NAMED_MALFORMED + 1,
            "{:?}",
            s.warnings
        );
        assert!(
            s.warnings[0].ends_with(
                "junk.log:1: malformed line skipped: not JSON: expected value at line 1 column 1"
            ),
            "{:?}",
            s.warnings
        );
        assert_eq!(s.warnings[20], "... and 5 more malformed lines skipped");
    }

    #[test]
    fn a_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = StatsDb::open(&dir.path().join("s.db"), true).unwrap();
        let err = db
            .ingest(&[dir.path().join("nope.log")], 0, 60)
            .unwrap_err();
        assert!(err.to_string().contains("nope.log"), "{err}");
    }
}
