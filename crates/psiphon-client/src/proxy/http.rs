//! HTTP proxy request parsing (in progress).
