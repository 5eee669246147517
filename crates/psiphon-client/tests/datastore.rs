#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The client datastore: tunnel-core's store rules, pruning and tombstones, persistence,
//! schema versioning, and a kill -9 in the middle of writes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use psiphon_client::datastore::{Datastore, DatastoreError, SCHEMA_VERSION, Source, Stored};
use psiphon_protocol::ServerEntry;
use serde_json::json;

fn entry(ip: &str, version: u64, region: &str) -> ServerEntry {
    let v = json!({
        "ipAddress": ip,
        "configurationVersion": version,
        "webServerSecret": format!("{:064x}", ip.len()),
        "region": region,
        "sshPort": 22,
        "capabilities": ["SSH"],
    });
    ServerEntry::from_json(v.to_string().as_bytes()).unwrap()
}

fn with_tag(mut e: ServerEntry, tag: &str) -> ServerEntry {
    e.set("tag", json!(tag)).unwrap();
    e
}

#[test]
fn store_rules_are_tunnel_cores() {
    let db = Datastore::in_memory().unwrap();
    assert_eq!(
        db.store(entry("10.0.0.1", 1, "US"), Source::Embedded)
            .unwrap(),
        Stored::Written
    );
    // Embedded never replaces an entry of the same or a lower version...
    assert_eq!(
        db.store(entry("10.0.0.1", 1, "CA"), Source::Embedded)
            .unwrap(),
        Stored::Unchanged
    );
    assert_eq!(db.entry("10.0.0.1").unwrap().unwrap().region(), Some("US"));
    // ...but a higher configurationVersion wins from any source.
    assert_eq!(
        db.store(entry("10.0.0.1", 2, "CA"), Source::Embedded)
            .unwrap(),
        Stored::Written
    );
    assert_eq!(db.entry("10.0.0.1").unwrap().unwrap().region(), Some("CA"));
    // Discovery and remote replace even at a lower version.
    assert_eq!(
        db.store(entry("10.0.0.1", 1, "DE"), Source::Discovery)
            .unwrap(),
        Stored::Written
    );
    let stored = db.entry("10.0.0.1").unwrap().unwrap();
    assert_eq!(stored.region(), Some("DE"));
    assert_eq!(stored.local_source(), Some("DISCOVERY"));
    assert!(stored.local_timestamp().is_some());
    // A missing tag is derived and marked as such.
    assert!(stored.is_local_derived_tag());
    assert_eq!(stored.tag(), Some(stored.effective_tag().as_str()));
    assert_eq!(db.count().unwrap(), 1);
}

#[test]
fn prune_respects_age_and_tombstones_only_embedded() {
    let db = Datastore::in_memory().unwrap();
    db.store(
        with_tag(entry("10.0.0.1", 1, "US"), "tagA"),
        Source::Embedded,
    )
    .unwrap();
    db.store(with_tag(entry("10.0.0.2", 1, "US"), "tagB"), Source::Remote)
        .unwrap();
    db.set_affinity("10.0.0.1").unwrap();

    // Too young: tunnel-core will not prune an entry stored less than the minimum age ago.
    assert!(!db.prune("tagA", Duration::from_secs(7 * 86_400)).unwrap());
    assert!(db.entry("10.0.0.1").unwrap().is_some());

    assert!(db.prune("tagA", Duration::ZERO).unwrap());
    assert!(db.prune("tagB", Duration::ZERO).unwrap());
    assert!(!db.prune("no-such-tag", Duration::ZERO).unwrap());
    assert_eq!(db.count().unwrap(), 0);
    assert_eq!(
        db.affinity().unwrap(),
        None,
        "a pruned affinity server is forgotten"
    );

    // The embedded entry's tombstone keeps the next embedded import from restoring it...
    assert!(db.is_tombstoned("tagA").unwrap());
    assert!(!db.is_tombstoned("tagB").unwrap());
    assert_eq!(
        db.store(
            with_tag(entry("10.0.0.1", 1, "US"), "tagA"),
            Source::Embedded
        )
        .unwrap(),
        Stored::Tombstoned
    );
    // ...but any other source may bring it back (a server deleted and restored).
    assert_eq!(
        db.store(with_tag(entry("10.0.0.1", 1, "US"), "tagA"), Source::Remote)
            .unwrap(),
        Stored::Written
    );
}

#[test]
fn a_recycled_address_keeps_its_new_entry_when_the_old_tag_is_pruned() {
    let db = Datastore::in_memory().unwrap();
    db.store(with_tag(entry("10.0.0.1", 1, "US"), "old"), Source::Remote)
        .unwrap();
    db.store(with_tag(entry("10.0.0.1", 1, "CA"), "new"), Source::Remote)
        .unwrap();
    assert!(db.prune("old", Duration::ZERO).unwrap());
    assert_eq!(db.entry("10.0.0.1").unwrap().unwrap().region(), Some("CA"));
}

#[test]
fn regions_etags_and_values_persist_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Datastore::open(dir.path()).unwrap();
        let summary = db
            .store_all(
                (0..600).map(|i| {
                    entry(
                        &format!("10.1.{}.{}", i / 250, i % 250),
                        1,
                        ["US", "CA", ""][i % 3],
                    )
                }),
                Source::Remote,
            )
            .unwrap();
        assert_eq!(summary.written, 600);
        db.set_url_etag("http://example.invalid/list", Some("\"abc\""))
            .unwrap();
        db.set("lastConnected", Some("2026-11-21T10:00:00Z"))
            .unwrap();
        db.set_affinity("10.1.0.7").unwrap();
    }
    let db = Datastore::open(dir.path()).unwrap();
    assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(db.count().unwrap(), 600);
    assert_eq!(
        db.regions().unwrap(),
        vec!["CA".to_owned(), "US".to_owned()]
    );
    assert_eq!(
        db.url_etag("http://example.invalid/list")
            .unwrap()
            .as_deref(),
        Some("\"abc\"")
    );
    assert_eq!(
        db.get("lastConnected").unwrap().as_deref(),
        Some("2026-11-21T10:00:00Z")
    );
    assert_eq!(db.affinity().unwrap().as_deref(), Some("10.1.0.7"));
    assert!(
        db.path()
            .unwrap()
            .ends_with("ca.psiphon.PsiphonTunnel.tunnel-core/datastore/psiphon.redb")
    );
}

#[test]
fn a_second_client_on_the_same_data_root_gets_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Datastore::open(dir.path()).unwrap();
    let err = Datastore::open(dir.path()).unwrap_err();
    assert!(matches!(err, DatastoreError::Open { .. }), "{err}");
    assert!(err.to_string().contains("psiphon.redb"), "{err}");
}

#[test]
fn a_newer_schema_is_refused_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let def: redb::TableDefinition<'_, &str, u64> = redb::TableDefinition::new("meta");
            tx.open_table(def)
                .unwrap()
                .insert("schema_version", 99)
                .unwrap();
        }
        tx.commit().unwrap();
    }
    let err = Datastore::open_file(&path).unwrap_err();
    assert!(
        matches!(err, DatastoreError::TooNew { found: 99, .. }),
        "{err}"
    );
}

#[test]
fn garbage_in_place_of_the_file_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    assert!(Datastore::open_file(&path).is_err());
}

const WRITER_ENV: &str = "PSIPHON_DATASTORE_KILL_WRITER";

/// Not a test on its own: when [`kill_9_mid_write_leaves_a_consistent_store`] runs this
/// binary with `WRITER_ENV` set, it writes entries until killed, printing each committed count.
#[test]
fn writer_child_process() {
    let Ok(path) = std::env::var(WRITER_ENV) else {
        return;
    };
    let db = Datastore::open_file(std::path::Path::new(&path)).unwrap();
    let start = db.count().unwrap();
    for i in start.. {
        let ip = format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        // Alternate single commits and batches, so the kill lands in either.
        if i % 2 == 0 {
            db.store(
                with_tag(entry(&ip, 1, "US"), &format!("t{i}")),
                Source::Remote,
            )
            .unwrap();
        } else {
            db.store_all(
                [with_tag(entry(&ip, 1, "US"), &format!("t{i}"))],
                Source::Remote,
            )
            .unwrap();
        }
        println!("{}", i + 1);
    }
}

#[test]
fn kill_9_mid_write_leaves_a_consistent_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let exe = std::env::current_exe().unwrap();
    let mut acknowledged = 0u64;
    for round in 0..3 {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "writer_child_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(WRITER_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let target = acknowledged + 150;
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Some(Ok(line)) = lines.next() {
            if let Ok(n) = line.trim().parse::<u64>() {
                acknowledged = n;
            }
            if acknowledged >= target || Instant::now() > deadline {
                break;
            }
        }
        assert!(
            acknowledged >= target,
            "round {round}: writer stalled at {acknowledged}"
        );
        child.kill().unwrap(); // SIGKILL: no destructor, no flush
        child.wait().unwrap();
        // The writer may have committed more before the signal landed: read what it said.
        for line in lines.map_while(Result::ok) {
            if let Ok(n) = line.trim().parse::<u64>() {
                acknowledged = n;
            }
        }

        let db = Datastore::open_file(&path).unwrap();
        let (entries, corrupt) = db.entries().unwrap();
        assert_eq!(corrupt, 0, "round {round}");
        let count = u64::try_from(entries.len()).unwrap();
        // Everything acknowledged is there; at most the one in flight beyond it.
        assert!(
            count >= acknowledged && count <= acknowledged + 1,
            "round {round}: {count} vs {acknowledged}"
        );
        for e in &entries {
            let tag = e.tag().unwrap();
            assert!(db.is_tombstoned(tag).is_ok());
        }
        assert_eq!(
            db.tags(usize::MAX).unwrap().len(),
            entries.len(),
            "round {round}: tag index matches"
        );
        acknowledged = count;
    }
}
