//! The client library (`psiphon_client::app`) started in-process as the `psiphon` binary
//! starts it, with its notices at hand.
//!
//! Test fixture code: a setup step that cannot work panics with the reason, as a test would.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use psiphon_client::app::{self, Client};
use psiphon_client::datastore::{Datastore, Source};
use psiphon_protocol::ServerEntry;
use serde_json::Value;
use tokio::sync::mpsc;

/// The client's notices, parsed, and every one seen so far (for failure messages).
#[derive(Debug)]
pub struct NoticeLines {
    rx: mpsc::Receiver<String>,
    /// Every notice received so far.
    pub seen: Vec<Value>,
}

impl NoticeLines {
    /// Waits (at most `within`) for a notice `wanted` accepts and returns it; panics naming
    /// `what` with every notice seen otherwise.
    pub async fn wait_for(
        &mut self,
        what: &str,
        within: Duration,
        wanted: impl Fn(&Value) -> bool,
    ) -> Value {
        let found = tokio::time::timeout(within, async {
            while let Some(line) = self.rx.recv().await {
                let v: Value = serde_json::from_str(&line).unwrap();
                self.seen.push(v.clone());
                if wanted(&v) {
                    return Some(v);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(v)) => v,
            Ok(None) => panic!("notices ended before {what}: {:#?}", self.seen),
            Err(_) => panic!("no {what} within {within:?}: {:#?}", self.seen),
        }
    }

    /// Waits (at most 60 s) for the `Tunnels` notice with a count of 1.
    pub async fn wait_for_tunnel(&mut self) -> Value {
        self.wait_for("tunnel", Duration::from_secs(60), |v| {
            v["noticeType"] == "Tunnels" && v["data"]["count"] == 1
        })
        .await
    }

    /// Keeps reading (and dropping) notices in the background, so the client never blocks on
    /// a full channel.
    pub fn drain(mut self) {
        tokio::spawn(async move { while self.rx.recv().await.is_some() {} });
    }
}

/// Stores `entries` (as embedded ones) in the datastore under `config`'s
/// `DataRootDirectory`, then starts the client with `config` (a client.json object, which
/// must set `DataRootDirectory` and hold no key the client does not know), with diagnostic
/// notices.
pub async fn start(config: &Value, entries: &[ServerEntry]) -> (Client, NoticeLines) {
    let text = config.to_string();
    let (config, unknown) = psiphon_client::config::Config::parse(&text, "client.json").unwrap();
    assert!(
        unknown.is_empty(),
        "unknown client config keys: {unknown:?}"
    );
    let data_root = config
        .data_root_directory
        .clone()
        .expect("the test's client config sets DataRootDirectory");
    let store = Arc::new(Datastore::open(Path::new(&data_root)).unwrap());
    for e in entries {
        store.store(e.clone(), Source::Embedded).unwrap();
    }
    let (notices, rx) = psiphon_client::notice::Notices::channel(4096, true);
    let client = app::start(&config, store, notices).await.unwrap();
    (
        client,
        NoticeLines {
            rx,
            seen: Vec::new(),
        },
    )
}
