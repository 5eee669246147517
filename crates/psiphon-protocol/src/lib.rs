#![doc = include_str!("../README.md")]

pub mod api;
pub mod auth_package;
mod error;
pub mod gojson;
pub mod host_sniff;
pub mod password;
pub mod server_entry;
pub mod time;
pub mod tunnel_protocol;

pub use api::{ApiParams, ConnectedResponse, HandshakeResponse, StatusResponse};
pub use auth_package::{DataReader, PackageSigningKey, ZlibReader, open_package, verify_stream};
pub use error::{Error, ErrorKind, Result};
pub use password::{SshPasswordPayload, make_session_id};
pub use server_entry::{
    ListLineError, MAX_LIST_LINE_BYTES, ServerEntry, ServerEntryList, ServerEntrySigningKey,
    decode_server_entry_list, diagnostic_id, generate_server_entry_tag,
};
pub use tunnel_protocol::TunnelProtocol;
