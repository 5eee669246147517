//! Minimal PEM: base64 between `-----BEGIN <label>-----` and `-----END <label>-----`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The label and DER bytes of the first PEM block in `text`, or `None` if there is no
/// well-formed block. Headers (`Proc-Type:` lines) are not supported: encrypted keys are not.
pub fn decode(text: &str) -> Option<(String, Vec<u8>)> {
    let mut lines = text.lines().map(str::trim);
    let label = lines.find_map(|l| {
        l.strip_prefix("-----BEGIN ")
            .and_then(|rest| rest.strip_suffix("-----"))
    })?;
    let end = format!("-----END {label}-----");
    let mut b64 = String::new();
    for line in lines {
        if line == end {
            return STANDARD.decode(b64).ok().map(|der| (label.to_owned(), der));
        }
        if line.contains(':') {
            return None;
        }
        b64.push_str(line);
    }
    None
}

/// A PEM block with 64-character lines.
pub fn encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    let mut rest = b64.as_str();
    while !rest.is_empty() {
        let (line, tail) = rest.split_at(rest.len().min(64));
        out.push_str(line);
        out.push('\n');
        rest = tail;
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let der: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let text = encode("RSA PRIVATE KEY", &der);
        assert!(text.lines().all(|l| l.len() <= 64));
        assert_eq!(decode(&text), Some(("RSA PRIVATE KEY".to_owned(), der)));
    }

    #[test]
    fn rejects_broken_blocks() {
        assert_eq!(decode("nothing here"), None);
        assert_eq!(decode("-----BEGIN X-----\nAAAA\n"), None);
        assert_eq!(decode("-----BEGIN X-----\n!!!\n-----END X-----\n"), None);
        assert_eq!(
            decode("-----BEGIN X-----\nProc-Type: 4,ENCRYPTED\nAAAA\n-----END X-----\n"),
            None
        );
    }
}
