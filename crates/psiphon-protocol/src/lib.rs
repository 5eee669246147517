#![doc = include_str!("../README.md")]

mod error;
pub mod gojson;
pub mod server_entry;
pub mod tunnel_protocol;

pub use error::{Error, ErrorKind, Result};
pub use server_entry::{
    ListLineError, MAX_LIST_LINE_BYTES, ServerEntry, ServerEntryList, ServerEntrySigningKey,
    decode_server_entry_list, diagnostic_id, generate_server_entry_tag,
};
pub use tunnel_protocol::TunnelProtocol;
