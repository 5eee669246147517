#![doc = include_str!("../README.md")]

pub mod activity;
pub mod app;
pub mod config;
pub mod controller;
pub mod datastore;
pub mod download;
pub mod host_bytes;
pub mod notice;
pub mod proxy;
pub mod remote_list;
pub mod tls;
pub mod tunnel;
