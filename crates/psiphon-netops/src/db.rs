//! The network database: one SQLite file, mode 0600, with a versioned schema.
//!
//! The schema version is SQLite's `user_version`. [`Db::open`] applies every migration newer
//! than the file's version in one transaction, and refuses a file from a newer psinet. It holds
//! the network (keys, sponsors, propagation channels, client versions, hosts and servers) and
//! nothing about clients: no client address, email or session ever reaches it.

use std::fs::OpenOptions;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use psiphon_protocol::ServerEntrySigningKey;
use psiphon_protocol::auth_package::PackageSigningKey;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::Serialize;

use crate::error::{Error, Result, protocol};

/// The migrations, in order: migration `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: the network as psi_ops models it.
    "
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE keys (
        name        TEXT PRIMARY KEY,
        algorithm   TEXT NOT NULL,
        public_key  TEXT NOT NULL,
        private_key TEXT NOT NULL,
        created     INTEGER NOT NULL
    );
    CREATE TABLE propagation_channels (
        id         TEXT PRIMARY KEY CHECK (length(id) = 16),
        name       TEXT NOT NULL UNIQUE,
        mechanisms TEXT NOT NULL DEFAULT '[]',
        created    INTEGER NOT NULL
    );
    CREATE TABLE sponsors (
        id            TEXT PRIMARY KEY CHECK (length(id) = 16),
        name          TEXT NOT NULL UNIQUE,
        branding_text TEXT NOT NULL DEFAULT '',
        banner_png    BLOB,
        created       INTEGER NOT NULL
    );
    CREATE TABLE sponsor_home_pages (
        sponsor_id TEXT NOT NULL REFERENCES sponsors(id) ON DELETE CASCADE,
        mobile     INTEGER NOT NULL,
        region     TEXT NOT NULL,
        position   INTEGER NOT NULL,
        url        TEXT NOT NULL,
        PRIMARY KEY (sponsor_id, mobile, region, position)
    );
    CREATE TABLE sponsor_https_request_regexes (
        sponsor_id TEXT NOT NULL REFERENCES sponsors(id) ON DELETE CASCADE,
        position   INTEGER NOT NULL,
        regex      TEXT NOT NULL,
        replace    TEXT NOT NULL,
        PRIMARY KEY (sponsor_id, position)
    );
    CREATE TABLE client_versions (
        platform    TEXT NOT NULL,
        version     INTEGER NOT NULL,
        created     INTEGER NOT NULL,
        PRIMARY KEY (platform, version)
    );
    CREATE TABLE hosts (
        id         TEXT PRIMARY KEY,
        provider   TEXT NOT NULL DEFAULT '',
        region     TEXT NOT NULL DEFAULT '',
        datacenter TEXT NOT NULL DEFAULT '',
        created    INTEGER NOT NULL
    );
    CREATE TABLE servers (
        id                     TEXT PRIMARY KEY,
        host_id                TEXT NOT NULL REFERENCES hosts(id),
        ip_address             TEXT NOT NULL,
        propagation_channel_id TEXT NOT NULL REFERENCES propagation_channels(id),
        ports                  TEXT NOT NULL,
        capabilities           TEXT NOT NULL,
        tag                    TEXT NOT NULL UNIQUE,
        encoded_server_entry   TEXT NOT NULL,
        is_embedded            INTEGER NOT NULL,
        is_permanent           INTEGER NOT NULL,
        discovery_start        INTEGER,
        discovery_end          INTEGER,
        configuration_version  INTEGER NOT NULL,
        created                INTEGER NOT NULL,
        retired                INTEGER
    );
    CREATE UNIQUE INDEX servers_live_ip ON servers(ip_address) WHERE retired IS NULL;
    ",
    // 2: the server's psiphond config (its SSH host key, password and obfuscation keys), so
    // its files can be written again (`server files`). NULL for imported servers.
    "
    ALTER TABLE servers ADD COLUMN psiphond_config TEXT;
    ",
];

/// The schema version this program writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Key names in the `keys` table.
pub(crate) const KEY_SERVER_ENTRY: &str = "server_entry_signing";
pub(crate) const KEY_REMOTE_LIST: &str = "remote_server_list_signing";

/// An open network database.
#[derive(Debug)]
pub struct Db {
    pub(crate) conn: Connection,
    pub(crate) path: PathBuf,
}

/// The network's public keys, as clients are configured with them.
#[derive(Debug, Clone, Serialize)]
pub struct PublicKeys {
    /// Ed25519, base64: the client's `ServerEntrySignaturePublicKey`.
    #[serde(rename = "ServerEntrySignaturePublicKey")]
    pub server_entry_signature_public_key: String,
    /// RSA SubjectPublicKeyInfo, base64: the client's `RemoteServerListSignaturePublicKey`.
    #[serde(rename = "RemoteServerListSignaturePublicKey")]
    pub remote_server_list_signature_public_key: String,
}

/// Seconds since the Unix epoch, now.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Db {
    pub(crate) fn sql(&self, what: &'static str) -> impl FnOnce(rusqlite::Error) -> Error + '_ {
        move |source| Error::Sqlite {
            path: self.path.clone(),
            what,
            source,
        }
    }

    pub(crate) fn corrupt(&self, what: impl Into<String>, reason: impl Into<String>) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// Creates a new database at `path` (mode 0600) with fresh network keys: Ed25519 for
    /// server entries, RSA (`rsa_bits`, public exponent 3) for remote server lists.
    ///
    /// # Errors
    /// [`Error::DatabaseExists`], [`Error::Io`], [`Error::Sqlite`], [`Error::Protocol`].
    pub fn init(path: &Path, rsa_bits: usize) -> Result<Db> {
        // Refuse an existing file before spending seconds on an RSA key (create_new below
        // still settles a race).
        if path.exists() {
            return Err(Error::DatabaseExists {
                path: path.to_owned(),
            });
        }
        // Make the keys before the file: a failure leaves no half-made file behind.
        let entry_key = ServerEntrySigningKey::generate()
            .map_err(protocol("generating the server entry signing key"))?;
        let list_key = PackageSigningKey::generate(rsa_bits)
            .map_err(protocol("generating the remote server list signing key"))?;
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::DatabaseExists {
                    path: path.to_owned(),
                });
            }
            Err(source) => {
                return Err(Error::Io {
                    what: "creating",
                    path: path.to_owned(),
                    source,
                });
            }
        }
        let db = match Db::open(path) {
            Ok(db) => db,
            Err(e) => {
                let _ = std::fs::remove_file(path);
                return Err(e);
            }
        };
        let now = unix_now();
        let insert = |name: &str, alg: &str, public: &str, private: &str| {
            db.conn
                .execute(
                    "INSERT INTO keys (name, algorithm, public_key, private_key, created)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![name, alg, public, private, now],
                )
                .map_err(db.sql("storing the network keys"))
        };
        insert(
            KEY_SERVER_ENTRY,
            "ed25519",
            &entry_key.public_key_base64(),
            &entry_key.private_key_base64(),
        )?;
        insert(
            KEY_REMOTE_LIST,
            &format!("rsa-{rsa_bits}-e3-pkcs1v15-sha256"),
            &list_key.public_key_base64(),
            &list_key.to_base64(),
        )?;
        Ok(db)
    }

    /// Opens an existing database and brings its schema up to date.
    ///
    /// # Errors
    /// [`Error::NoDatabase`], [`Error::SchemaTooNew`], [`Error::Sqlite`].
    pub fn open(path: &Path) -> Result<Db> {
        if !path.exists() {
            return Err(Error::NoDatabase {
                path: path.to_owned(),
            });
        }
        let conn = open_existing(path)?;
        let mut db = Db {
            conn,
            path: path.to_owned(),
        };
        db.conn
            .execute_batch("PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;")
            .map_err(db.sql("setting pragmas"))?;
        db.migrate()?;
        // Whatever created the file, the database is private to its owner.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(crate::error::io("restricting", path))?;
        Ok(db)
    }

    fn migrate(&mut self) -> Result<()> {
        migrate(&mut self.conn, &self.path, MIGRATIONS)
    }

    /// The schema version of the open file.
    ///
    /// # Errors
    /// [`Error::Sqlite`].
    pub fn schema_version(&self) -> Result<i64> {
        schema_version(&self.conn, &self.path)
    }

    fn key(&self, name: &str) -> Result<(String, String)> {
        self.conn
            .query_row(
                "SELECT public_key, private_key FROM keys WHERE name = ?1",
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(self.sql("reading the network keys"))?
            .ok_or_else(|| self.corrupt(format!("key {name}"), "missing"))
    }

    /// The Ed25519 key that signs server entries.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if it is missing or unreadable.
    pub fn server_entry_signing_key(&self) -> Result<ServerEntrySigningKey> {
        let (public, private) = self.key(KEY_SERVER_ENTRY)?;
        ServerEntrySigningKey::from_base64_pair(&public, &private)
            .map_err(|e| self.corrupt(format!("key {KEY_SERVER_ENTRY}"), e.to_string()))
    }

    /// The RSA key that signs remote server lists.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if it is missing or unreadable.
    pub fn remote_list_signing_key(&self) -> Result<PackageSigningKey> {
        let (public, private) = self.key(KEY_REMOTE_LIST)?;
        let key = PackageSigningKey::from_base64(&private)
            .map_err(|e| self.corrupt(format!("key {KEY_REMOTE_LIST}"), e.to_string()))?;
        if key.public_key_base64() != public {
            return Err(self.corrupt(
                format!("key {KEY_REMOTE_LIST}"),
                "the private key does not match the stored public key",
            ));
        }
        Ok(key)
    }

    /// The public keys clients need.
    ///
    /// # Errors
    /// [`Error::Corrupt`], [`Error::Sqlite`].
    pub fn public_keys(&self) -> Result<PublicKeys> {
        Ok(PublicKeys {
            server_entry_signature_public_key: self.key(KEY_SERVER_ENTRY)?.0,
            remote_server_list_signature_public_key: self.key(KEY_REMOTE_LIST)?.0,
        })
    }

    pub(crate) fn meta(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(self.sql("reading settings"))
    }

    pub(crate) fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map(|_| ())
            .map_err(self.sql("writing settings"))
    }
}

/// Random bytes as upper-case hex (sponsor and channel ids are 16 upper-case hex digits).
pub(crate) fn random_hex_upper(bytes: usize) -> Result<String> {
    let mut b = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| Error::Random)?;
    Ok(hex::encode_upper(b))
}

/// Checks and normalises (to upper case) a 16-hex-digit sponsor or channel id.
pub(crate) fn parse_id(arg: &'static str, value: &str) -> Result<String> {
    if value.len() == 16 && value.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(value.to_ascii_uppercase())
    } else {
        Err(Error::InvalidArgument {
            arg,
            value: value.to_owned(),
            reason: "an id is 16 hexadecimal digits, e.g. 0123456789ABCDEF".to_owned(),
        })
    }
}

/// Writes a file readable by its owner only (0600), replacing it if `overwrite`.
pub(crate) fn write_private(path: &Path, contents: &[u8], overwrite: bool) -> Result<()> {
    use std::io::Write as _;
    let mut options = OpenOptions::new();
    options.write(true).mode(0o600);
    if overwrite {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            Error::FileExists {
                path: path.to_owned(),
            }
        } else {
            Error::Io {
                what: "writing",
                path: path.to_owned(),
                source,
            }
        }
    })?;
    file.write_all(contents)
        .map_err(crate::error::io("writing", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(crate::error::io("restricting", path))
}

/// The `user_version` of an open SQLite file (0 for a new one).
pub(crate) fn schema_version(conn: &Connection, path: &Path) -> Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|source| Error::Sqlite {
            path: path.to_owned(),
            what: "reading the schema version",
            source,
        })
}

/// Opens an existing SQLite file for reading and writing; each connection is used by one
/// thread at a time, so SQLite's per-connection mutex is off.
pub(crate) fn open_existing(path: &Path) -> Result<Connection> {
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| Error::Sqlite {
        path: path.to_owned(),
        what: "opening",
        source,
    })
}

/// Applies the `migrations` the file has not had yet (migration `i` brings it to version
/// `i + 1`), in one transaction; a file newer than this build is refused, not misread.
pub(crate) fn migrate(conn: &mut Connection, path: &Path, migrations: &[&str]) -> Result<()> {
    let found = schema_version(conn, path)?;
    let known = i64::try_from(migrations.len()).unwrap_or(i64::MAX);
    if found > known {
        return Err(Error::SchemaTooNew {
            path: path.to_owned(),
            found,
            known,
        });
    }
    let sql = |source| Error::Sqlite {
        path: path.to_owned(),
        what: "migrating",
        source,
    };
    let tx = conn.transaction().map_err(sql)?;
    for (version, migration) in (1..).zip(migrations) {
        if version <= found {
            continue;
        }
        tx.execute_batch(migration).map_err(sql)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(sql)?;
    }
    tx.commit().map_err(sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_open_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("net.db");
        assert!(matches!(Db::open(&path), Err(Error::NoDatabase { .. })));
        let db = Db::init(&path, 2048).unwrap();
        assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let keys = db.public_keys().unwrap();
        assert_eq!(
            db.server_entry_signing_key().unwrap().public_key_base64(),
            keys.server_entry_signature_public_key
        );
        let rsa = db.remote_list_signing_key().unwrap();
        assert_eq!(rsa.public_exponent(), vec![3]);
        drop(db);
        assert!(matches!(
            Db::init(&path, 2048),
            Err(Error::DatabaseExists { .. })
        ));
        // A database from the future is refused, not damaged.
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        let err = Db::open(&path).unwrap_err();
        assert!(matches!(err, Error::SchemaTooNew { .. }), "{err}");
        assert!(err.to_string().contains("net.db"), "{err}");
    }

    #[test]
    fn a_version_1_database_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO meta (key, value) VALUES ('default_sponsor_id', 'kept')",
            [],
        )
        .unwrap();
        drop(conn);
        let db = Db::open(&path).unwrap();
        assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
        assert_eq!(
            db.meta("default_sponsor_id").unwrap().as_deref(),
            Some("kept")
        );
        let columns: Vec<String> = db
            .conn
            .prepare("SELECT name FROM pragma_table_info('servers')")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            columns.iter().any(|c| c == "psiphond_config"),
            "{columns:?}"
        );
        // Opening again changes nothing.
        drop(db);
        assert_eq!(
            Db::open(&path).unwrap().schema_version().unwrap(),
            SCHEMA_VERSION
        );
    }

    #[test]
    fn ids() {
        assert_eq!(
            parse_id("--id", "0123456789abcdef").unwrap(),
            "0123456789ABCDEF"
        );
        assert!(parse_id("--id", "0123").is_err());
        assert!(parse_id("--id", "0123456789ABCDEG").is_err());
        assert_eq!(random_hex_upper(8).unwrap().len(), 16);
    }
}
