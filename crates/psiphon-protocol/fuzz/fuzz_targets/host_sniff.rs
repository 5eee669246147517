//! Host sniffing never panics, whole or fed in pieces, and agrees with itself either way;
//! whatever it finds is a plain host name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use psiphon_protocol::host_sniff::{HostSniffer, MAX_SNIFF_BYTES, Sniff, normalize_host, sniff};

fuzz_target!(|data: &[u8]| {
    let whole = sniff(data);
    if let Sniff::Found(host) = &whole {
        assert_eq!(normalize_host(host.as_bytes()).as_deref(), Some(host.as_str()));
    }
    let mut s = HostSniffer::new();
    let mut last = Sniff::NeedMore;
    for piece in data.chunks(7) {
        last = s.feed(piece);
    }
    if data.len() <= MAX_SNIFF_BYTES && whole != Sniff::NeedMore {
        assert_eq!(last, whole);
    }
});
