#![doc = include_str!("../README.md")]

pub mod lab;
pub mod nginx;
pub mod psiphond;
