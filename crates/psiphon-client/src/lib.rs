#![doc = include_str!("../README.md")]

pub mod app;
pub mod config;
pub mod controller;
pub mod datastore;
pub mod notice;
pub mod proxy;
pub mod tunnel;
