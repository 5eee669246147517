//! The event log: one JSON object per line, as tunnel-core's logrus JSON formatter writes.
//!
//! Privacy: callers pass only fields that hold no client IP, destination, URL or secret; this
//! module adds only `timestamp`, `host_id` and `event_name`/`level`.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::time::rfc3339_millis;

/// Log levels, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Debug.
    Debug,
    /// Info (events).
    Info,
    /// Warning.
    Warning,
    /// Error.
    Error,
}

impl Level {
    /// From `LogLevel`.
    pub fn from_name(name: &str) -> Level {
        match name {
            "debug" => Level::Debug,
            "warning" | "warn" => Level::Warning,
            "error" => Level::Error,
            _ => Level::Info,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
        }
    }
}

/// A JSON-lines log shared by every task.
pub struct EventLog {
    sink: Mutex<Box<dyn Write + Send>>,
    /// The file, for [`EventLog::reopen`]; `None` for stderr.
    path: Option<PathBuf>,
    host_id: String,
    level: Level,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog")
            .field("host_id", &self.host_id)
            .field("level", &self.level)
            .finish_non_exhaustive()
    }
}

impl EventLog {
    /// Appends to `path` (created with mode 0600), or writes to stderr when `None`.
    ///
    /// # Errors
    /// [`Error::Write`] if the file cannot be opened.
    pub fn open(path: Option<&Path>, host_id: &str, level: Level) -> Result<EventLog> {
        let sink: Box<dyn Write + Send> = match path {
            Some(p) => Box::new(open_file(p)?),
            None => Box::new(io::stderr()),
        };
        Ok(EventLog {
            sink: Mutex::new(sink),
            path: path.map(Path::to_owned),
            host_id: host_id.to_owned(),
            level,
        })
    }

    /// Opens the log file again by name, so a rotated (renamed) file is let go and new lines
    /// go to a new file at the configured path (what `psiphond` does on SIGHUP). Lines being
    /// written meanwhile go whole to one file or the other. Nothing to do for stderr.
    ///
    /// # Errors
    /// [`Error::Write`] if the file cannot be opened; the old file stays in use.
    pub fn reopen(&self) -> Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let file = open_file(path)?;
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = sink.flush();
        *sink = Box::new(file);
        Ok(())
    }

    fn write(&self, mut fields: Map<String, Value>) {
        fields.insert("host_id".to_owned(), Value::String(self.host_id.clone()));
        fields.insert(
            "timestamp".to_owned(),
            Value::String(rfc3339_millis(SystemTime::now())),
        );
        let mut line = Value::Object(fields).to_string();
        line.push('\n');
        let mut sink = self.sink.lock().unwrap_or_else(PoisonError::into_inner);
        // A log that cannot be written must not stop the server.
        let _ = sink.write_all(line.as_bytes());
        let _ = sink.flush();
    }

    /// Logs an event (`event_name` plus `fields`) at info level.
    pub fn event(&self, name: &str, mut fields: Map<String, Value>) {
        if self.level > Level::Info {
            return;
        }
        fields.insert("event_name".to_owned(), Value::String(name.to_owned()));
        self.write(fields);
    }

    /// Logs a message (`level`, `msg`).
    pub fn message(&self, level: Level, msg: &str) {
        if level < self.level {
            return;
        }
        let mut fields = Map::new();
        fields.insert("level".to_owned(), Value::String(level.name().to_owned()));
        fields.insert("msg".to_owned(), Value::String(msg.to_owned()));
        self.write(fields);
    }
}

/// Opens `path` for appending, created with mode 0600.
fn open_file(path: &Path) -> Result<std::fs::File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| Error::Write {
            path: path.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reopen_after_rename_writes_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("psiphond.log");
        let log = EventLog::open(Some(&path), "h", Level::Info).unwrap();
        log.event("before", Map::new());
        let rotated = dir.path().join("psiphond.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        // Until reopened, lines follow the renamed file.
        log.event("still_old", Map::new());
        log.reopen().unwrap();
        log.event("after", Map::new());
        let old = std::fs::read_to_string(&rotated).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert!(
            old.contains("\"before\"") && old.contains("\"still_old\""),
            "{old}"
        );
        assert!(!old.contains("\"after\""));
        assert_eq!(new.lines().count(), 1, "{new}");
        assert!(new.contains("\"after\""));
        // A path that cannot be opened keeps the current file.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir(&path).unwrap();
        assert!(log.reopen().is_err());
        // stderr has nothing to reopen.
        assert!(
            EventLog::open(None, "h", Level::Info)
                .unwrap()
                .reopen()
                .is_ok()
        );
    }
}
