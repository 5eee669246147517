//! Per-domain byte counts for `psiphon-status` `host_bytes` (wire notes 10.4).
//!
//! Each tunnel whose handshake returned `https_request_regexes` gets a [`HostBytes`]. Every
//! port forward through it is wrapped in a [`Counted`] stream: its first upstream bytes go
//! through [`psiphon_protocol::host_sniff`] (HTTP `Host` or TLS SNI, at most 4 KiB, then plain
//! relay), the host is mapped by the first matching regex (Go's `ReplaceAllString`, `$1`
//! expanded; no match or no host: `(OTHER)`), and the forward's bytes both ways are counted
//! under that name. The status request takes the counts out and puts them back if it fails.
//!
//! Privacy: only the mapped name is kept, never a path, URL, port or IP literal.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use psiphon_protocol::host_sniff::{HostSniffer, Sniff};
use regex::Regex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The name bytes are counted under when no regex matches or no host was seen.
pub const OTHER: &str = "(OTHER)";

/// The most distinct names counted between two status requests; later names count as
/// [`OTHER`], so a `$1`-expanding regex cannot grow the map without bound.
pub const MAX_HOSTS: usize = 1000;

/// A sponsor's compiled `https_request_regexes`, in order.
#[derive(Debug, Clone)]
pub struct HostRegexes(Vec<(Regex, String)>);

impl HostRegexes {
    /// Compiles the handshake's `[{"regex":..,"replace":..}]`. As tunnel-core, pairs with an
    /// empty regex or replacement, or a regex that does not compile, are skipped; the reasons
    /// are returned for a notice. `None` when no pair is usable (then nothing is counted).
    pub fn compile(pairs: &[BTreeMap<String, String>]) -> (Option<HostRegexes>, Vec<String>) {
        let mut out = Vec::new();
        let mut problems = Vec::new();
        for pair in pairs {
            let regex = pair.get("regex").map_or("", String::as_str);
            let replace = pair.get("replace").map_or("", String::as_str);
            if regex.is_empty() {
                problems.push("https_request_regexes: empty regex".to_owned());
                continue;
            }
            if replace.is_empty() {
                problems.push("https_request_regexes: empty replace".to_owned());
                continue;
            }
            match Regex::new(regex) {
                Ok(r) => out.push((r, replace.to_owned())),
                Err(e) => problems.push(format!(
                    "https_request_regexes: cannot compile {regex:?}: {e}"
                )),
            }
        }
        ((!out.is_empty()).then_some(HostRegexes(out)), problems)
    }

    /// The stats name of `host`: the first regex that matches, with every match replaced by
    /// the expanded replacement (Go's `Regexp.ReplaceAllString`); [`OTHER`] if none matches.
    pub fn map(&self, host: &str) -> String {
        self.0.iter().find(|(r, _)| r.is_match(host)).map_or_else(
            || OTHER.to_owned(),
            |(r, replace)| r.replace_all(host, replace.as_str()).into_owned(),
        )
    }
}

/// Adds `n` bytes under `name` to `counts`, which holds at most [`MAX_HOSTS`] names: once
/// full, a new name's bytes go to [`OTHER`].
pub fn add_bounded(counts: &mut BTreeMap<String, u64>, name: &str, n: u64) {
    if n == 0 {
        return;
    }
    let key = if counts.contains_key(name) || counts.len() < MAX_HOSTS {
        name
    } else {
        OTHER
    };
    match counts.get_mut(key) {
        Some(c) => *c = c.saturating_add(n),
        None => {
            counts.insert(key.to_owned(), n);
        }
    }
}

/// One tunnel's per-host byte counts.
#[derive(Debug)]
pub struct HostBytes {
    regexes: HostRegexes,
    counts: Mutex<BTreeMap<String, u64>>,
}

impl HostBytes {
    /// Counts under `regexes`.
    pub fn new(regexes: HostRegexes) -> Arc<HostBytes> {
        Arc::new(HostBytes {
            regexes,
            counts: Mutex::new(BTreeMap::new()),
        })
    }

    /// The stats name of a sniffed host (`None`: no host seen).
    pub fn name(&self, host: Option<&str>) -> String {
        host.map_or_else(|| OTHER.to_owned(), |h| self.regexes.map(h))
    }

    /// Adds `n` bytes under `name`.
    pub fn add(&self, name: &str, n: u64) {
        add_bounded(
            &mut self.counts.lock().unwrap_or_else(PoisonError::into_inner),
            name,
            n,
        );
    }

    /// Takes the counts out for a status request.
    pub fn take(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.counts.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Puts counts back after a failed status request (they are sent with the next one).
    pub fn put_back(&self, taken: BTreeMap<String, u64>) {
        for (name, n) in taken {
            self.add(&name, n);
        }
    }

    /// Whether nothing was counted since the last [`HostBytes::take`].
    pub fn is_empty(&self) -> bool {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// The counts now (for tests and diagnostics).
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A forward's stream, counting its bytes under the host its first upstream bytes name.
#[derive(Debug)]
pub struct Counted<S> {
    inner: S,
    stats: Arc<HostBytes>,
    sniffer: HostSniffer,
    /// The stats name, once the sniffer decided.
    name: Option<String>,
    /// Bytes moved before the sniffer decided.
    pending: u64,
}

impl<S> Counted<S> {
    /// Wraps a new forward's stream.
    pub fn new(inner: S, stats: Arc<HostBytes>) -> Counted<S> {
        Counted {
            inner,
            stats,
            sniffer: HostSniffer::new(),
            name: None,
            pending: 0,
        }
    }

    fn decide(&mut self, verdict: Sniff) {
        let name = match verdict {
            Sniff::NeedMore => return,
            Sniff::Found(host) => self.stats.name(Some(&host)),
            Sniff::NotFound => self.stats.name(None),
        };
        self.stats.add(&name, std::mem::take(&mut self.pending));
        self.name = Some(name);
    }

    fn count(&mut self, n: usize) {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        match &self.name {
            Some(name) => self.stats.add(name, n),
            None => self.pending = self.pending.saturating_add(n),
        }
    }
}

impl<S> Drop for Counted<S> {
    fn drop(&mut self) {
        if self.name.is_none() && self.pending > 0 {
            self.stats.add(OTHER, self.pending);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            this.count(buf.filled().len().saturating_sub(before));
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = result {
            if this.name.is_none() {
                let verdict = this.sniffer.feed(data.get(..n).unwrap_or_default());
                this.count(n);
                this.decide(verdict);
            } else {
                this.count(n);
            }
        }
        result
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn pairs(list: &[(&str, &str)]) -> Vec<BTreeMap<String, String>> {
        list.iter()
            .map(|(r, p)| {
                BTreeMap::from([
                    ("regex".to_owned(), (*r).to_owned()),
                    ("replace".to_owned(), (*p).to_owned()),
                ])
            })
            .collect()
    }

    #[test]
    fn go_replace_all_semantics() {
        let (r, problems) = HostRegexes::compile(&pairs(&[
            ("", "x"),
            ("a", ""),
            ("(", "x"),
            (r"^(?:[a-z0-9-]+\.)*(example\.test)$", "$1"),
            (r"^(?:.+\.)?([a-z0-9-]+\.org)$", "org:${1}"),
            (r"^(news)\.(other\.test)$", "$2-$1x-$$"),
            (r"o", "0"),
        ]));
        let r = r.unwrap();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert_eq!(r.map("news.example.test"), "example.test");
        assert_eq!(r.map("example.test"), "example.test");
        assert_eq!(r.map("a.b.wikipedia.org"), "org:wikipedia.org");
        // `$1x` is the (absent) group named "1x", empty, as in Go; `$$` is a dollar.
        assert_eq!(r.map("news.other.test"), "other.test--$");
        // Every match is replaced.
        assert_eq!(r.map("foo.net"), "f00.net");
        assert_eq!(r.map("zzz.net"), OTHER);
        assert!(HostRegexes::compile(&pairs(&[("", "")])).0.is_none());
    }

    #[test]
    fn bounded_names_and_put_back() {
        let (r, _) = HostRegexes::compile(&pairs(&[("^(.*)$", "$1")]));
        let stats = HostBytes::new(r.unwrap());
        for i in 0..MAX_HOSTS + 10 {
            stats.add(&format!("h{i}.test"), 1);
        }
        let taken = stats.take();
        assert_eq!(taken.len(), MAX_HOSTS + 1);
        assert_eq!(taken.get(OTHER), Some(&10));
        assert!(stats.take().is_empty());
        stats.add("h0.test", 5);
        stats.put_back(taken);
        assert_eq!(stats.snapshot().get("h0.test"), Some(&6));
    }

    #[tokio::test]
    async fn counts_both_directions_under_the_sniffed_host() {
        // Only the match is replaced (as Go): an unanchored regex keeps the rest of the name.
        let (r, _) = HostRegexes::compile(&pairs(&[(r"(example\.test)$", "$1")]));
        assert_eq!(
            r.as_ref().unwrap().map("news.example.test"),
            "news.example.test"
        );
        let (r, _) = HostRegexes::compile(&pairs(&[(r"^(?:.+\.)?(example\.test)$", "$1")]));
        let stats = HostBytes::new(r.unwrap());
        let request = b"GET /private/path?q=1 HTTP/1.1\r\nHost: news.example.test\r\n\r\n";
        let (near, mut far) = tokio::io::duplex(1 << 16);
        let mut counted = Counted::new(near, Arc::clone(&stats));
        // The request in two writes: counted once decided.
        counted.write_all(&request[..10]).await.unwrap();
        assert!(stats.snapshot().is_empty());
        counted.write_all(&request[10..]).await.unwrap();
        far.write_all(&[0u8; 1000]).await.unwrap();
        let mut buf = vec![0u8; 1000];
        counted.read_exact(&mut buf).await.unwrap();
        let sent = u64::try_from(request.len()).unwrap();
        assert_eq!(stats.snapshot().get("example.test"), Some(&(sent + 1000)));
        drop(counted);

        // Not HTTP or TLS: (OTHER), also when the stream ends undecided.
        let (near, _far) = tokio::io::duplex(1 << 16);
        let mut counted = Counted::new(near, Arc::clone(&stats));
        counted.write_all(b"SSH-2.0-x\r\n").await.unwrap();
        let (near, _far2) = tokio::io::duplex(1 << 16);
        let mut undecided = Counted::new(near, Arc::clone(&stats));
        undecided.write_all(b"GET /x").await.unwrap();
        drop(undecided);
        let snap = stats.snapshot();
        assert_eq!(snap.get(OTHER), Some(&(11 + 6)));
        // Nothing but mapped names: no path, no raw host.
        assert!(snap.keys().all(|k| k == OTHER || k == "example.test"));
    }
}
