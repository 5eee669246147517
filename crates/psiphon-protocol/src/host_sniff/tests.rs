use super::*;

/// curl 7.88.1 (OpenSSL 3.0) `https://news.example.test/secret/path?q=1`: its first flight,
/// captured from a loopback listener with `--connect-to`.
const CURL_CLIENT_HELLO: &[u8] = include_bytes!("curl_client_hello.bin");
/// curl 7.88.1 `http://news.example.test/secret/path?q=1`, captured the same way.
const CURL_HTTP_REQUEST: &[u8] = include_bytes!("curl_http_request.bin");

fn found(host: &str) -> Sniff {
    Sniff::Found(host.to_owned())
}

#[test]
fn curl_http_request() {
    assert_eq!(sniff(CURL_HTTP_REQUEST), found("news.example.test"));
    // Every shorter prefix up to the Host line asks for more; none yields a wrong answer.
    let host_line_end = CURL_HTTP_REQUEST
        .windows(2)
        .enumerate()
        .filter(|(_, w)| *w == b"\r\n")
        .nth(1)
        .map(|(i, _)| i + 2)
        .unwrap();
    for n in 0..host_line_end - 1 {
        assert_eq!(sniff(&CURL_HTTP_REQUEST[..n]), Sniff::NeedMore, "{n}");
    }
}

#[test]
fn curl_client_hello() {
    assert_eq!(CURL_CLIENT_HELLO[0], 22);
    assert_eq!(sniff(CURL_CLIENT_HELLO), found("news.example.test"));
    for n in 0..40 {
        assert_eq!(sniff(&CURL_CLIENT_HELLO[..n]), Sniff::NeedMore, "{n}");
    }
}

#[test]
fn fed_in_small_writes() {
    for input in [CURL_CLIENT_HELLO, CURL_HTTP_REQUEST] {
        for chunk in [1, 2, 7, 100] {
            let mut s = HostSniffer::new();
            let mut last = Sniff::NeedMore;
            for piece in input.chunks(chunk) {
                last = s.feed(piece);
                if last != Sniff::NeedMore {
                    break;
                }
            }
            assert_eq!(last, found("news.example.test"), "chunk {chunk}");
            assert!(s.is_done());
            // The verdict stays.
            assert_eq!(s.feed(b"GET / HTTP/1.1\r\nHost: other\r\n"), last);
        }
    }
}

/// Re-frames a single-record hello into records of at most `size` handshake bytes each, as
/// a TLS stack may (RFC 8446 5.1 allows a handshake message across records).
fn split_records(hello: &[u8], size: usize) -> Vec<u8> {
    let body = &hello[5..];
    let mut out = Vec::new();
    for part in body.chunks(size) {
        out.extend_from_slice(&[22, 3, 1]);
        out.extend_from_slice(&u16::try_from(part.len()).unwrap().to_be_bytes());
        out.extend_from_slice(part);
    }
    out
}

#[test]
fn client_hello_split_across_records() {
    for size in [1, 3, 50, 100, 511] {
        let framed = split_records(CURL_CLIENT_HELLO, size);
        assert_eq!(
            sniff(&framed),
            found("news.example.test"),
            "record size {size}"
        );
        let mut s = HostSniffer::new();
        let verdict = framed
            .chunks(13)
            .map(|c| s.feed(c))
            .find(|v| *v != Sniff::NeedMore);
        assert_eq!(verdict, Some(found("news.example.test")));
    }
}

#[test]
fn http_variants() {
    let cases: &[(&[u8], Sniff)] = &[
        (
            b"POST /a HTTP/1.0\r\nX: y\r\nhOsT:  Api.Example.COM:8443 \r\n\r\n",
            found("api.example.com"),
        ),
        (b"GET / HTTP/1.1\nHost: a.b\n\n", found("a.b")),
        (
            b"GET http://user:pw@abs.example.org:81/p?q HTTP/1.1\r\nX: y\r\n\r\n",
            found("abs.example.org"),
        ),
        // CONNECT names the authority as the target; Host decides when present.
        (
            b"CONNECT c.example:443 HTTP/1.1\r\nHost: c.example:443\r\n\r\n",
            found("c.example"),
        ),
        // No Host and no absolute target.
        (b"GET /x HTTP/1.1\r\nX: y\r\n\r\n", Sniff::NotFound),
        // IP literals are never reported.
        (
            b"GET / HTTP/1.1\r\nHost: 192.0.2.7\r\n\r\n",
            Sniff::NotFound,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n",
            Sniff::NotFound,
        ),
        // Paths or odd bytes in Host: not a host.
        (
            b"GET / HTTP/1.1\r\nHost: a.example/x\r\n\r\n",
            Sniff::NotFound,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: a..example\r\n\r\n",
            Sniff::NotFound,
        ),
        (
            b"GET / HTTP/2.0\r\nHost: a.example\r\n\r\n",
            Sniff::NotFound,
        ),
        (b"GET/ HTTP/1.1\r\n", Sniff::NotFound),
        // SSH, HTTP/2 preface, binary.
        (b"SSH-2.0-OpenSSH_9.6\r\n", Sniff::NotFound),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Sniff::NotFound),
        (&[0, 1, 2, 3], Sniff::NotFound),
        (b"GET / HTTP/1.1\r\nHost: a.example", Sniff::NeedMore),
    ];
    for (input, want) in cases {
        assert_eq!(&sniff(input), want, "{:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn tls_variants() {
    // Not a handshake record, or not a ClientHello.
    assert_eq!(sniff(&[23, 3, 3, 0, 5, 1, 2, 3, 4, 5]), Sniff::NotFound);
    let mut not_hello = CURL_CLIENT_HELLO.to_vec();
    not_hello[5] = 2;
    assert_eq!(sniff(&not_hello), Sniff::NotFound);
    // Truncated inside the SNI: more is needed.
    let at = find(CURL_CLIENT_HELLO, b"news.example").unwrap();
    assert_eq!(sniff(&CURL_CLIENT_HELLO[..at + 3]), Sniff::NeedMore);
    // An SNI that is an IP literal or holds a slash is not reported.
    let mut odd = CURL_CLIENT_HELLO.to_vec();
    odd[at + 4] = b'/';
    assert_eq!(sniff(&odd), Sniff::NotFound);
}

#[test]
fn bounded_buffer() {
    // A request line that never ends: given up at the bound.
    let mut s = HostSniffer::new();
    assert_eq!(s.feed(b"GET /"), Sniff::NeedMore);
    let filler = vec![b'a'; MAX_SNIFF_BYTES];
    assert_eq!(s.feed(&filler), Sniff::NotFound);
    assert!(s.is_done());
    assert!(s.buf.capacity() == 0);
}

#[test]
fn normalize() {
    assert_eq!(
        normalize_host(b" WWW.Example.com. ").as_deref(),
        Some("www.example.com")
    );
    assert_eq!(
        normalize_host(b"a.example:65535").as_deref(),
        Some("a.example")
    );
    assert_eq!(normalize_host(b"a.example:"), None);
    assert_eq!(normalize_host(b"a.example:123456"), None);
    assert_eq!(normalize_host(b"10.0.0.1"), None);
    assert_eq!(normalize_host(b""), None);
    assert_eq!(normalize_host(&[b'a'; 254]), None);
}

proptest::proptest! {
    #[test]
    fn never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
                    chunk in 1usize..64) {
        let _ = sniff(&data);
        let mut s = HostSniffer::new();
        for c in data.chunks(chunk) {
            let _ = s.feed(c);
        }
    }

    #[test]
    fn mutated_client_hello_never_panics(
        edits in proptest::collection::vec((0usize..517, proptest::prelude::any::<u8>()), 0..8),
        cut in 0usize..600,
    ) {
        let mut hello = CURL_CLIENT_HELLO.to_vec();
        for (i, b) in edits {
            if let Some(x) = hello.get_mut(i) {
                *x = b;
            }
        }
        hello.truncate(cut);
        if let Sniff::Found(host) = sniff(&hello) {
            // Whatever comes out is a plain host name.
            proptest::prop_assert!(normalize_host(host.as_bytes()).as_deref() == Some(host.as_str()));
        }
    }
}
