//! A `FilteredRules` entry's `Filter` (and `ExceptFilter`): which clients it matches.

use std::collections::BTreeMap;

use super::Client;

/// A `Filter`: every non-empty field must match. Fields about the handshake never match
/// before it.
#[derive(Debug, Clone, Default)]
pub(super) struct Filter {
    pub(super) tunnel_protocols: Vec<String>,
    pub(super) regions: Vec<String>,
    pub(super) isps: Vec<String>,
    pub(super) asns: Vec<String>,
    pub(super) cities: Vec<String>,
    pub(super) api_protocol: String,
    pub(super) handshake_parameters: Option<BTreeMap<String, Vec<String>>>,
    pub(super) authorized_access_types: Vec<String>,
    pub(super) active_authorization_ids: Vec<String>,
    pub(super) authorizations_revoked: bool,
    pub(super) provider_ids: Vec<String>,
    pub(super) min_client_version: Option<i64>,
    pub(super) max_client_version: Option<i64>,
}

/// Glob match with `*` (any run of characters) and `?` (one character).
pub(super) fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || t.get(ti) == Some(&c) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..)
        .is_some_and(|rest| rest.iter().all(|&c| c == '*'))
}

impl Filter {
    pub(super) fn matches(&self, client: &Client<'_>) -> bool {
        let has = |list: &[String], v: &str| list.is_empty() || list.iter().any(|x| x == v);
        if !has(&self.tunnel_protocols, client.tunnel_protocol)
            || !has(&self.regions, &client.geo.region)
            || !has(&self.isps, &client.geo.isp)
            || !has(&self.asns, &client.geo.asn)
            || !has(&self.cities, &client.geo.city)
        {
            return false;
        }
        let handshake = client.handshake;
        // The API runs over SSH here ("ssh"); there is no web API.
        if !self.api_protocol.is_empty() && (handshake.is_none() || self.api_protocol != "ssh") {
            return false;
        }
        if let Some(wanted) = &self.handshake_parameters {
            let Some(params) = handshake else {
                return false;
            };
            for (name, patterns) in wanted {
                let Ok(value) = params.get_str(name) else {
                    return false;
                };
                if !patterns.iter().any(|p| wildcard(p, value)) {
                    return false;
                }
            }
        }
        // This server verifies no authorizations: filters that need one never match.
        if self.authorizations_revoked
            || !self.active_authorization_ids.is_empty()
            || !self.authorized_access_types.is_empty()
        {
            return false;
        }
        // No provider ID is configured here.
        if !self.provider_ids.is_empty() && !self.provider_ids.iter().any(String::is_empty) {
            return false;
        }
        if self.min_client_version.is_some() || self.max_client_version.is_some() {
            let Some(version) = handshake
                .and_then(|p| p.get_str("client_version").ok())
                .and_then(|v| v.parse::<i64>().ok())
            else {
                return false;
            };
            if self.min_client_version.is_some_and(|min| version < min)
                || self.max_client_version.is_some_and(|max| version > max)
            {
                return false;
            }
        }
        true
    }
}
