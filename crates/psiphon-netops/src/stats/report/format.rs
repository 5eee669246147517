//! A report as a text table, CSV or JSON.

use serde_json::{Map, Value, json};

use super::{Kind, Report};
use crate::stats::day_text;
use crate::table::Table;

/// `1.5 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    let name = UNITS.get(unit).copied().unwrap_or("B");
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {name}")
    }
}

fn mix_text(mix: &[(String, u64)]) -> String {
    mix.iter()
        .map(|(p, pct)| format!("{p} {pct}%"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Report {
    fn header(&self) -> Vec<String> {
        let mut h: Vec<String> = self.query.by.iter().map(|d| d.name().to_owned()).collect();
        match self.query.kind {
            Kind::Sessions => h.extend(
                [
                    "unique_users",
                    "sessions",
                    "total_duration_ms",
                    "mean_duration_ms",
                    "bytes_up",
                    "bytes_down",
                    "protocol_mix",
                ]
                .map(str::to_owned),
            ),
            Kind::Domains => h.extend(["domain", "bytes"].map(str::to_owned)),
        }
        h
    }

    /// The line saying what was left out.
    pub fn suppressed_note(&self) -> String {
        format!(
            "{} {} suppressed: fewer than {} unique users or sessions",
            self.suppressed,
            match (self.query.kind, self.suppressed) {
                (Kind::Sessions, 1) => "cell",
                (Kind::Sessions, _) => "cells",
                (Kind::Domains, 1) => "domain row",
                (Kind::Domains, _) => "domain rows",
            },
            self.query.min_count
        )
    }

    /// A text table, with the suppressed count under it.
    pub fn table(&self) -> String {
        let header = self.header();
        let mut header: Vec<String> = header.iter().map(|h| h.to_ascii_uppercase()).collect();
        if self.query.kind == Kind::Sessions {
            let n = self.query.by.len();
            for (i, title) in [
                "UNIQUE USERS",
                "SESSIONS",
                "TOTAL HOURS",
                "MEAN MINUTES",
                "BYTES UP",
                "BYTES DOWN",
                "PROTOCOL MIX",
            ]
            .iter()
            .enumerate()
            {
                if let Some(h) = header.get_mut(n + i) {
                    *h = (*title).to_owned();
                }
            }
        }
        let titles: Vec<&str> = header.iter().map(String::as_str).collect();
        let mut t = Table::new(&titles);
        for r in &self.sessions {
            let mut row = r.key.clone();
            row.extend([
                r.users.to_string(),
                r.sessions.to_string(),
                format!("{:.1}", r.duration_ms as f64 / 3_600_000.0),
                format!("{:.1}", r.mean_duration_ms() as f64 / 60_000.0),
                human_bytes(r.bytes_up),
                human_bytes(r.bytes_down),
                mix_text(&r.protocol_mix),
            ]);
            t.row(row);
        }
        for r in &self.domains {
            let mut row = r.key.clone();
            row.extend([r.domain.clone(), human_bytes(r.bytes)]);
            t.row(row);
        }
        format!("{}{}\n", t.render(), self.suppressed_note())
    }

    fn records(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        for r in &self.sessions {
            let mut row = r.key.clone();
            row.extend([
                r.users.to_string(),
                r.sessions.to_string(),
                r.duration_ms.to_string(),
                r.mean_duration_ms().to_string(),
                r.bytes_up.to_string(),
                r.bytes_down.to_string(),
                r.protocol_mix
                    .iter()
                    .map(|(p, pct)| format!("{p}:{pct}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            ]);
            out.push(row);
        }
        for r in &self.domains {
            let mut row = r.key.clone();
            row.extend([r.domain.clone(), r.bytes.to_string()]);
            out.push(row);
        }
        out
    }

    /// CSV (RFC 4180) with a header row; the suppressed count is not in it (see
    /// [`Report::suppressed_note`]). Protocol mix is `OSSH:60 SSH:40` (percentages).
    pub fn csv(&self) -> String {
        let mut out = String::new();
        for row in std::iter::once(self.header()).chain(self.records()) {
            let cells: Vec<String> = row.iter().map(|c| csv_field(c)).collect();
            out.push_str(&cells.join(","));
            out.push_str("\r\n");
        }
        out
    }

    /// JSON: `{"kind", "by", "min_count", "from", "to", "sponsor", "suppressed", "rows": [..]}`.
    pub fn json(&self) -> Value {
        let q = &self.query;
        let mut rows = Vec::new();
        for r in &self.sessions {
            let mut m = self.key_map(&r.key);
            m.insert("unique_users".into(), json!(r.users));
            m.insert("sessions".into(), json!(r.sessions));
            m.insert("total_duration_ms".into(), json!(r.duration_ms));
            m.insert("mean_duration_ms".into(), json!(r.mean_duration_ms()));
            m.insert("bytes_up".into(), json!(r.bytes_up));
            m.insert("bytes_down".into(), json!(r.bytes_down));
            let mix: Map<String, Value> = r
                .protocol_mix
                .iter()
                .map(|(p, pct)| (p.clone(), json!(pct)))
                .collect();
            m.insert("protocol_mix_percent".into(), Value::Object(mix));
            rows.push(Value::Object(m));
        }
        for r in &self.domains {
            let mut m = self.key_map(&r.key);
            m.insert("domain".into(), json!(r.domain));
            m.insert("bytes".into(), json!(r.bytes));
            rows.push(Value::Object(m));
        }
        json!({
            "kind": match q.kind { Kind::Sessions => "sessions", Kind::Domains => "domains" },
            "by": q.by.iter().map(|d| d.name()).collect::<Vec<_>>(),
            "min_count": q.min_count,
            "from": q.from.map(day_text),
            "to": q.to.map(day_text),
            "sponsor": q.sponsor,
            "suppressed": self.suppressed,
            "rows": rows,
        })
    }

    fn key_map(&self, key: &[String]) -> Map<String, Value> {
        self.query
            .by
            .iter()
            .zip(key)
            .map(|(d, v)| (d.name().to_owned(), json!(v)))
            .collect()
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}
