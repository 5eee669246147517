//! Server entry lists: newline-separated encoded entries (remote server lists, embedded
//! lists, OSL payloads, discovery).

use super::ServerEntry;
use crate::error::Error;

/// Longest line accepted in a list (tunnel-core's streaming decoder uses a 64 KiB scanner).
pub const MAX_LIST_LINE_BYTES: usize = 64 * 1024;

/// A line of a list that could not be used.
#[derive(Debug)]
pub struct ListLineError {
    /// 1-based line number.
    pub line: usize,
    /// Why the line was skipped.
    pub error: Error,
}

/// The result of decoding a list: the good entries, and the lines that were skipped.
#[derive(Debug, Default)]
pub struct ServerEntryList {
    /// Entries that decoded and validated, in list order.
    pub entries: Vec<ServerEntry>,
    /// One error per skipped line, in list order.
    pub errors: Vec<ListLineError>,
}

/// Decodes a list. Empty lines are ignored; a line that fails to decode or validate is
/// skipped and reported in [`ServerEntryList::errors`], it never aborts the rest of the
/// list. When `source` / `timestamp` are given, each entry gets them as its `localSource` /
/// `localTimestamp` (overwriting any sent values, as tunnel-core does).
pub fn decode_server_entry_list(
    list: &str,
    source: Option<&str>,
    timestamp: Option<&str>,
) -> ServerEntryList {
    let mut result = ServerEntryList::default();
    for (index, line) in list.split('\n').enumerate() {
        let number = index + 1;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if line.len() > MAX_LIST_LINE_BYTES {
            result.errors.push(ListLineError {
                line: number,
                error: Error::ListLineTooLong {
                    line: number,
                    len: line.len(),
                },
            });
            continue;
        }
        match ServerEntry::decode(line) {
            Ok(mut entry) => {
                if let Some(source) = source {
                    entry.set_local_source(source);
                }
                if let Some(timestamp) = timestamp {
                    entry.set_local_timestamp(timestamp);
                }
                result.entries.push(entry);
            }
            Err(error) => result.errors.push(ListLineError {
                line: number,
                error,
            }),
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_lines_are_skipped_and_reported() {
        let good = hex::encode("0 0 0 0 {\"ipAddress\":\"10.0.0.1\"}");
        let long = "0".repeat(MAX_LIST_LINE_BYTES + 2);
        let list = format!("{good}\r\nnot-hex\n\n{long}\n{good}\n");
        let decoded = decode_server_entry_list(&list, Some("REMOTE"), None);
        assert_eq!(decoded.entries.len(), 2);
        assert_eq!(decoded.entries[0].local_source(), Some("REMOTE"));
        let lines: Vec<usize> = decoded.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, vec![2, 4]);
        assert!(matches!(
            decoded.errors[1].error,
            Error::ListLineTooLong { .. }
        ));
    }
}
