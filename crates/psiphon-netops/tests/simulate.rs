//! `psinet simulate discovery` as a user runs it: the table, the JSON, and bad input.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_psinet");

#[test]
fn simulate_discovery_bounds_what_an_adversary_learns() {
    let out = Command::new(BIN)
        .args([
            "simulate",
            "discovery",
            "--servers",
            "200",
            "--clients",
            "50",
            "--days",
            "2",
        ])
        .args(["--adversary-ips", "1", "--adversary-ips", "64", "--json"])
        .env_remove("PSINET_DB")
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let learned = |row: usize, strategy: &str| {
        rows[row]["strategies"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["strategy"] == strategy)
            .unwrap()["adversary_servers_learned"]
            .as_u64()
            .unwrap()
    };
    // One address learns exactly one server with the consistent ring, at most one per
    // hourly handshake with classic; more addresses never learn less.
    assert_eq!(learned(0, "consistent"), 1);
    assert!(learned(0, "classic") <= 48);
    assert!(learned(1, "consistent") >= learned(0, "consistent"));
    assert!(learned(1, "consistent") <= 64);

    // The table form, with no database anywhere near.
    let out = Command::new(BIN)
        .args([
            "simulate",
            "discovery",
            "--servers",
            "100",
            "--adversary-ips",
            "4",
        ])
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("consistent") && text.contains("classic"),
        "{text}"
    );

    let bad = Command::new(BIN)
        .args(["simulate", "discovery", "--servers", "0"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--servers"));
}
