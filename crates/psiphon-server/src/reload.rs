//! The psinet database as the server serves it, with its discovery, and hot reload: a task
//! polls the file's modification time and size and swaps in a new database when they change.
//! A file that fails to load keeps the old database and logs an error naming the file.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::SystemTime;

use tokio::sync::watch;

use crate::discovery::{Discovery, Strategy};
use crate::error::Result;
use crate::log::{EventLog, Level};
use crate::psinet::Database;
use crate::server::Shared;

/// One loaded psinet database and the discovery built over its `discovery_servers`.
#[derive(Debug)]
pub struct Psinet {
    /// The database.
    pub database: Database,
    /// Discovery over the database's servers.
    pub discovery: Discovery,
}

impl Psinet {
    /// Builds discovery for a database.
    pub fn new(database: Database, strategy: Strategy, hmac_key: &str, now: SystemTime) -> Psinet {
        let discovery = Discovery::new(database.discovery_servers.clone(), strategy, hmac_key, now);
        Psinet {
            database,
            discovery,
        }
    }
}

/// What identifies a version of a file: modification time and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    modified: SystemTime,
    len: u64,
}

impl Stamp {
    pub(crate) fn of(path: &Path) -> io::Result<Stamp> {
        let meta = std::fs::metadata(path)?;
        Ok(Stamp {
            modified: meta.modified()?,
            len: meta.len(),
        })
    }
}

/// One reload check of a file: when its stamp differs from `seen`, runs `load` (which swaps
/// the new data in and says what it loaded). Failures keep the old data and log one error
/// naming the file; a missing file is reported once, not on every poll. `what` names the
/// data in messages: ("psinet", "psinet database").
pub(crate) fn reload_file(
    path: &Path,
    seen: &RwLock<Option<Stamp>>,
    log: &EventLog,
    (what, data): (&str, &str),
    load: impl FnOnce() -> Result<String>,
) -> ReloadOutcome {
    let file = path.display();
    let new = match Stamp::of(path) {
        Ok(s) => Some(s),
        Err(e) => {
            let mut seen = seen.write().unwrap_or_else(PoisonError::into_inner);
            if seen.take().is_some() {
                log.message(
                    Level::Error,
                    &format!("{what} reload: cannot read {file}: {e}; keeping the previous {data}"),
                );
                return ReloadOutcome::Failed;
            }
            return ReloadOutcome::Unchanged;
        }
    };
    {
        let mut seen = seen.write().unwrap_or_else(PoisonError::into_inner);
        if *seen == new {
            return ReloadOutcome::Unchanged;
        }
        *seen = new;
    }
    match load() {
        Ok(summary) => {
            log.message(
                Level::Info,
                &format!("{data} reloaded from {file}: {summary}"),
            );
            ReloadOutcome::Reloaded
        }
        Err(e) => {
            log.message(
                Level::Error,
                &format!("{what} reload failed, keeping the previous {data}: {e}"),
            );
            ReloadOutcome::Failed
        }
    }
}

/// The current psinet, replaced whole on reload. Readers take an `Arc` and keep a consistent
/// view for one request.
#[derive(Debug)]
pub struct PsinetStore {
    current: RwLock<Arc<Psinet>>,
    path: Option<PathBuf>,
    strategy: Strategy,
    hmac_key: String,
    /// The version of the file last tried (loaded or failed).
    seen: RwLock<Option<Stamp>>,
}

impl PsinetStore {
    /// Loads `path` (an empty database when `None`).
    ///
    /// # Errors
    /// As [`Database::read`].
    pub fn open(
        path: Option<&Path>,
        strategy: Strategy,
        hmac_key: &str,
        now: SystemTime,
    ) -> Result<PsinetStore> {
        // The stamp is taken before reading: a write during the read shows as a change later.
        let seen = path.and_then(|p| Stamp::of(p).ok());
        let database = match path {
            Some(p) => Database::read(p)?,
            None => Database::default(),
        };
        Ok(PsinetStore {
            current: RwLock::new(Arc::new(Psinet::new(database, strategy, hmac_key, now))),
            path: path.map(Path::to_owned),
            strategy,
            hmac_key: hmac_key.to_owned(),
            seen: RwLock::new(seen),
        })
    }

    /// The psinet to use for one request.
    pub fn current(&self) -> Arc<Psinet> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// The file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Reloads the file if its modification time or size changed since the last attempt.
    /// Blocking (file I/O and parsing): run it off the async workers.
    pub fn reload_if_changed(&self, log: &EventLog, now: SystemTime) -> ReloadOutcome {
        let Some(path) = &self.path else {
            return ReloadOutcome::Unchanged;
        };
        reload_file(path, &self.seen, log, ("psinet", "psinet database"), || {
            let database = Database::read(path)?;
            let servers = database.discovery_servers.len();
            let psinet = Psinet::new(database, self.strategy, &self.hmac_key, now);
            *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(psinet);
            Ok(format!(
                "{servers} discovery servers, {} discovery strategy",
                self.strategy.name()
            ))
        })
    }
}

/// What one reload check did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The file has not changed.
    Unchanged,
    /// A new database is in use.
    Reloaded,
    /// The file changed but did not load; the old database stays.
    Failed,
}

/// Polls the server's psinet, traffic rules and GeoIP files every `PsinetReloadPeriod` until
/// shutdown.
pub(crate) async fn watch_files(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let period = shared.config.psinet_reload_period;
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep(period) => {}
        }
        let shared = Arc::clone(&shared);
        let check = tokio::task::spawn_blocking(move || {
            shared
                .psinet
                .reload_if_changed(&shared.log, SystemTime::now());
            shared.rules.reload_if_changed(&shared.log);
            shared.geoip.reload_if_changed(&shared.log);
        });
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            _ = check => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn reloads_on_change_and_keeps_the_old_database_on_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("psinet.json");
        let log_path = dir.path().join("log");
        let log = EventLog::open(Some(&log_path), "h", Level::Info).unwrap();
        std::fs::write(&path, r#"{"default_sponsor_id":"A"}"#).unwrap();
        let now = SystemTime::now();
        let store = PsinetStore::open(Some(&path), Strategy::Consistent, "k", now).unwrap();
        assert_eq!(store.current().database.default_sponsor_id, "A");
        assert_eq!(store.reload_if_changed(&log, now), ReloadOutcome::Unchanged);

        // Same length, different content and time: reloaded.
        std::fs::write(&path, r#"{"default_sponsor_id":"B"}"#).unwrap();
        bump_mtime(&path);
        assert_eq!(store.reload_if_changed(&log, now), ReloadOutcome::Reloaded);
        assert_eq!(store.current().database.default_sponsor_id, "B");

        // Broken: the old data stays, one error naming the file, not repeated.
        std::fs::write(&path, r#"{"default_sponsor_id":"#).unwrap();
        assert_eq!(store.reload_if_changed(&log, now), ReloadOutcome::Failed);
        assert_eq!(store.reload_if_changed(&log, now), ReloadOutcome::Unchanged);
        assert_eq!(store.current().database.default_sponsor_id, "B");
        let text = std::fs::read_to_string(&log_path).unwrap();
        let errors: Vec<&str> = text.lines().filter(|l| l.contains("\"error\"")).collect();
        assert_eq!(errors.len(), 1, "{text}");
        assert!(errors[0].contains(&*path.display().to_string()), "{text}");

        // Gone: one error, old data kept; back: reloaded.
        std::fs::remove_file(&path).unwrap();
        assert_eq!(store.reload_if_changed(&log, now), ReloadOutcome::Failed);
        assert_eq!(store.reload_if_changed(&log, now), ReloadOutcome::Unchanged);
        std::fs::write(&path, r#"{"default_sponsor_id":"C"}"#).unwrap();
        assert_eq!(store.reload_if_changed(&log, now), ReloadOutcome::Reloaded);
        assert_eq!(store.current().database.default_sponsor_id, "C");
    }

    /// Moves the file's modification time on, for file systems with coarse timestamps.
    fn bump_mtime(path: &Path) {
        let f = std::fs::File::options().write(true).open(path).unwrap();
        let t = std::fs::metadata(path).unwrap().modified().unwrap() + Duration::from_secs(2);
        f.set_modified(t).unwrap();
    }
}
