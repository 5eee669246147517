#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::PermissionsExt;

use psiphon_protocol::ServerEntry;
use psiphon_server::Config;

#[test]
fn generate_writes_private_files_that_match() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = common::options(dir.path());
    opts.protocols = vec![("OSSH".to_owned(), 9999), ("SSH".to_owned(), 2222)];
    opts.ip_address = "192.0.2.7".to_owned();
    psiphon_server::generate_files(&opts).unwrap();
    for name in [
        "psiphond.config",
        "psiphond-traffic-rules.config",
        "psinet.json",
        "server-entry.dat",
    ] {
        let meta = std::fs::metadata(dir.path().join(name)).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
    }
    let config = Config::read(&opts.config_path).unwrap();
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    let encoded = std::fs::read_to_string(&opts.server_entry_path).unwrap();
    assert!(
        hex::decode(encoded.trim())
            .unwrap()
            .starts_with(b"0 0 0 0 {")
    );
    let entry = ServerEntry::decode(encoded.trim()).unwrap();
    assert_eq!(entry.ip_address_str(), "192.0.2.7");
    assert_eq!(entry.ssh_obfuscated_port(), Some(9999));
    assert_eq!(entry.ssh_port(), Some(2222));
    assert_eq!(
        entry.ssh_host_key().unwrap(),
        config.ssh_private_key.public_key().to_base64()
    );
    assert_eq!(entry.ssh_username(), Some(config.ssh_user_name.as_str()));
    assert!(config.ssh_user_name.starts_with("psiphon_") && config.ssh_user_name.len() == 24);
    assert_eq!(entry.ssh_password(), Some(config.ssh_password.as_str()));
    assert_eq!(config.ssh_password.len(), 64);
    assert_eq!(
        entry.ssh_obfuscated_key(),
        Some(config.obfuscated_ssh_key.as_str())
    );
    assert_eq!(
        entry.get_str_array("capabilities"),
        ["ssh-api-requests", "OSSH", "SSH"]
    );
    let tag = entry.get_str("tag").unwrap();
    assert_eq!(
        config
            .own_encoded_server_entries
            .get(tag)
            .map(String::as_str),
        Some(encoded.trim())
    );
    assert_eq!(config.host_id, "example-host-id");
    let rules: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&opts.traffic_rules_path).unwrap()).unwrap();
    assert_eq!(
        rules["DefaultRules"]["MaxTCPPortForwardCount"],
        serde_json::json!(512)
    );
}

#[test]
fn generate_rejects_unsupported_protocols() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = common::options(dir.path());
    opts.protocols = vec![("UNFRONTED-MEEK-OSSH".to_owned(), 80)];
    let err = psiphon_server::generate_files(&opts).unwrap_err();
    assert!(err.to_string().contains("UNFRONTED-MEEK-OSSH"), "{err}");
    assert!(!opts.config_path.exists());
}

#[test]
fn config_errors_name_key_and_file_and_unknown_keys_warn() {
    let dir = tempfile::tempdir().unwrap();
    let g = psiphon_server::generate(&common::options(dir.path())).unwrap();
    let mut v = g.config.clone();
    v["SomethingNew"] = serde_json::json!(1);
    let config = Config::parse(&v.to_string(), "psiphond.config").unwrap();
    assert_eq!(config.warnings.len(), 1);
    assert!(config.warnings[0].contains("SomethingNew"));
    v["AllowBogons"] = serde_json::json!("yes");
    let err = Config::parse(&v.to_string(), "psiphond.config").unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("AllowBogons") && text.contains("psiphond.config"),
        "{text}"
    );
    let mut v = g.config.clone();
    v["SSHPrivateKey"] =
        serde_json::json!("-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n");
    let err = Config::parse(&v.to_string(), "f").unwrap_err();
    assert!(err.to_string().contains("SSHPrivateKey"), "{err}");
}

/// tunnel-core writes the host key as PKCS#1 (`RSA PRIVATE KEY`); such a config must load,
/// and serve the same public key. Needs the `openssl` program.
#[test]
fn pkcs1_host_key_from_tunnel_core_style_config_loads() {
    let out = match std::process::Command::new("openssl")
        .args(["genrsa", "-traditional", "2048"])
        .stderr(std::process::Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => out,
        _ => {
            eprintln!("skipped: needs the openssl program");
            return;
        }
    };
    let pem = String::from_utf8(out.stdout).unwrap();
    assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let dir = tempfile::tempdir().unwrap();
    let g = psiphon_server::generate(&common::options(dir.path())).unwrap();
    let mut v = g.config.clone();
    v["SSHPrivateKey"] = serde_json::json!(pem);
    v["SSHHandshakeTimeoutMilliseconds"] = serde_json::json!(1500);
    let config = Config::parse(&v.to_string(), "psiphond.config").unwrap();
    assert_eq!(config.ssh_private_key.public_key().key_type(), "ssh-rsa");
    assert_eq!(
        config.handshake_timeout,
        std::time::Duration::from_millis(1500)
    );
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
}
