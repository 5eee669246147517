#![doc = include_str!("../README.md")]

pub mod origin;
pub mod quickstart;
