//! `psinet report --format svg`: a chart drawn by hand, one self-contained SVG file.
//!
//! A sessions report becomes two line charts on one time axis: sessions per day and unique
//! users per day, one coloured line per series (the report's other dimensions, e.g. each
//! region), with a legend. A suppressed cell is a gap in its line, never a zero. A domains
//! report becomes horizontal bars of bytes per domain. Only rows the report shows are drawn.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::day_text;
use super::report::{Dim, Kind, Report, human_bytes};
use crate::error::{Error, Result};

const WIDTH: f64 = 960.0;
const LEFT: f64 = 80.0;
const PLOT_RIGHT: f64 = 720.0;
const LEGEND_X: f64 = 745.0;
const PANEL_HEIGHT: f64 = 220.0;
const MAX_SERIES: usize = 10;
const MAX_BARS: usize = 20;
/// Okabe–Ito colours (distinguishable with colour blindness), then greys.
const COLOURS: [&str; 10] = [
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#8C6D00", "#000000",
    "#7F7F7F", "#B8B8B8",
];

/// Escapes text for XML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A step of 1, 2 or 5 times a power of ten that divides `max` into at most 5 ticks.
fn nice_step(max: u64) -> u64 {
    let mut step = 1u64;
    loop {
        for m in [1, 2, 5] {
            let s = step.saturating_mul(m);
            if max.div_ceil(s) <= 5 {
                return s;
            }
        }
        if step > u64::MAX / 10 {
            return u64::MAX;
        }
        step *= 10;
    }
}

fn fmt_count(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{}k", trim(n as f64 / 1e3)),
        _ => format!("{}M", trim(n as f64 / 1e6)),
    }
}

fn trim(x: f64) -> String {
    let s = format!("{x:.1}");
    s.strip_suffix(".0").map_or(s.clone(), str::to_owned)
}

struct Svg {
    out: String,
}

impl Svg {
    fn new(height: f64, title: &str) -> Svg {
        let mut out = String::new();
        let _ = write!(
            out,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height}\" \
             viewBox=\"0 0 {WIDTH} {height}\" font-family=\"Helvetica, Arial, sans-serif\" \
             font-size=\"12\" role=\"img\" aria-label=\"{}\">\n\
             <title>{}</title>\n\
             <rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n",
            escape(title),
            escape(title)
        );
        Svg { out }
    }

    fn text(&mut self, x: f64, y: f64, attrs: &str, s: &str) {
        let _ = writeln!(
            self.out,
            "<text x=\"{x:.1}\" y=\"{y:.1}\" {attrs}>{}</text>",
            escape(s)
        );
    }

    fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, attrs: &str) {
        let _ = writeln!(
            self.out,
            "<line x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\" {attrs}/>"
        );
    }

    fn finish(mut self) -> String {
        self.out.push_str("</svg>\n");
        self.out
    }
}

/// The title; `drawn` is the range of days drawn, named when the query gave none.
fn title_of(report: &Report, drawn: Option<(i64, i64)>) -> String {
    let q = &report.query;
    let what = match q.kind {
        Kind::Sessions => "Psiphon use",
        Kind::Domains => "Psiphon traffic by domain",
    };
    let sponsor = q
        .sponsor
        .as_ref()
        .map_or(String::new(), |s| format!(", sponsor {s}"));
    let range = match (q.from, q.to) {
        (Some(a), Some(b)) => format!(", {} to {}", day_text(a), day_text(b)),
        (Some(a), None) => format!(", from {}", day_text(a)),
        (None, Some(b)) => format!(", to {}", day_text(b)),
        (None, None) => drawn.map_or(String::new(), |(a, b)| {
            format!(", {} to {}", day_text(a), day_text(b))
        }),
    };
    format!("{what}{sponsor}{range}")
}

fn footer(report: &Report) -> String {
    format!(
        "Days are UTC. Cells with fewer than {} unique users or sessions are not drawn ({} \
         suppressed).",
        report.query.min_count, report.suppressed
    )
}

/// Draws a report.
///
/// # Errors
/// [`Error::InvalidArgument`] for a sessions report without `date` in `--by`.
pub fn render(report: &Report) -> Result<String> {
    match report.query.kind {
        Kind::Sessions => sessions_chart(report),
        Kind::Domains => Ok(domains_chart(report)),
    }
}

type Series = BTreeMap<i64, (u64, u64)>;

fn sessions_chart(report: &Report) -> Result<String> {
    let by = &report.query.by;
    let Some(date_at) = by.iter().position(|d| *d == Dim::Date) else {
        return Err(Error::InvalidArgument {
            arg: "--format svg",
            value: by.iter().map(|d| d.name()).collect::<Vec<_>>().join(","),
            reason: "the chart is drawn over days: put date in --by (e.g. --by date,region)"
                .to_owned(),
        });
    };
    let series_dims: Vec<&str> = by
        .iter()
        .filter(|d| **d != Dim::Date)
        .map(|d| d.name())
        .collect();
    // Series name -> day -> (sessions, users).
    let mut series: BTreeMap<String, Series> = BTreeMap::new();
    for r in &report.sessions {
        let day = r
            .key
            .get(date_at)
            .and_then(|d| crate::time::parse(d))
            .map(|s| s.div_euclid(86_400))
            .ok_or_else(|| Error::InvalidArgument {
                arg: "--format svg",
                value: r.key.join(","),
                reason: "a row without a date".to_owned(),
            })?;
        let name: Vec<&str> = r
            .key
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != date_at)
            .map(|(_, v)| v.as_str())
            .collect();
        let name = if name.is_empty() {
            "all".to_owned()
        } else {
            name.join(" / ")
        };
        series
            .entry(name)
            .or_default()
            .insert(day, (r.sessions, r.users));
    }
    let mut ranked: Vec<(String, Series)> = series.into_iter().collect();
    ranked.sort_by(|a, b| {
        let total = |s: &Series| s.values().map(|v| v.0).sum::<u64>();
        total(&b.1).cmp(&total(&a.1)).then(a.0.cmp(&b.0))
    });
    let not_drawn = ranked.len().saturating_sub(MAX_SERIES);
    ranked.truncate(MAX_SERIES);

    let days: Vec<i64> = ranked.iter().flat_map(|(_, s)| s.keys().copied()).collect();
    let first = report
        .query
        .from
        .or_else(|| days.iter().min().copied())
        .unwrap_or(0);
    let last = report
        .query
        .to
        .or_else(|| days.iter().max().copied())
        .unwrap_or(first)
        .max(first);
    let span = (last - first).max(1) as f64;
    let x_of = |day: i64| LEFT + (day - first) as f64 / span * (PLOT_RIGHT - LEFT);

    let title = title_of(report, (!days.is_empty()).then_some((first, last)));
    let top1 = 90.0;
    let top2 = top1 + PANEL_HEIGHT + 70.0;
    let height = top2 + PANEL_HEIGHT + 80.0;
    let mut svg = Svg::new(height, &title);
    svg.text(
        WIDTH / 2.0,
        32.0,
        "text-anchor=\"middle\" font-size=\"20\" font-weight=\"bold\"",
        &title,
    );
    let subtitle = if series_dims.is_empty() {
        "All clients".to_owned()
    } else {
        format!("One line per {}", series_dims.join(" / "))
    };
    svg.text(
        WIDTH / 2.0,
        54.0,
        "text-anchor=\"middle\" fill=\"#555555\"",
        &subtitle,
    );
    for (top, label, pick) in [
        (top1, "Sessions per day", 0usize),
        (top2, "Unique users per day", 1usize),
    ] {
        let value = |v: &(u64, u64)| if pick == 0 { v.0 } else { v.1 };
        let max = ranked
            .iter()
            .flat_map(|(_, s)| s.values().map(value))
            .max()
            .unwrap_or(0)
            .max(1);
        let step = nice_step(max);
        let top_value = max.div_ceil(step).saturating_mul(step).max(1);
        let bottom = top + PANEL_HEIGHT;
        let y_of = |v: u64| bottom - v as f64 / top_value as f64 * PANEL_HEIGHT;
        svg.text(
            LEFT,
            top - 12.0,
            "font-size=\"15\" font-weight=\"bold\"",
            label,
        );
        // Y axis: gridlines and labels.
        let mut tick = 0u64;
        while tick <= top_value {
            let y = y_of(tick);
            svg.line(LEFT, y, PLOT_RIGHT, y, "stroke=\"#e3e3e3\"");
            svg.text(
                LEFT - 8.0,
                y + 4.0,
                "text-anchor=\"end\" fill=\"#333333\"",
                &fmt_count(tick),
            );
            match tick.checked_add(step) {
                Some(t) => tick = t,
                None => break,
            }
        }
        svg.line(LEFT, top, LEFT, bottom, "stroke=\"#333333\"");
        svg.line(LEFT, bottom, PLOT_RIGHT, bottom, "stroke=\"#333333\"");
        // X axis: at most 8 date labels.
        let n_days = last - first + 1;
        let every = (n_days + 7) / 8;
        let mut day = first;
        while day <= last {
            let x = x_of(day);
            svg.line(x, bottom, x, bottom + 5.0, "stroke=\"#333333\"");
            svg.text(
                x,
                bottom + 19.0,
                "text-anchor=\"middle\" fill=\"#333333\"",
                &day_text(day),
            );
            day += every.max(1);
        }
        svg.text(
            (LEFT + PLOT_RIGHT) / 2.0,
            bottom + 38.0,
            "text-anchor=\"middle\" fill=\"#555555\"",
            "date (UTC)",
        );
        // The lines: consecutive days joined, a missing day breaks the line.
        for ((_, points), colour) in ranked.iter().zip(COLOURS.iter().cycle()) {
            let mut run: Vec<(f64, f64)> = Vec::new();
            let mut previous: Option<i64> = None;
            let flush = |run: &mut Vec<(f64, f64)>, svg: &mut Svg| {
                if run.len() > 1 {
                    let pts: Vec<String> =
                        run.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
                    let _ = writeln!(
                        svg.out,
                        "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" \
                         stroke-width=\"2\"/>",
                        pts.join(" ")
                    );
                }
                run.clear();
            };
            for (&day, v) in points {
                if previous.is_some_and(|p| p + 1 != day) {
                    flush(&mut run, &mut svg);
                }
                let (x, y) = (x_of(day), y_of(value(v)));
                run.push((x, y));
                let _ = writeln!(
                    svg.out,
                    "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{colour}\">\
                     <title>{}: {}</title></circle>",
                    day_text(day),
                    value(v)
                );
                previous = Some(day);
            }
            flush(&mut run, &mut svg);
        }
    }
    // Legend.
    svg.text(
        LEGEND_X,
        top1 - 12.0,
        "font-size=\"13\" font-weight=\"bold\"",
        "Legend",
    );
    for (i, ((name, _), colour)) in ranked.iter().zip(COLOURS.iter().cycle()).enumerate() {
        let y = top1 + 10.0 + 22.0 * i as f64;
        let _ = writeln!(
            svg.out,
            "<rect x=\"{LEGEND_X}\" y=\"{:.1}\" width=\"14\" height=\"14\" fill=\"{colour}\"/>",
            y - 11.0
        );
        svg.text(LEGEND_X + 20.0, y, "", name);
    }
    if ranked.is_empty() {
        svg.text(
            (LEFT + PLOT_RIGHT) / 2.0,
            top1 + PANEL_HEIGHT / 2.0,
            "text-anchor=\"middle\" font-size=\"16\" fill=\"#555555\"",
            "no cell reaches the threshold",
        );
    }
    if not_drawn > 0 {
        let y = top1 + 10.0 + 22.0 * ranked.len() as f64;
        svg.text(
            LEGEND_X,
            y,
            "fill=\"#555555\"",
            &format!("{not_drawn} smaller series not drawn"),
        );
    }
    svg.text(LEFT, height - 16.0, "fill=\"#555555\"", &footer(report));
    Ok(svg.finish())
}

fn domains_chart(report: &Report) -> String {
    let mut totals: BTreeMap<&str, u64> = BTreeMap::new();
    for r in &report.domains {
        let t = totals.entry(r.domain.as_str()).or_default();
        *t = t.saturating_add(r.bytes);
    }
    let mut bars: Vec<(&str, u64)> = totals.into_iter().collect();
    bars.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let not_drawn = bars.len().saturating_sub(MAX_BARS);
    bars.truncate(MAX_BARS);
    let title = title_of(report, None);
    let top = 80.0;
    let row = 26.0;
    let height = top + row * bars.len().max(1) as f64 + 90.0;
    let mut svg = Svg::new(height, &title);
    svg.text(
        WIDTH / 2.0,
        32.0,
        "text-anchor=\"middle\" font-size=\"20\" font-weight=\"bold\"",
        &title,
    );
    svg.text(
        WIDTH / 2.0,
        54.0,
        "text-anchor=\"middle\" fill=\"#555555\"",
        "Bytes per domain (as mapped by the sponsor's regexes), all shown cells together",
    );
    let bar_left = 260.0;
    let bar_right = WIDTH - 140.0;
    let max = bars.first().map_or(1, |b| b.1.max(1));
    svg.line(
        bar_left,
        top - 6.0,
        bar_left,
        top + row * bars.len().max(1) as f64,
        "stroke=\"#333333\"",
    );
    for (i, (domain, bytes)) in bars.iter().enumerate() {
        let y = top + row * i as f64;
        let w = (*bytes as f64 / max as f64 * (bar_right - bar_left)).max(1.0);
        svg.text(
            bar_left - 8.0,
            y + 14.0,
            "text-anchor=\"end\" fill=\"#333333\"",
            domain,
        );
        let _ = writeln!(
            svg.out,
            "<rect x=\"{bar_left}\" y=\"{:.1}\" width=\"{w:.1}\" height=\"18\" fill=\"{}\">\
             <title>{}: {bytes} bytes</title></rect>",
            y,
            COLOURS[0],
            escape(domain)
        );
        svg.text(
            bar_left + w + 6.0,
            y + 14.0,
            "fill=\"#333333\"",
            &human_bytes(*bytes),
        );
    }
    if bars.is_empty() {
        svg.text(
            WIDTH / 2.0,
            top + 14.0,
            "text-anchor=\"middle\" font-size=\"16\" fill=\"#555555\"",
            "no cell reaches the threshold",
        );
    }
    let mut note = footer(report);
    if not_drawn > 0 {
        let _ = write!(note, " {not_drawn} smaller domains not drawn.");
    }
    svg.text(40.0, height - 16.0, "fill=\"#555555\"", &note);
    svg.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_and_escapes() {
        assert_eq!(nice_step(1), 1);
        assert_eq!(nice_step(7), 2);
        assert_eq!(nice_step(23), 5);
        assert_eq!(nice_step(99), 20);
        assert_eq!(nice_step(1234), 500);
        assert_eq!(escape("a<b>&\"c'\u{1}"), "a&lt;b&gt;&amp;&quot;c&apos; ");
        assert_eq!(fmt_count(1500), "1.5k");
        assert_eq!(fmt_count(2_000_000), "2M");
    }
}
