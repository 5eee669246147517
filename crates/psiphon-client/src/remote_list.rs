//! The remote server list fetcher (wire spec section 5.4): downloads the signed list from one
//! of `RemoteServerListURLs` (resumable, ETag-aware, see [`crate::download`]), authenticates the
//! whole package before storing anything, then streams its entries into the datastore with
//! source `REMOTE`.
//!
//! When: the controller asks for a fetch when a round of establishment fails or there is no
//! candidate at all; a fetch is skipped within `stale_period` (6 h) of the last success; a
//! failure is retried after `retry_period` (30 s) while the controller still asks. With a
//! tunnel up, the fetch goes through it, and a stale list is refreshed that way too.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use psiphon_protocol::ServerEntry;
use psiphon_protocol::time::{parse_rfc3339, rfc3339};
use tokio::sync::Notify;

use crate::config::TransferUrl;
use crate::controller::ActiveTunnel;
use crate::datastore::{Datastore, Source, StoreSummary};
use crate::download::{self, DownloadError, Downloaded, HttpUrl, redact_url};
use crate::notice::{NoticeFlags, Notices, obj};

/// Key-value key of the last successful fetch time (RFC 3339).
pub const KEY_LAST_FETCH: &str = "lastRemoteServerListFetch";

/// Fetcher settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where to fetch from.
    pub urls: Vec<TransferUrl>,
    /// `RemoteServerListSignaturePublicKey`.
    pub public_key: String,
    /// `ServerEntrySignaturePublicKey`: entries that carry a signature must verify.
    pub entry_signature_key: Option<String>,
    /// The completed download (`<data dir>/remote_server_list`); partial data beside it.
    pub download_path: PathBuf,
    /// No new fetch within this long after a success (`FetchRemoteServerListStalePeriod`).
    pub stale_period: Duration,
    /// Pause after a failure (`FetchRemoteServerListRetryPeriod`).
    pub retry_period: Duration,
    /// Limit for one fetch (`FetchRemoteServerListTimeout`).
    pub timeout: Duration,
    /// `User-Agent`.
    pub user_agent: String,
    /// Certificates trusted beside the web PKI roots for `https://` URLs (a private CA).
    pub tls_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// How untunneled fetches reach the list's host (direct, or the upstream proxy).
    pub net: Arc<dyn psiphon_transport::NetDialer>,
}

impl Settings {
    /// tunnel-core's defaults for the periods.
    pub fn new(urls: Vec<TransferUrl>, public_key: String, download_path: PathBuf) -> Settings {
        Settings {
            urls,
            public_key,
            entry_signature_key: None,
            download_path,
            stale_period: Duration::from_secs(6 * 3600),
            retry_period: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
            user_agent: format!(
                "psiphon-rs/{} ({})",
                env!("CARGO_PKG_VERSION"),
                std::env::consts::OS
            ),
            tls_roots: Vec::new(),
            net: Arc::new(psiphon_transport::Direct::new(Duration::from_secs(20))),
        }
    }
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The download failed.
    #[error(transparent)]
    Download(#[from] DownloadError),
    /// The package did not authenticate; nothing was stored and the file was removed.
    #[error("remote server list rejected: {0}")]
    Authentication(String),
    /// Connecting to the list's host failed.
    #[error("cannot reach {host}: {reason}")]
    Connect {
        /// Host:port.
        host: String,
        /// Why.
        reason: String,
    },
    /// The datastore failed.
    #[error(transparent)]
    Datastore(#[from] crate::datastore::DatastoreError),
    /// Reading the downloaded file failed.
    #[error("remote server list file: {0}")]
    File(#[from] std::io::Error),
    /// The whole fetch took longer than the timeout.
    #[error("fetch timed out after {0:?}")]
    Timeout(Duration),
}

/// What a successful fetch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The list was downloaded and stored.
    Stored {
        /// Bytes that came over the network this time (less than the file when resumed).
        bytes: u64,
        /// Entries stored.
        summary: StoreSummary,
        /// Lines skipped (undecodable, or a bad signature).
        skipped: usize,
        /// Whether it came through the tunnel.
        tunneled: bool,
    },
    /// The server said the list has not changed (304).
    Unchanged,
}

/// The fetcher: call [`Fetcher::fetch`] directly, or [`Fetcher::run`] as a task woken by
/// [`Fetcher::request`].
#[derive(Debug)]
pub struct Fetcher {
    settings: Settings,
    store: Arc<Datastore>,
    tunnel: Option<ActiveTunnel>,
    notices: Notices,
    wake: Notify,
}

fn random_index(n: usize) -> usize {
    let mut b = [0u8; 8];
    let _ = aws_lc_rs::rand::fill(&mut b);
    let n64 = u64::try_from(n.max(1)).unwrap_or(1);
    usize::try_from(u64::from_le_bytes(b) % n64).unwrap_or(0)
}

impl Fetcher {
    /// A fetcher storing into `store`; with `tunnel`, fetches go through the active tunnel
    /// when one is up.
    pub fn new(
        settings: Settings,
        store: Arc<Datastore>,
        tunnel: Option<ActiveTunnel>,
        notices: Notices,
    ) -> Arc<Fetcher> {
        Arc::new(Fetcher {
            settings,
            store,
            tunnel,
            notices,
            wake: Notify::new(),
        })
    }

    /// Asks the running fetcher for a fetch (it may decline: see the module docs).
    pub fn request(&self) {
        self.wake.notify_one();
    }

    /// When the last fetch succeeded, if ever.
    pub fn last_success(&self) -> Option<SystemTime> {
        self.store
            .get(KEY_LAST_FETCH)
            .ok()
            .flatten()
            .as_deref()
            .and_then(parse_rfc3339)
    }

    fn is_stale(&self) -> bool {
        self.last_success().is_none_or(|t| {
            SystemTime::now()
                .duration_since(t)
                .map_or(true, |age| age >= self.settings.stale_period)
        })
    }

    /// The canonical URL (the first with `OnlyAfterAttempts` 0): the ETag's key.
    fn canonical_url(&self) -> &str {
        self.settings
            .urls
            .iter()
            .find(|u| u.only_after_attempts == 0)
            .map_or("", |u| u.url.as_str())
    }

    /// Runs until `shutdown` resolves: fetches when asked and stale; refreshes a stale list
    /// through the tunnel while one is up.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut attempt: u32 = 0;
        loop {
            let tunnel_up = self.tunnel.as_ref().is_some_and(ActiveTunnel::is_up);
            let poll = if tunnel_up {
                self.settings.stale_period.min(Duration::from_secs(600))
            } else {
                Duration::from_secs(3600)
            };
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(poll) => {
                    if !self.tunnel.as_ref().is_some_and(ActiveTunnel::is_up) {
                        continue;
                    }
                }
                () = &mut shutdown => return,
            }
            if !self.is_stale() {
                continue;
            }
            let result = tokio::select! {
                r = self.fetch(attempt) => r,
                () = &mut shutdown => return,
            };
            match result {
                Ok(_) => attempt = 0,
                Err(e) => {
                    attempt = attempt.saturating_add(1);
                    self.notices.emit_with(
                        "Warning",
                        NoticeFlags::DIAGNOSTIC,
                        obj([(
                            "message",
                            format!("failed to fetch common remote server list: {e}").into(),
                        )]),
                    );
                    tokio::select! {
                        () = tokio::time::sleep(self.settings.retry_period) => {}
                        () = &mut shutdown => return,
                    }
                }
            }
        }
    }

    /// One fetch: download (resuming a partial), authenticate, store. `attempt` selects
    /// among the URLs by `OnlyAfterAttempts`.
    pub async fn fetch(&self, attempt: u32) -> Result<Fetched, FetchError> {
        let timeout = self.settings.timeout;
        tokio::time::timeout(timeout, self.fetch_inner(attempt))
            .await
            .map_err(|_| FetchError::Timeout(timeout))?
    }

    async fn fetch_inner(&self, attempt: u32) -> Result<Fetched, FetchError> {
        self.notices.info("fetching common remote server list");
        let candidates: Vec<&TransferUrl> = self
            .settings
            .urls
            .iter()
            .filter(|u| u.only_after_attempts <= attempt)
            .collect();
        let Some(chosen) = candidates.get(random_index(candidates.len())).copied() else {
            return Err(DownloadError::Url("no RemoteServerListURLs".into()).into());
        };
        let url = HttpUrl::parse(&chosen.url)?;
        let canonical = self.canonical_url().to_owned();
        let last_etag = self.store.url_etag(&canonical)?;
        // A last ETag with no completed file on disk is still valid: the list is stored.
        let started = Instant::now();
        let request = download::Request {
            url: &url,
            destination: &self.settings.download_path,
            if_none_match: last_etag.as_deref(),
            user_agent: &self.settings.user_agent,
            headers: &chosen.request_headers,
        };
        let tunnel = self.tunnel.as_ref().filter(|t| t.is_up());
        let tunneled = tunnel.is_some();
        let connect_err = |reason: String| FetchError::Connect {
            host: format!("{}:{}", url.host, url.port),
            reason,
        };
        let stream: Box<dyn download::Io> = match tunnel {
            Some(t) => Box::new(
                t.open(&url.host, url.port, Duration::from_secs(5))
                    .await
                    .map_err(|e| connect_err(e.to_string()))?,
            ),
            None => self
                .settings
                .net
                .connect(&url.host, url.port)
                .await
                .map_err(|e| connect_err(e.full_message()))?,
        };
        let stream: Box<dyn download::Io> = if url.tls {
            let config = crate::tls::client_config(chosen.skip_verify, &self.settings.tls_roots)
                .map_err(|e| connect_err(format!("TLS setup: {e}")))?;
            Box::new(
                crate::tls::connect(stream, &url.host, Arc::new(config))
                    .await
                    .map_err(|e| connect_err(format!("TLS: {e}")))?,
            )
        } else {
            stream
        };
        let outcome = download::download(stream, &request).await?;
        let (etag, bytes) = match outcome {
            Downloaded::NotModified => {
                self.mark_success()?;
                return Ok(Fetched::Unchanged);
            }
            Downloaded::Complete { etag, bytes } => (etag, bytes),
        };
        let redacted = redact_url(&chosen.url);
        self.notices.emit_with(
            "RemoteServerListResourceDownloadedBytes",
            NoticeFlags::DIAGNOSTIC,
            obj([
                ("url", redacted.clone().into()),
                ("bytes", bytes.into()),
                ("duration", format!("{:?}", started.elapsed()).into()),
            ]),
        );

        let path = self.settings.download_path.clone();
        let key = self.settings.public_key.clone();
        let entry_key = self.settings.entry_signature_key.clone();
        let store = self.store.clone();
        let notices = self.notices.clone();
        let imported = tokio::task::spawn_blocking(move || {
            import_file(&path, &key, entry_key.as_deref(), &store, &notices)
        })
        .await
        .map_err(|e| FetchError::File(std::io::Error::other(e.to_string())))?;
        let (summary, skipped) = match imported {
            Ok(v) => v,
            Err(e) => {
                // A list that does not authenticate is dropped entirely, with its ETag, so the
                // next fetch downloads afresh.
                let _ = std::fs::remove_file(&self.settings.download_path);
                return Err(e);
            }
        };
        if !etag.is_empty() {
            self.store.set_url_etag(&canonical, Some(&etag))?;
        }
        self.mark_success()?;
        self.notices.emit_with(
            "RemoteServerListResourceDownloaded",
            NoticeFlags::DIAGNOSTIC,
            obj([("url", redacted.into())]),
        );
        Ok(Fetched::Stored {
            bytes,
            summary,
            skipped,
            tunneled,
        })
    }

    fn mark_success(&self) -> Result<(), FetchError> {
        self.store
            .set(KEY_LAST_FETCH, Some(&rfc3339(SystemTime::now())))?;
        Ok(())
    }
}

/// Authenticates the downloaded package (first pass, nothing stored), then streams its
/// entries into the store (second pass). Returns what was stored and how many lines were
/// skipped.
fn import_file(
    path: &std::path::Path,
    public_key: &str,
    entry_key: Option<&str>,
    store: &Datastore,
    notices: &Notices,
) -> Result<(StoreSummary, usize), FetchError> {
    use psiphon_protocol::auth_package;
    let open = || -> Result<auth_package::ZlibReader<BufReader<std::fs::File>>, FetchError> {
        Ok(auth_package::ZlibReader::new(BufReader::new(
            std::fs::File::open(path)?,
        )))
    };
    auth_package::verify_stream(open()?, public_key)
        .map_err(|e| FetchError::Authentication(e.to_string()))?;
    let data = BufReader::new(
        auth_package::DataReader::new(open()?)
            .map_err(|e| FetchError::Authentication(e.to_string()))?,
    );
    let now = rfc3339(SystemTime::now());
    let mut skipped = 0usize;
    let mut total = StoreSummary::default();
    let mut batch = Vec::with_capacity(256);
    let mut flush = |batch: &mut Vec<ServerEntry>| -> Result<(), FetchError> {
        let s = store.store_all(batch.drain(..), Source::Remote)?;
        total.written += s.written;
        total.unchanged += s.unchanged;
        total.tombstoned += s.tombstoned;
        Ok(())
    };
    for (i, line) in data.split(b'\n').enumerate() {
        let line = line.map_err(|e| FetchError::Authentication(e.to_string()))?;
        let line = line.strip_suffix(b"\r").unwrap_or(&line);
        if line.is_empty() {
            continue;
        }
        let decoded = std::str::from_utf8(line)
            .ok()
            .filter(|l| l.len() <= psiphon_protocol::MAX_LIST_LINE_BYTES)
            .ok_or_else(|| "not an encoded entry".to_owned())
            .and_then(|l| ServerEntry::decode(l).map_err(|e| e.to_string()))
            .and_then(|e| match (entry_key, e.signature()) {
                (Some(k), Some(_)) => e
                    .verify_signature(k)
                    .map(|()| e)
                    .map_err(|err| format!("bad signature: {err}")),
                _ => Ok(e),
            });
        match decoded {
            Ok(mut e) => {
                e.set_local_timestamp(&now);
                batch.push(e);
                if batch.len() >= 256 {
                    flush(&mut batch)?;
                }
            }
            Err(why) => {
                skipped += 1;
                notices.emit_with(
                    "Warning",
                    NoticeFlags::NONE,
                    obj([(
                        "message",
                        format!("remote server list line {}: skipped: {why}", i + 1).into(),
                    )]),
                );
            }
        }
    }
    flush(&mut batch)?;
    Ok((total, skipped))
}
