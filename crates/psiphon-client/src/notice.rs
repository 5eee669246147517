//! tunnel-core's notices: one JSON object per line, the interface between the tunnel core and
//! the app (or the user reading ConsoleClient's stderr).
//!
//! A line is `{"data":{...},"noticeType":"<Type>","timestamp":"2006-01-02T15:04:05.000Z"}`,
//! encoded as Go's `encoding/json` encodes a map: keys sorted, `<`, `>` and `&` escaped as
//! `\u003c`, `\u003e`, `\u0026`. Every line except those of skip-redaction notices
//! (`ClientAddress`, `Untunneled`) then has its IP addresses replaced by `[redacted]`, as
//! tunnel-core's `common.RedactIPAddresses` does (see [`redact_ip_addresses`]).
//!
//! Diagnostic notices (`Info`, `Warning`, `Error`, `ActiveTunnel`, `SessionId`,
//! `LocalProxyError`, `ConnectingServer`, ...) are dropped unless diagnostics are enabled
//! (`EmitDiagnosticNotices`).
//!
//! [`format_line`] is the pure core; [`Notices`] adds the clock, the diagnostic switch, the
//! repetition suppression and the sink.

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde_json::{Map, Value};
use tokio::sync::mpsc;

pub use redact::redact_ip_addresses;

/// How a notice is treated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoticeFlags {
    /// Dropped unless diagnostic notices are enabled.
    pub diagnostic: bool,
    /// Not passed through [`redact_ip_addresses`] (the notice exists to show an address to
    /// the user).
    pub skip_redaction: bool,
}

impl NoticeFlags {
    /// An ordinary notice: always emitted, redacted.
    pub const NONE: NoticeFlags = NoticeFlags {
        diagnostic: false,
        skip_redaction: false,
    };
    /// A diagnostic notice.
    pub const DIAGNOSTIC: NoticeFlags = NoticeFlags {
        diagnostic: true,
        skip_redaction: false,
    };
    /// A notice whose addresses are shown in clear.
    pub const SKIP_REDACTION: NoticeFlags = NoticeFlags {
        diagnostic: false,
        skip_redaction: true,
    };
}

/// Formats one notice line, newline included: the sans-IO core of [`Notices`].
pub fn format_line(
    notice_type: &str,
    data: &Map<String, Value>,
    timestamp: SystemTime,
    redact: bool,
) -> String {
    let mut line = String::with_capacity(128);
    line.push_str("{\"data\":");
    json::write_object(data, &mut line);
    line.push_str(",\"noticeType\":");
    json::write_string(notice_type, &mut line);
    line.push_str(",\"timestamp\":\"");
    line.push_str(&rfc3339_milli(timestamp));
    line.push_str("\"}\n");
    if redact {
        redact_ip_addresses(&line)
    } else {
        line
    }
}

/// Go's `RFC3339Milli` in UTC (`2006-01-02T15:04:05.000Z`), the notices' timestamp form.
pub use psiphon_protocol::time::rfc3339_millis as rfc3339_milli;

/// The clock a [`Notices`] stamps lines with.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

enum Sink {
    Writer(Mutex<Box<dyn Write + Send>>),
    Channel(mpsc::Sender<String>),
}

struct Shared {
    sink: Sink,
    diagnostic: AtomicBool,
    /// Repetition state per key: (last message, repeats).
    repetitive: Mutex<HashMap<String, (String, u64)>>,
}

/// The notice emitter: cheap to clone, shared by every part of the client.
///
/// Each instance is independent (no global state), so two clients can run in one process.
#[derive(Clone)]
pub struct Notices {
    shared: Arc<Shared>,
    clock: Clock,
}

impl std::fmt::Debug for Notices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notices")
            .field("diagnostic", &self.diagnostic())
            .finish_non_exhaustive()
    }
}

impl Notices {
    fn new(sink: Sink, diagnostic: bool) -> Notices {
        Notices {
            shared: Arc::new(Shared {
                sink,
                diagnostic: AtomicBool::new(diagnostic),
                repetitive: Mutex::new(HashMap::new()),
            }),
            clock: Arc::new(SystemTime::now),
        }
    }

    /// Notices written to stderr, as ConsoleClient does.
    pub fn stderr(diagnostic: bool) -> Notices {
        Notices::to_writer(Box::new(std::io::stderr()), diagnostic)
    }

    /// Notices written to `writer`, one whole line per write.
    pub fn to_writer(writer: Box<dyn Write + Send>, diagnostic: bool) -> Notices {
        Notices::new(Sink::Writer(Mutex::new(writer)), diagnostic)
    }

    /// Notices sent as lines (newline included) on a bounded channel. When the receiver
    /// lags by more than `capacity` lines, further lines are dropped rather than blocking
    /// the client.
    pub fn channel(capacity: usize, diagnostic: bool) -> (Notices, mpsc::Receiver<String>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Notices::new(Sink::Channel(tx), diagnostic), rx)
    }

    /// This handle (and its clones made afterwards) stamps lines with `clock`.
    pub fn with_clock(mut self, clock: Clock) -> Notices {
        self.clock = clock;
        self
    }

    /// Whether diagnostic notices are emitted.
    pub fn diagnostic(&self) -> bool {
        self.shared.diagnostic.load(Ordering::Relaxed)
    }

    /// Turns diagnostic notices on or off (for every clone).
    pub fn set_diagnostic(&self, enable: bool) {
        self.shared.diagnostic.store(enable, Ordering::Relaxed);
    }

    /// Emits an ordinary (non-diagnostic, redacted) notice.
    pub fn emit(&self, notice_type: &str, data: Map<String, Value>) {
        self.emit_with(notice_type, NoticeFlags::NONE, data);
    }

    /// Emits a notice with explicit flags.
    pub fn emit_with(&self, notice_type: &str, flags: NoticeFlags, data: Map<String, Value>) {
        if flags.diagnostic && !self.diagnostic() {
            return;
        }
        let line = format_line(notice_type, &data, (self.clock)(), !flags.skip_redaction);
        match &self.shared.sink {
            Sink::Writer(writer) => {
                // A poisoned lock only means another writer panicked mid-line; keep going.
                let mut w = writer.lock().unwrap_or_else(|e| e.into_inner());
                let _ = w.write_all(line.as_bytes());
                let _ = w.flush();
            }
            Sink::Channel(tx) => {
                let _ = tx.try_send(line);
            }
        }
    }

    /// tunnel-core's `outputRepetitiveNotice`: consecutive notices under `key` with the same
    /// `message` are emitted with a `repeats` count up to `limit` repeats, then suppressed
    /// until the message changes.
    fn emit_repetitive(
        &self,
        key: &str,
        message: &str,
        limit: u64,
        notice_type: &str,
        flags: NoticeFlags,
        mut data: Map<String, Value>,
    ) {
        let repeats = {
            let mut states = self
                .shared
                .repetitive
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match states.get_mut(key) {
                None => {
                    states.insert(key.to_owned(), (message.to_owned(), 0));
                    0
                }
                Some(state) => {
                    if state.0 != message {
                        *state = (message.to_owned(), 0);
                    } else {
                        state.1 = state.1.saturating_add(1);
                    }
                    state.1
                }
            }
        };
        if repeats > limit {
            return;
        }
        if repeats > 0 {
            data.insert("repeats".into(), repeats.into());
        }
        self.emit_with(notice_type, flags, data);
    }

    fn message(&self, notice_type: &str, message: &str) {
        self.emit_with(
            notice_type,
            NoticeFlags::DIAGNOSTIC,
            obj([("message", message.into())]),
        );
    }

    /// `Info` (diagnostic): an informational message.
    pub fn info(&self, message: &str) {
        self.message("Info", message);
    }

    /// `Warning` (diagnostic): a recoverable error condition.
    pub fn warning(&self, message: &str) {
        self.message("Warning", message);
    }

    /// `Error` (diagnostic): an unrecoverable error condition.
    pub fn error(&self, message: &str) {
        self.message("Error", message);
    }

    /// `ListeningSocksProxyPort`: the port the local SOCKS proxy listens on.
    pub fn listening_socks_proxy_port(&self, port: u16) {
        self.emit("ListeningSocksProxyPort", obj([("port", port.into())]));
    }

    /// `ListeningHttpProxyPort`: the port the local HTTP proxy listens on.
    pub fn listening_http_proxy_port(&self, port: u16) {
        self.emit("ListeningHttpProxyPort", obj([("port", port.into())]));
    }

    /// `SocksProxyPortInUse`: the configured SOCKS port could not be bound.
    pub fn socks_proxy_port_in_use(&self, port: u16) {
        self.emit("SocksProxyPortInUse", obj([("port", port.into())]));
    }

    /// `HttpProxyPortInUse`: the configured HTTP proxy port could not be bound.
    pub fn http_proxy_port_in_use(&self, port: u16) {
        self.emit("HttpProxyPortInUse", obj([("port", port.into())]));
    }

    /// `Tunnels`: how many tunnels are up (0 = disconnected).
    pub fn tunnels(&self, count: u64) {
        self.emit("Tunnels", obj([("count", count.into())]));
    }

    /// `ActiveTunnel` (diagnostic): a tunnel now carries port forwards.
    pub fn active_tunnel(&self, diagnostic_id: &str, protocol: &str) {
        self.emit_with(
            "ActiveTunnel",
            NoticeFlags::DIAGNOSTIC,
            obj([
                ("diagnosticID", diagnostic_id.into()),
                ("protocol", protocol.into()),
            ]),
        );
    }

    /// `ConnectedServerRegion`: the region of the connected server.
    pub fn connected_server_region(&self, server_region: &str) {
        self.emit(
            "ConnectedServerRegion",
            obj([("serverRegion", server_region.into())]),
        );
    }

    /// `ClientRegion`: the client's region as the server sees it.
    pub fn client_region(&self, region: &str) {
        self.emit("ClientRegion", obj([("region", region.into())]));
    }

    /// `ClientAddress` (skip-redaction): the client's public address as the server sees it.
    pub fn client_address(&self, address: &str) {
        self.emit_with(
            "ClientAddress",
            NoticeFlags::SKIP_REDACTION,
            obj([("address", address.into())]),
        );
    }

    /// `Homepage`: one sponsor homepage to open.
    pub fn homepage(&self, url: &str) {
        self.emit("Homepage", obj([("url", url.into())]));
    }

    /// `ClientUpgradeAvailable`: the handshake offered a newer client version.
    pub fn client_upgrade_available(&self, version: &str) {
        self.emit("ClientUpgradeAvailable", obj([("version", version.into())]));
    }

    /// `ClientIsLatestVersion`: no upgrade is needed.
    pub fn client_is_latest_version(&self, available_version: &str) {
        self.emit(
            "ClientIsLatestVersion",
            obj([("availableVersion", available_version.into())]),
        );
    }

    /// `ServerTimestamp`: the server's clock as seen in the handshake.
    pub fn server_timestamp(&self, diagnostic_id: &str, timestamp: &str) {
        self.emit(
            "ServerTimestamp",
            obj([
                ("diagnosticID", diagnostic_id.into()),
                ("timestamp", timestamp.into()),
            ]),
        );
    }

    /// `TrafficRateLimits`: the tunnel's rate limits (0 = none, -1 = not reported).
    pub fn traffic_rate_limits(&self, diagnostic_id: &str, upstream: i64, downstream: i64) {
        self.emit(
            "TrafficRateLimits",
            obj([
                ("diagnosticID", diagnostic_id.into()),
                ("upstreamBytesPerSecond", upstream.into()),
                ("downstreamBytesPerSecond", downstream.into()),
            ]),
        );
    }

    /// `SessionId` (diagnostic): the session ID used for every tunnel of this run.
    pub fn session_id(&self, session_id: &str) {
        self.emit_with(
            "SessionId",
            NoticeFlags::DIAGNOSTIC,
            obj([("sessionId", session_id.into())]),
        );
    }

    /// `Untunneled` (skip-redaction, repetitive): an address is being reached directly.
    pub fn untunneled(&self, address: &str) {
        self.emit_repetitive(
            "Untunneled",
            address,
            0,
            "Untunneled",
            NoticeFlags::SKIP_REDACTION,
            obj([("address", address.into())]),
        );
    }

    /// `UpstreamProxyError` (repetitive): connecting to the upstream proxy failed.
    pub fn upstream_proxy_error(&self, message: &str) {
        self.emit_repetitive(
            "UpstreamProxyError",
            message,
            0,
            "UpstreamProxyError",
            NoticeFlags::NONE,
            obj([("message", message.into())]),
        );
    }

    /// `LocalProxyError` (diagnostic, repetitive per proxy type): a local proxy failed to
    /// serve a client. `proxy_type` is `"SOCKS"` or `"HTTP"`. As in tunnel-core, repeats are
    /// judged on the text after the last `": "`, and one repeat is shown before suppression.
    pub fn local_proxy_error(&self, proxy_type: &str, message: &str) {
        let root = message
            .rfind(": ")
            .and_then(|i| message.get(i + 2..))
            .unwrap_or(message);
        self.emit_repetitive(
            &format!("LocalProxyError-{proxy_type}"),
            root,
            1,
            "LocalProxyError",
            NoticeFlags::DIAGNOSTIC,
            obj([("message", message.into())]),
        );
    }

    /// `EstablishTunnelTimeout`: `EstablishTunnelTimeoutSeconds` passed without a tunnel.
    /// `timeout` is Go's duration string (e.g. `"5m0s"`).
    pub fn establish_tunnel_timeout(&self, timeout: &str) {
        self.emit("EstablishTunnelTimeout", obj([("timeout", timeout.into())]));
    }

    /// `Exiting`: the client is about to exit.
    pub fn exiting(&self) {
        self.emit("Exiting", Map::new());
    }
}

/// Builds a notice's data map.
pub fn obj<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn timestamps_match_go_rfc3339_milli() {
        assert_eq!(rfc3339_milli(at(0)), "1970-01-01T00:00:00.000Z");
        // Go's reference time, 2006-01-02T15:04:05.999Z.
        assert_eq!(
            rfc3339_milli(at(1_136_214_245_999)),
            "2006-01-02T15:04:05.999Z"
        );
        // A leap day and the end of a leap year.
        assert_eq!(
            rfc3339_milli(at(951_782_400_000)),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            rfc3339_milli(at(1_735_689_599_001)),
            "2024-12-31T23:59:59.001Z"
        );
        assert_eq!(
            rfc3339_milli(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00.000Z"
        );
    }

    #[test]
    fn line_bytes_are_pinned() {
        let data = obj([("port", 1080.into())]);
        assert_eq!(
            format_line(
                "ListeningSocksProxyPort",
                &data,
                at(1_136_214_245_000),
                true
            ),
            "{\"data\":{\"port\":1080},\"noticeType\":\"ListeningSocksProxyPort\",\"timestamp\":\"2006-01-02T15:04:05.000Z\"}\n"
        );
        // Keys sorted whatever the insertion order; Go's HTML escaping; redaction.
        let data = obj([
            ("zeta", "a<b>&c".into()),
            ("alpha", "dial tcp 192.0.2.1:443: refused".into()),
            ("mid", Value::Bool(true)),
        ]);
        assert_eq!(
            format_line("Warning", &data, at(1_136_214_245_000), true),
            "{\"data\":{\"alpha\":\"dial tcp [redacted]: refused\",\"mid\":true,\"zeta\":\"a\\u003cb\\u003e\\u0026c\"},\"noticeType\":\"Warning\",\"timestamp\":\"2006-01-02T15:04:05.000Z\"}\n"
        );
    }

    fn collect(diagnostic: bool) -> (Notices, mpsc::Receiver<String>) {
        let (n, rx) = Notices::channel(64, diagnostic);
        (n.with_clock(Arc::new(|| at(1_136_214_245_123))), rx)
    }

    fn drain(rx: &mut mpsc::Receiver<String>) -> Vec<String> {
        let mut v = Vec::new();
        while let Ok(l) = rx.try_recv() {
            v.push(l);
        }
        v
    }

    #[test]
    fn helpers_and_diagnostic_switch() {
        let (n, mut rx) = collect(false);
        n.info("hidden");
        n.active_tunnel("abcd1234", "OSSH");
        n.session_id("s");
        n.tunnels(1);
        n.exiting();
        let lines = drain(&mut rx);
        assert_eq!(
            lines,
            vec![
                "{\"data\":{\"count\":1},\"noticeType\":\"Tunnels\",\"timestamp\":\"2006-01-02T15:04:05.123Z\"}\n",
                "{\"data\":{},\"noticeType\":\"Exiting\",\"timestamp\":\"2006-01-02T15:04:05.123Z\"}\n",
            ]
        );
        n.set_diagnostic(true);
        n.active_tunnel("abcd1234", "OSSH");
        assert_eq!(
            drain(&mut rx),
            vec![
                "{\"data\":{\"diagnosticID\":\"abcd1234\",\"protocol\":\"OSSH\"},\"noticeType\":\"ActiveTunnel\",\"timestamp\":\"2006-01-02T15:04:05.123Z\"}\n"
            ]
        );
    }

    #[test]
    fn skip_redaction_notices_keep_addresses() {
        let (n, mut rx) = collect(false);
        n.client_address("198.51.100.7:5555");
        n.client_region("198.51.100.7");
        let lines = drain(&mut rx);
        assert!(lines[0].contains("\"address\":\"198.51.100.7:5555\""));
        assert!(lines[1].contains("\"region\":\"[redacted]\""));
    }

    #[test]
    fn local_proxy_errors_are_rate_limited() {
        let (n, mut rx) = collect(true);
        for port in [1, 2, 3, 4] {
            n.local_proxy_error("SOCKS", &format!("accept {port}: too many open files"));
        }
        n.local_proxy_error("SOCKS", "read: reset");
        let lines = drain(&mut rx);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[1].contains("\"repeats\":1"));
        assert!(lines[2].contains("read: reset"));
    }

    #[test]
    fn writer_sink_gets_whole_lines() {
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let n = Notices::to_writer(Box::new(buf.clone()), false).with_clock(Arc::new(|| at(0)));
        n.homepage("https://example.com/?a=1&b=2");
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "{\"data\":{\"url\":\"https://example.com/?a=1\\u0026b=2\"},\"noticeType\":\"Homepage\",\"timestamp\":\"1970-01-01T00:00:00.000Z\"}\n"
        );
    }
}

/// Go's `encoding/json` encoding of values (as `json.Marshal` does for `map[string]any`).
mod json {
    use serde_json::{Map, Number, Value};

    pub(super) fn write_object(map: &Map<String, Value>, out: &mut String) {
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort();
        out.push('{');
        for (i, key) in keys.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_string(key, out);
            out.push(':');
            if let Some(v) = map.get(key) {
                write_value(v, out);
            }
        }
        out.push('}');
    }

    pub(super) fn write_value(v: &Value, out: &mut String) {
        match v {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => write_number(n, out),
            Value::String(s) => write_string(s, out),
            Value::Array(a) => {
                out.push('[');
                for (i, item) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_value(item, out);
                }
                out.push(']');
            }
            Value::Object(m) => write_object(m, out),
        }
    }

    /// Go writes float64 in `%f` style within [1e-6, 1e21) and `%e` style outside, with the
    /// shortest digits that round-trip, and an exponent of at least one digit with a sign.
    fn write_number(n: &Number, out: &mut String) {
        if n.is_i64() || n.is_u64() {
            out.push_str(&n.to_string());
            return;
        }
        let f = n.as_f64().unwrap_or(0.0);
        let abs = f.abs();
        if abs == 0.0 || (1e-6..1e21).contains(&abs) {
            out.push_str(&format!("{f}"));
        } else {
            let s = format!("{f:e}");
            match s.split_once('e') {
                Some((mantissa, exp)) if !exp.starts_with('-') => {
                    out.push_str(mantissa);
                    out.push_str("e+");
                    out.push_str(exp);
                }
                _ => out.push_str(&s),
            }
        }
    }

    pub(super) fn write_string(s: &str, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                    out.push_str(&format!("\\u{:04x}", u32::from(c)));
                }
                c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
                c => out.push(c),
            }
        }
        out.push('"');
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn enc(v: Value) -> String {
            let mut s = String::new();
            write_value(&v, &mut s);
            s
        }

        #[test]
        fn go_encoding() {
            assert_eq!(
                enc("a\"b\\c\n\u{1}\u{8}\u{7f}é\u{2028}".into()),
                "\"a\\\"b\\\\c\\n\\u0001\\b\u{7f}é\\u2028\""
            );
            assert_eq!(
                enc(serde_json::json!([1, -2, 1.5, 1e21, 1e-7, 0.0, null])),
                "[1,-2,1.5,1e+21,1e-7,0,null]"
            );
        }
    }
}

/// tunnel-core's `common.RedactIPAddresses`.
mod redact {
    /// Replaces IPv4 and IPv6 address literals (with optional brackets and `:port`) by
    /// `[redacted]`, matching exactly what tunnel-core's `common.RedactIPAddresses` regular
    /// expression matches, leftmost-first as Go's `regexp` does:
    ///
    /// ```text
    /// (\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}|\[?(([a-fA-F0-9]{1,4}:){7}[a-fA-F0-9]{1,4}|
    ///  [a-fA-F0-9:]*::[a-fA-F0-9:]+|[a-fA-F0-9:]+::[a-fA-F0-9:]*)(.\d{1,3}\.\d{1,3}\.\d{1,3})?\]?)(:\d+)?
    /// ```
    ///
    /// Like tunnel-core it errs on the side of redaction (`999.1.1.1` and `a::b` match too).
    pub fn redact_ip_addresses(text: &str) -> String {
        let b = text.as_bytes();
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        let mut i = 0;
        while i < b.len() {
            match match_at(text, i) {
                Some(end) if end > i => {
                    // Matches start on an ASCII byte, so `i` is a char boundary.
                    out.push_str(text.get(copied..i).unwrap_or_default());
                    out.push_str("[redacted]");
                    copied = end;
                    i = end;
                }
                _ => i += 1,
            }
        }
        out.push_str(text.get(copied..).unwrap_or_default());
        out
    }

    type K<'a> = &'a mut dyn FnMut(usize) -> Option<usize>;

    fn is_hex(c: u8) -> bool {
        c.is_ascii_hexdigit()
    }
    fn is_hex_colon(c: u8) -> bool {
        c.is_ascii_hexdigit() || c == b':'
    }
    fn is_digit(c: u8) -> bool {
        c.is_ascii_digit()
    }

    /// `pred{min,max}`, greedy: tries the longest run first.
    fn rep(
        b: &[u8],
        pos: usize,
        min: usize,
        max: usize,
        pred: fn(u8) -> bool,
        k: K<'_>,
    ) -> Option<usize> {
        let mut n = 0;
        while n < max && b.get(pos + n).is_some_and(|&c| pred(c)) {
            n += 1;
        }
        if n < min {
            return None;
        }
        (min..=n).rev().find_map(|m| k(pos + m))
    }

    fn lit(b: &[u8], pos: usize, c: u8, k: K<'_>) -> Option<usize> {
        if b.get(pos) == Some(&c) {
            k(pos + 1)
        } else {
            None
        }
    }

    /// `x?`, greedy.
    fn opt(b: &[u8], pos: usize, c: u8, k: K<'_>) -> Option<usize> {
        lit(b, pos, c, k).or_else(|| k(pos))
    }

    /// `\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}`, `dots` dots.
    fn dotted(b: &[u8], pos: usize, dots: usize, k: K<'_>) -> Option<usize> {
        rep(b, pos, 1, 3, is_digit, &mut |p| {
            if dots == 0 {
                k(p)
            } else {
                lit(b, p, b'.', &mut |p| dotted(b, p, dots - 1, k))
            }
        })
    }

    /// `([a-fA-F0-9]{1,4}:){7-done}[a-fA-F0-9]{1,4}`.
    fn uncompressed(b: &[u8], pos: usize, done: usize, k: K<'_>) -> Option<usize> {
        if done == 7 {
            return rep(b, pos, 1, 4, is_hex, k);
        }
        rep(b, pos, 1, 4, is_hex, &mut |p| {
            lit(b, p, b':', &mut |p| uncompressed(b, p, done + 1, k))
        })
    }

    fn ipv6(text: &str, pos: usize, k: K<'_>) -> Option<usize> {
        let b = text.as_bytes();
        // After the address: `(.\d{1,3}\.\d{1,3}\.\d{1,3})?\]?`, where `.` is any char but \n.
        let mut tail = |p: usize| -> Option<usize> {
            let with_suffix = text
                .get(p..)
                .and_then(|t| t.chars().next())
                .filter(|&c| c != '\n')
                .and_then(|c| dotted(b, p + c.len_utf8(), 2, &mut |q| opt(b, q, b']', k)));
            with_suffix.or_else(|| opt(b, p, b']', k))
        };
        uncompressed(b, pos, 0, &mut tail)
            .or_else(|| {
                rep(b, pos, 0, usize::MAX, is_hex_colon, &mut |p| {
                    lit(b, p, b':', &mut |p| {
                        lit(b, p, b':', &mut |p| {
                            rep(b, p, 1, usize::MAX, is_hex_colon, &mut tail)
                        })
                    })
                })
            })
            .or_else(|| {
                rep(b, pos, 1, usize::MAX, is_hex_colon, &mut |p| {
                    lit(b, p, b':', &mut |p| {
                        lit(b, p, b':', &mut |p| {
                            rep(b, p, 0, usize::MAX, is_hex_colon, &mut tail)
                        })
                    })
                })
            })
    }

    /// The end of the leftmost-first match starting at `pos`, if any.
    fn match_at(text: &str, pos: usize) -> Option<usize> {
        let b = text.as_bytes();
        // `(:\d+)?` always succeeds, so the first address alternative that matches wins.
        let mut port = |p: usize| -> Option<usize> {
            lit(b, p, b':', &mut |q| {
                rep(b, q, 1, usize::MAX, is_digit, &mut Some)
            })
            .or(Some(p))
        };
        dotted(b, pos, 3, &mut port)
            .or_else(|| opt(b, pos, b'[', &mut |p| ipv6(text, p, &mut port)))
    }

    #[cfg(test)]
    mod tests {
        use super::redact_ip_addresses as r;

        #[test]
        fn redacts_like_tunnel_core() {
            assert_eq!(
                r("dial tcp 192.0.2.1:443: connection refused"),
                "dial tcp [redacted]: connection refused"
            );
            assert_eq!(r("a 10.0.0.1 b 8.8.8.8"), "a [redacted] b [redacted]");
            assert_eq!(r("[2001:db8::1]:443"), "[redacted]");
            assert_eq!(r("at 2001:db8:0:0:0:0:0:1 x"), "at [redacted] x");
            assert_eq!(r("::ffff:192.0.2.1"), "[redacted]");
            assert_eq!(r("fe80::1%eth0"), "[redacted]%eth0");
            // Not addresses.
            assert_eq!(r("2006-01-02T15:04:05.000Z"), "2006-01-02T15:04:05.000Z");
            assert_eq!(r("version 1.2.3"), "version 1.2.3");
            assert_eq!(r("héllo wörld"), "héllo wörld");
            // Errs on the side of redaction, as tunnel-core does.
            assert_eq!(r("999.999.999.999"), "[redacted]");
            assert_eq!(r("1234.5.6.7"), "1[redacted]");
        }
    }
}
