//! Real programs the tests use when they are installed.

use std::process::{Command, Stdio};

/// Whether `curl` runs. When it does not: a note and `false` (the test skips), or a panic when
/// `PSIPHON_REQUIRE_CURL` is set (`scripts/test.sh` sets it, having installed curl).
pub fn have_curl() -> bool {
    let ok = Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        #[allow(clippy::panic)]
        if std::env::var_os("PSIPHON_REQUIRE_CURL").is_some() {
            panic!("curl is required (PSIPHON_REQUIRE_CURL is set) but not installed");
        }
        eprintln!("skipping: curl is not installed (apt-get install -y curl)");
    }
    ok
}
