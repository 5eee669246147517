//! The statistics store: daily aggregates of psiphond's event logs, in their own SQLite file
//! (mode 0600, schema versioned by `user_version` as the network database is).
//!
//! It is a separate file from the network database because it has a different life: it is
//! pruned to a retention window, it may be handed to whoever writes sponsor reports, and it
//! must never hold a key. What it holds is only what the reports aggregate: the UTC day, the
//! sponsor id, the client's region, ASN and ISP (GeoIP names, as psiphond logged them), the
//! tunnel protocol, session counts, durations and byte counts, the (already regex-mapped)
//! domain of `domain_dest_bytes`, and a SHA-256 fingerprint of each ingested log line so that
//! ingesting a file twice adds nothing. No address, URL or session id is stored.
//! `secure_delete` is on, and `prune` vacuums, so pruned rows leave no bytes behind.

use std::fs::OpenOptions;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};

use crate::error::{Error, Result};

mod event;
mod ingest;
pub mod report;
pub mod svg;

pub use event::{Event, is_address_field, parse_line, utc_day};
pub use ingest::IngestSummary;

/// The default retention, in days.
pub const DEFAULT_RETENTION_DAYS: u32 = 60;

/// The migrations: migration `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: daily aggregates and the seen-set. `day` is days since 1970-01-01 (UTC).
    "
    CREATE TABLE seen (
        fingerprint BLOB PRIMARY KEY,
        day         INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX seen_day ON seen(day);
    CREATE TABLE sessions (
        day         INTEGER NOT NULL,
        sponsor_id  TEXT NOT NULL,
        region      TEXT NOT NULL,
        asn         TEXT NOT NULL,
        isp         TEXT NOT NULL,
        protocol    TEXT NOT NULL,
        sessions    INTEGER NOT NULL,
        duration_ms INTEGER NOT NULL,
        bytes_up    INTEGER NOT NULL,
        bytes_down  INTEGER NOT NULL,
        PRIMARY KEY (day, sponsor_id, region, asn, isp, protocol)
    ) WITHOUT ROWID;
    CREATE TABLE unique_users (
        day        INTEGER NOT NULL,
        sponsor_id TEXT NOT NULL,
        region     TEXT NOT NULL,
        asn        TEXT NOT NULL,
        isp        TEXT NOT NULL,
        users      INTEGER NOT NULL,
        PRIMARY KEY (day, sponsor_id, region, asn, isp)
    ) WITHOUT ROWID;
    CREATE TABLE domain_bytes (
        day        INTEGER NOT NULL,
        sponsor_id TEXT NOT NULL,
        region     TEXT NOT NULL,
        asn        TEXT NOT NULL,
        domain     TEXT NOT NULL,
        bytes      INTEGER NOT NULL,
        PRIMARY KEY (day, sponsor_id, region, asn, domain)
    ) WITHOUT ROWID;
    ",
];

/// The schema version this program writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The tables holding dated rows (every one is pruned).
const DATED_TABLES: &[&str] = &["seen", "sessions", "unique_users", "domain_bytes"];

/// An open statistics store.
#[derive(Debug)]
pub struct StatsDb {
    pub(crate) conn: Connection,
    pub(crate) path: PathBuf,
}

/// What `prune` removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Pruned {
    /// The first day kept (days since 1970-01-01).
    pub first_day_kept: i64,
    /// Aggregate rows deleted (sessions, unique users, domain bytes).
    pub rows: u64,
    /// Fingerprints deleted.
    pub fingerprints: u64,
}

/// Today, as days since 1970-01-01 (UTC).
pub fn today() -> i64 {
    crate::db::unix_now().div_euclid(86_400)
}

/// The first day kept with a retention of `retention_days` on day `today`.
pub fn first_day_kept(today: i64, retention_days: u32) -> i64 {
    today - i64::from(retention_days)
}

/// `YYYY-MM-DD` of a day number.
pub fn day_text(day: i64) -> String {
    let text = crate::time::rfc3339(day.saturating_mul(86_400));
    text.get(..10).unwrap_or(&text).to_owned()
}

/// A `YYYY-MM-DD` argument as a day number.
///
/// # Errors
/// [`Error::InvalidArgument`] naming `arg`.
pub fn parse_day(arg: &'static str, text: &str) -> Result<i64> {
    match crate::time::parse(text) {
        Some(secs) if !text.contains('T') => Ok(secs.div_euclid(86_400)),
        _ => Err(Error::InvalidArgument {
            arg,
            value: text.to_owned(),
            reason: "expected a date YYYY-MM-DD".to_owned(),
        }),
    }
}

impl StatsDb {
    pub(crate) fn sql(&self, what: &'static str) -> impl FnOnce(rusqlite::Error) -> Error + '_ {
        move |source| Error::Sqlite {
            path: self.path.clone(),
            what,
            source,
        }
    }

    /// Opens the store at `path`, creating it (mode 0600) if `create` and it does not exist,
    /// and brings its schema up to date.
    ///
    /// # Errors
    /// [`Error::NoStatsDatabase`] if it does not exist and `create` is false,
    /// [`Error::SchemaTooNew`], [`Error::Sqlite`], [`Error::Io`].
    pub fn open(path: &Path, create: bool) -> Result<StatsDb> {
        if !path.exists() {
            if !create {
                return Err(Error::NoStatsDatabase {
                    path: path.to_owned(),
                });
            }
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
            {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(source) => {
                    return Err(Error::Io {
                        what: "creating",
                        path: path.to_owned(),
                        source,
                    });
                }
            }
        }
        // Private before SQLite writes anything into it.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(crate::error::io("restricting", path))?;
        let conn = crate::db::open_existing(path)?;
        let mut db = StatsDb {
            conn,
            path: path.to_owned(),
        };
        // secure_delete: deleted rows are overwritten, not left in free pages.
        db.conn
            .execute_batch("PRAGMA secure_delete = ON; PRAGMA busy_timeout = 5000;")
            .map_err(db.sql("setting pragmas"))?;
        db.migrate()?;
        Ok(db)
    }

    fn migrate(&mut self) -> Result<()> {
        crate::db::migrate(&mut self.conn, &self.path, MIGRATIONS)
    }

    /// The schema version of the open file.
    ///
    /// # Errors
    /// [`Error::Sqlite`].
    pub fn schema_version(&self) -> Result<i64> {
        crate::db::schema_version(&self.conn, &self.path)
    }

    /// Deletes every row (aggregates and fingerprints) of a day before
    /// `today - retention_days`, then vacuums the file so no deleted byte remains.
    ///
    /// # Errors
    /// [`Error::Sqlite`].
    pub fn prune(&mut self, today: i64, retention_days: u32) -> Result<Pruned> {
        let first = first_day_kept(today, retention_days);
        let path = self.path.clone();
        let sql = |what| {
            let path = path.clone();
            move |source| Error::Sqlite { path, what, source }
        };
        let tx = self.conn.transaction().map_err(sql("pruning"))?;
        let mut pruned = Pruned {
            first_day_kept: first,
            rows: 0,
            fingerprints: 0,
        };
        for table in DATED_TABLES {
            let n = tx
                .execute(
                    &format!("DELETE FROM {table} WHERE day < ?1"),
                    params![first],
                )
                .map_err(sql("pruning"))?;
            let n = u64::try_from(n).unwrap_or(u64::MAX);
            if *table == "seen" {
                pruned.fingerprints = n;
            } else {
                pruned.rows += n;
            }
        }
        tx.commit().map_err(sql("pruning"))?;
        self.conn
            .execute_batch("VACUUM")
            .map_err(self.sql("vacuuming after pruning"))?;
        Ok(pruned)
    }

    /// The oldest day with any row, if any.
    ///
    /// # Errors
    /// [`Error::Sqlite`].
    pub fn oldest_day(&self) -> Result<Option<i64>> {
        let mut oldest: Option<i64> = None;
        for table in DATED_TABLES {
            let day: Option<i64> = self
                .conn
                .query_row(&format!("SELECT MIN(day) FROM {table}"), [], |r| r.get(0))
                .map_err(self.sql("reading the oldest day"))?;
            oldest = match (oldest, day) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok(oldest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_reopen_and_refuse_newer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stats.db");
        assert!(matches!(
            StatsDb::open(&path, false),
            Err(Error::NoStatsDatabase { .. })
        ));
        let db = StatsDb::open(&path, true).unwrap();
        assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        drop(db);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let db = StatsDb::open(&path, false).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "reopening makes it private again");
        db.conn
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(db);
        let err = StatsDb::open(&path, false).unwrap_err();
        assert!(matches!(err, Error::SchemaTooNew { .. }), "{err}");
        assert!(err.to_string().contains("stats.db"), "{err}");
    }

    /// The store's every column, pinned: adding one is a privacy decision, made here on
    /// purpose and written into docs/psinet.md.
    #[test]
    fn the_schema_holds_only_what_reports_need() {
        let dir = tempfile::tempdir().unwrap();
        let db = StatsDb::open(&dir.path().join("s.db"), true).unwrap();
        let mut stmt = db
            .conn
            .prepare(
                "SELECT m.name, p.name FROM sqlite_master m, pragma_table_info(m.name) p
                 WHERE m.type = 'table' ORDER BY m.name, p.cid",
            )
            .unwrap();
        let columns: Vec<String> = stmt
            .query_map([], |r| {
                Ok(format!(
                    "{}.{}",
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?
                ))
            })
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let dims = "day sponsor_id region asn";
        let want: Vec<String> = [
            ("domain_bytes", format!("{dims} domain bytes")),
            ("seen", "fingerprint day".to_owned()),
            (
                "sessions",
                format!("{dims} isp protocol sessions duration_ms bytes_up bytes_down"),
            ),
            ("unique_users", format!("{dims} isp users")),
        ]
        .iter()
        .flat_map(|(t, cols)| cols.split(' ').map(move |c| format!("{t}.{c}")))
        .collect();
        assert_eq!(columns, want);
    }

    #[test]
    fn days() {
        assert_eq!(day_text(0), "1970-01-01");
        assert_eq!(parse_day("--from", "2026-11-21").unwrap(), 20_778);
        assert_eq!(day_text(20_778), "2026-11-21");
        let err = parse_day("--from", "21/11/2026").unwrap_err();
        assert!(err.to_string().contains("--from"), "{err}");
        assert!(parse_day("--to", "2026-11-21T00:00:00Z").is_err());
        assert_eq!(first_day_kept(100, 60), 40);
    }
}
