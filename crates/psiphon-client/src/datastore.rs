//! The client's persistent store: server entries and what it knows about them, in one redb
//! file under the data root.
//!
//! Layout (schema version [`SCHEMA_VERSION`]): `server_entries` (IP address → the entry's JSON
//! fields, with `localSource` and `localTimestamp`), `server_entry_tags` (tag → IP address),
//! `tombstones` (tags of pruned embedded entries → when), `url_etags` (canonical URL → ETag),
//! `key_values` (the affinity server, `last_connected`, fetch times, ...), `meta` (the schema
//! version). Every change is one redb transaction, committed durably before the call returns,
//! so a kill at any moment leaves the last committed state (redb is copy-on-write with
//! checksummed commits).
//!
//! Store rules are tunnel-core's (`dataStore.go`): an entry replaces a stored one with the same
//! IP address when the caller asks to (discovery, remote and target sources) or when its
//! `configurationVersion` is higher; an embedded entry whose tag has a tombstone is skipped.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use psiphon_protocol::ServerEntry;
use psiphon_protocol::time::{parse_rfc3339, rfc3339};
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

/// The schema this build writes. Opening a file with a newer schema fails rather than
/// misreading it; older schemas are migrated forward in [`Datastore::open_file`].
pub const SCHEMA_VERSION: u64 = 1;

/// The data directory under the data root, as tunnel-core names it.
pub const DATA_DIRECTORY: &str = "ca.psiphon.PsiphonTunnel.tunnel-core";

const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const SERVER_ENTRIES: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("server_entries");
const SERVER_ENTRY_TAGS: TableDefinition<'_, &str, &str> =
    TableDefinition::new("server_entry_tags");
const TOMBSTONES: TableDefinition<'_, &str, u64> = TableDefinition::new("tombstones");
const URL_ETAGS: TableDefinition<'_, &str, &str> = TableDefinition::new("url_etags");
const KEY_VALUES: TableDefinition<'_, &str, &str> = TableDefinition::new("key_values");

/// Key of the affinity server (the last one a tunnel was established to).
pub const KEY_AFFINITY_SERVER: &str = "affinityServerEntryID";
/// Key of the last `connected_timestamp`.
pub const KEY_LAST_CONNECTED: &str = "lastConnected";

/// Where a server entry came from (`localSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Source {
    /// Built into the client or given with `--server-list`.
    Embedded,
    /// A remote server list.
    Remote,
    /// Returned by a server's handshake.
    Discovery,
    /// `TargetServerEntry`.
    Target,
}

impl Source {
    /// tunnel-core's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Embedded => "EMBEDDED",
            Source::Remote => "REMOTE",
            Source::Discovery => "DISCOVERY",
            Source::Target => "TARGET",
        }
    }

    /// Whether an entry from this source replaces a stored entry with the same address
    /// (otherwise only a higher `configurationVersion` does).
    pub fn replaces(self) -> bool {
        !matches!(self, Source::Embedded)
    }
}

/// A datastore failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatastoreError {
    /// The file could not be opened or created (including: another client holds it).
    #[error("datastore {path}: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: Box<redb::Error>,
    },
    /// The directory could not be made.
    #[error("datastore directory {path}: {source}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file was written by a newer client.
    #[error("datastore {path}: schema version {found} is newer than this client's {supported}")]
    TooNew {
        /// The file.
        path: PathBuf,
        /// Its schema version.
        found: u64,
        /// Ours.
        supported: u64,
    },
    /// An entry could not be encoded for storage.
    #[error("datastore: cannot encode a server entry: {0}")]
    Encode(String),
    /// A read or write failed.
    #[error("datastore: {0}")]
    Storage(Box<redb::Error>),
}

impl<E: Into<redb::Error>> From<E> for DatastoreError {
    fn from(e: E) -> Self {
        DatastoreError::Storage(Box::new(e.into()))
    }
}

type Result<T> = std::result::Result<T, DatastoreError>;

/// What [`Datastore::store`] did with an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Written (new, or replacing an older one).
    Written,
    /// Kept the stored entry (same or newer version, and the source does not replace).
    Unchanged,
    /// An embedded entry whose tag was pruned before.
    Tombstoned,
}

/// Counts from storing a list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreSummary {
    /// Entries written.
    pub written: usize,
    /// Entries left as they were.
    pub unchanged: usize,
    /// Embedded entries skipped for a tombstone.
    pub tombstoned: usize,
}

/// The client's datastore. Cheap to share behind an `Arc`; every method is a short blocking
/// transaction (bulk imports belong on a blocking thread).
#[derive(Debug)]
pub struct Datastore {
    db: redb::Database,
    path: Option<PathBuf>,
}

/// The datastore file for a data root: `<root>/ca.psiphon.PsiphonTunnel.tunnel-core/datastore/psiphon.redb`.
pub fn datastore_path(data_root: &Path) -> PathBuf {
    data_root
        .join(DATA_DIRECTORY)
        .join("datastore")
        .join("psiphon.redb")
}

impl Datastore {
    /// Opens (creating if needed) the datastore of a data root.
    pub fn open(data_root: &Path) -> Result<Datastore> {
        let path = datastore_path(data_root);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| DatastoreError::Directory {
                path: dir.to_owned(),
                source,
            })?;
        }
        Datastore::open_file(&path)
    }

    /// Opens (creating if needed) a datastore file.
    pub fn open_file(path: &Path) -> Result<Datastore> {
        let db = redb::Database::create(path).map_err(|e| DatastoreError::Open {
            path: path.to_owned(),
            source: Box::new(e.into()),
        })?;
        let store = Datastore {
            db,
            path: Some(path.to_owned()),
        };
        store.init()?;
        Ok(store)
    }

    /// A datastore that lives in memory only (tests, and library users with no data root).
    pub fn in_memory() -> Result<Datastore> {
        let db = redb::Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(|e| DatastoreError::Storage(Box::new(e.into())))?;
        let store = Datastore { db, path: None };
        store.init()?;
        Ok(store)
    }

    /// The file, unless in memory.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Creates the tables and checks (or migrates) the schema version.
    fn init(&self) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut meta = tx.open_table(META)?;
            let found = meta.get("schema_version")?.map(|v| v.value());
            match found {
                Some(v) if v > SCHEMA_VERSION => {
                    return Err(DatastoreError::TooNew {
                        path: self.path.clone().unwrap_or_default(),
                        found: v,
                        supported: SCHEMA_VERSION,
                    });
                }
                // Version 1 is the first; a later schema adds its migration steps here,
                // one `if v < N` block per version, inside this same transaction.
                Some(_) => {}
                None => {
                    meta.insert("schema_version", SCHEMA_VERSION)?;
                }
            }
            tx.open_table(SERVER_ENTRIES)?;
            tx.open_table(SERVER_ENTRY_TAGS)?;
            tx.open_table(TOMBSTONES)?;
            tx.open_table(URL_ETAGS)?;
            tx.open_table(KEY_VALUES)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The schema version of the open file.
    pub fn schema_version(&self) -> Result<u64> {
        let tx = self.db.begin_read()?;
        let meta = tx.open_table(META)?;
        Ok(meta.get("schema_version")?.map_or(0, |v| v.value()))
    }

    /// Stores one entry with tunnel-core's rules (see the module docs). The entry's
    /// `localSource` is set to `source` and, when it has none, `localTimestamp` to now; a
    /// missing tag is derived from the web server secret.
    pub fn store(&self, entry: ServerEntry, source: Source) -> Result<Stored> {
        let tx = self.db.begin_write()?;
        let outcome = store_in(&tx, entry, source)?;
        tx.commit()?;
        Ok(outcome)
    }

    /// Stores many entries, committing every `batch` entries (a kill loses at most the
    /// uncommitted batch; nothing half-written is ever visible).
    pub fn store_all(
        &self,
        entries: impl IntoIterator<Item = ServerEntry>,
        source: Source,
    ) -> Result<StoreSummary> {
        const BATCH: usize = 256;
        let mut summary = StoreSummary::default();
        let mut iter = entries.into_iter().peekable();
        while iter.peek().is_some() {
            let tx = self.db.begin_write()?;
            for entry in iter.by_ref().take(BATCH) {
                match store_in(&tx, entry, source)? {
                    Stored::Written => summary.written += 1,
                    Stored::Unchanged => summary.unchanged += 1,
                    Stored::Tombstoned => summary.tombstoned += 1,
                }
            }
            tx.commit()?;
        }
        Ok(summary)
    }

    /// Every stored entry that still decodes (a corrupt record is skipped and counted).
    pub fn entries(&self) -> Result<(Vec<ServerEntry>, usize)> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(SERVER_ENTRIES)?;
        let mut out = Vec::new();
        let mut corrupt = 0;
        for row in table.iter()? {
            let (_, value) = row?;
            match ServerEntry::from_json(value.value()) {
                Ok(e) => out.push(e),
                Err(_) => corrupt += 1,
            }
        }
        Ok((out, corrupt))
    }

    /// One entry by IP address.
    pub fn entry(&self, ip_address: &str) -> Result<Option<ServerEntry>> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(SERVER_ENTRIES)?;
        Ok(table
            .get(ip_address)?
            .and_then(|v| ServerEntry::from_json(v.value()).ok()))
    }

    /// How many entries are stored.
    pub fn count(&self) -> Result<u64> {
        let tx = self.db.begin_read()?;
        Ok(tx.open_table(SERVER_ENTRIES)?.len()?)
    }

    /// The regions of the stored entries (`AvailableEgressRegions`), sorted.
    pub fn regions(&self) -> Result<Vec<String>> {
        let (entries, _) = self.entries()?;
        let set: BTreeSet<String> = entries
            .iter()
            .filter_map(|e| e.region())
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(set.into_iter().collect())
    }

    /// Deletes the entry a tag names, if it is at least `minimum_age` old (by its
    /// `localTimestamp`), as tunnel-core's prune: the tag record goes; the entry goes only
    /// when the tag is still its own (a recycled IP keeps its new entry); an embedded entry
    /// leaves a tombstone so the next embedded import does not bring it back. Returns whether
    /// anything was pruned.
    pub fn prune(&self, tag: &str, minimum_age: Duration) -> Result<bool> {
        let tx = self.db.begin_write()?;
        let pruned = {
            let mut tags = tx.open_table(SERVER_ENTRY_TAGS)?;
            let mut entries = tx.open_table(SERVER_ENTRIES)?;
            let Some(ip) = tags.get(tag)?.map(|v| v.value().to_owned()) else {
                return Ok(false);
            };
            let entry = entries
                .get(ip.as_str())?
                .and_then(|v| ServerEntry::from_json(v.value()).ok());
            let Some(entry) = entry else {
                tags.remove(tag)?;
                drop((tags, entries));
                tx.commit()?;
                return Ok(true);
            };
            let stored_at = entry.local_timestamp().and_then(parse_rfc3339);
            let old_enough = stored_at.is_none_or(|t| {
                SystemTime::now()
                    .duration_since(t)
                    .is_ok_and(|age| age >= minimum_age)
            });
            if !old_enough {
                false
            } else {
                tags.remove(tag)?;
                if entry.tag() == Some(tag) {
                    entries.remove(ip.as_str())?;
                    let mut kv = tx.open_table(KEY_VALUES)?;
                    if kv
                        .get(KEY_AFFINITY_SERVER)?
                        .is_some_and(|v| v.value() == ip)
                    {
                        kv.remove(KEY_AFFINITY_SERVER)?;
                    }
                }
                if entry.local_source() == Some(Source::Embedded.as_str()) {
                    let now = SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    tx.open_table(TOMBSTONES)?.insert(tag, now)?;
                }
                true
            }
        };
        tx.commit()?;
        Ok(pruned)
    }

    /// Deletes an entry by IP address (and its tag record).
    pub fn delete(&self, ip_address: &str) -> Result<bool> {
        let tx = self.db.begin_write()?;
        let removed = {
            let mut entries = tx.open_table(SERVER_ENTRIES)?;
            let old = entries
                .remove(ip_address)?
                .and_then(|v| ServerEntry::from_json(v.value()).ok());
            if let Some(tag) = old.as_ref().and_then(ServerEntry::tag) {
                tx.open_table(SERVER_ENTRY_TAGS)?.remove(tag)?;
            }
            old.is_some()
        };
        tx.commit()?;
        Ok(removed)
    }

    /// A sample of at most `max` stored tags (for `check_server_entry_tags`).
    pub fn tags(&self, max: usize) -> Result<Vec<String>> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(SERVER_ENTRY_TAGS)?;
        let mut out = Vec::new();
        for row in table.iter()?.take(max) {
            let (k, _) = row?;
            out.push(k.value().to_owned());
        }
        Ok(out)
    }

    /// A value by key.
    pub fn get(&self, key: &str) -> Result<Option<String>> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(KEY_VALUES)?;
        Ok(table.get(key)?.map(|v| v.value().to_owned()))
    }

    /// Sets (or with `None` deletes) a value.
    pub fn set(&self, key: &str, value: Option<&str>) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(KEY_VALUES)?;
            match value {
                Some(v) => {
                    table.insert(key, v)?;
                }
                None => {
                    table.remove(key)?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The stored ETag of a URL.
    pub fn url_etag(&self, url: &str) -> Result<Option<String>> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(URL_ETAGS)?;
        Ok(table.get(url)?.map(|v| v.value().to_owned()))
    }

    /// Stores (or with `None` clears) the ETag of a URL.
    pub fn set_url_etag(&self, url: &str, etag: Option<&str>) -> Result<()> {
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(URL_ETAGS)?;
            match etag {
                Some(v) => {
                    table.insert(url, v)?;
                }
                None => {
                    table.remove(url)?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The affinity server's IP address.
    pub fn affinity(&self) -> Result<Option<String>> {
        self.get(KEY_AFFINITY_SERVER)
    }

    /// Makes a server the affinity server (tunnel-core's `PromoteServerEntry`).
    pub fn set_affinity(&self, ip_address: &str) -> Result<()> {
        self.set(KEY_AFFINITY_SERVER, Some(ip_address))
    }

    /// Whether a tag has a tombstone.
    pub fn is_tombstoned(&self, tag: &str) -> Result<bool> {
        let tx = self.db.begin_read()?;
        Ok(tx.open_table(TOMBSTONES)?.get(tag)?.is_some())
    }
}

fn store_in(tx: &redb::WriteTransaction, mut entry: ServerEntry, source: Source) -> Result<Stored> {
    let ip = entry.ip_address_str().to_owned();
    let mut entries = tx.open_table(SERVER_ENTRIES)?;
    let existing_version = entries
        .get(ip.as_str())?
        .and_then(|v| ServerEntry::from_json(v.value()).ok())
        .map(|e| e.configuration_version());
    let update = match existing_version {
        None => true,
        Some(v) => source.replaces() || v < entry.configuration_version(),
    };
    if !update {
        return Ok(Stored::Unchanged);
    }
    if entry.tag().is_none_or(str::is_empty) {
        entry.set_derived_tag_from_secret();
    }
    let tag = entry.effective_tag();
    if source == Source::Embedded && tx.open_table(TOMBSTONES)?.get(tag.as_str())?.is_some() {
        return Ok(Stored::Tombstoned);
    }
    entry.set_local_source(source.as_str());
    if entry
        .local_timestamp()
        .is_none_or(|t| parse_rfc3339(t).is_none())
    {
        entry.set_local_timestamp(&rfc3339(SystemTime::now()));
    }
    let json =
        serde_json::to_vec(entry.fields()).map_err(|e| DatastoreError::Encode(e.to_string()))?;
    entries.insert(ip.as_str(), json.as_slice())?;
    tx.open_table(SERVER_ENTRY_TAGS)?
        .insert(tag.as_str(), ip.as_str())?;
    Ok(Stored::Written)
}
