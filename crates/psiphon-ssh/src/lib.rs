#![doc = include_str!("../README.md")]

mod channel;
mod cipher;
mod config;
mod dh;
mod driver;
mod error;
mod kex;
mod keys;
pub mod msg;
mod session;
mod wire;

pub use channel::ChannelId;
pub use cipher::{CipherAlg, MAX_PACKET_LEN, MacAlg};
pub use config::{ClientAuth, ClientConfig, Config, HostKeyCheck, PasswordCheck, ServerConfig};
pub use driver::{
    Channel, Connection, Handle, Incoming, IncomingChannel, IncomingRequest, accept, connect,
    direct_tcpip_extra, parse_direct_tcpip_extra,
};
pub use error::{Error, ErrorKind, Result};
pub use kex::KexAlg;
pub use keys::{PrivateKey, PublicKey};
pub use session::{ChannelRead, Event, RequestId, Session};
