#![doc = include_str!("../README.md")]

pub mod api;
pub mod bogon;
pub mod cli;
pub mod config;
pub mod deadline;
pub mod discovery;
pub mod domain_bytes;
mod error;
pub mod generate;
pub mod geoip;
pub mod log;
pub mod pem;
pub mod prune;
pub mod psinet;
pub mod reload;
mod server;
pub mod throttle;
pub mod time;
pub mod traffic_rules;
mod tunnel;

pub use config::Config;
pub use error::{Error, ErrorKind, Result};
pub use generate::{GenerateOptions, Generated, generate, generate_files};
pub use server::{Server, ServerStats, run};
