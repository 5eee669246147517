#![doc = include_str!("../README.md")]

pub mod client;
pub mod lab;
pub mod nginx;
pub mod programs;
pub mod psiphond;

pub use programs::have_curl;
