#![doc = include_str!("../README.md")]

pub mod channels;
pub mod cli;
pub mod db;
mod error;
pub mod export;
pub mod origin;
pub mod quickstart;
pub mod servers;
pub mod sponsors;
pub mod stats;
pub mod table;
pub mod time;

pub use db::{Db, PublicKeys};
pub use error::{Error, Result};
