//! The streaming package reader and the zlib reader on arbitrary input: they never panic and
//! always end (an error or the end of the data).
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;
use psiphon_protocol::auth_package::{DataReader, ZlibReader};

fuzz_target!(|data: &[u8]| {
    if let Ok(mut r) = DataReader::new(data) {
        let mut out = Vec::new();
        let _ = r.read_to_end(&mut out);
    }
    let mut out = Vec::new();
    let _ = ZlibReader::new(data).read_to_end(&mut out);
});
