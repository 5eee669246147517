//! The local HTTP proxy (in progress).

/// The local HTTP proxy (in progress).
#[derive(Debug)]
pub struct HttpProxy;
