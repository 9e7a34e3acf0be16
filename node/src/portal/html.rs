//! The page frame and the small pieces every page uses: escaping, the
//! navigation, progress bars, buttons that post a form, and numbers as
//! people read them.
//!
//! Owns the markup shared by pages; must not fetch anything.

use axum::response::Html;
use serde_json::Value;
use std::fmt::Write;

/// `text` safe inside HTML text and quoted attributes.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` as one URL path segment.
pub fn seg(text: &str) -> String {
    crate::cli::text::seg(text)
}

/// A JSON value as text: strings bare, null as a dash.
pub fn text(v: &Value) -> String {
    match v {
        Value::Null => "—".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

const HEAD: &str = "<!doctype html><html lang=en><head><meta charset=utf-8>\
<meta name=viewport content=\"width=device-width, initial-scale=1\">\
<link rel=stylesheet href=\"/assets/portal.css\"><script src=\"/assets/portal.js\" defer></script>";

/// A page without navigation (login, errors).
pub fn bare(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "{HEAD}<title>{} · peerbatch</title></head><body><main>{body}</main></body></html>",
        esc(title)
    ))
}

/// A page of the portal: navigation, `body`, and the session's CSRF token
/// for the script's use.
pub fn page(title: &str, csrf: &str, body: &str) -> Html<String> {
    let nav = [
        ("/", "Mesh"),
        ("/jobs", "Jobs"),
        ("/submit", "Submit"),
        ("/pools", "Pools"),
        ("/schedules", "Schedules"),
        ("/packages", "Packages"),
        ("/functions", "Functions"),
    ]
    .iter()
    .map(|(href, name)| format!("<a href=\"{href}\">{name}</a>"))
    .collect::<String>();
    Html(format!(
        "{HEAD}<title>{} · peerbatch</title></head><body data-csrf=\"{}\">\
         <nav><b>peerbatch</b>{nav}<span id=live title=\"live updates\"></span></nav>\
         <main><h1>{}</h1>{body}</main></body></html>",
        esc(title),
        esc(csrf),
        esc(title)
    ))
}

/// A button that posts a form to `action` with the session's CSRF token
/// and `fields` as hidden inputs.
pub fn button(action: &str, csrf: &str, fields: &[(&str, &str)], label: &str) -> String {
    let mut out = format!(
        "<form method=post action=\"{}\" class=inline><input type=hidden name=csrf value=\"{}\">",
        esc(action),
        esc(csrf)
    );
    for (name, value) in fields {
        let _ = write!(
            out,
            "<input type=hidden name=\"{}\" value=\"{}\">",
            esc(name),
            esc(value)
        );
    }
    let _ = write!(out, "<button>{}</button></form>", esc(label));
    out
}

/// The states a job's progress bar shows, in order.
pub const STATES: &[&str] = &[
    "succeeded",
    "failed",
    "skipped",
    "cancelled",
    "running",
    "blocked",
    "pending",
];

/// A bar of a job's tasks by state (as `GET /v1/jobs` counts them).
pub fn progress(job: &Value) -> String {
    let total = job["tasks"].as_u64().unwrap_or(0).max(1);
    let mut out = String::from("<div class=bar>");
    for state in STATES {
        let n = job[*state].as_u64().unwrap_or(0);
        if n > 0 {
            let pct = n as f64 * 100.0 / total as f64;
            let _ = write!(
                out,
                "<span class=\"s-{state}\" style=\"width:{pct:.2}%\" title=\"{n} {state}\"></span>"
            );
        }
    }
    let done = job["succeeded"].as_u64().unwrap_or(0);
    let _ = write!(
        out,
        "</div><small>{done}/{} succeeded</small>",
        job["tasks"]
    );
    out
}

/// Milliseconds as `1.2 s`, `3 min 4 s`.
pub fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000)
    }
}

/// Bytes as `12.3 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: &[&str] = &["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A wall-clock time in milliseconds since the epoch, as UTC.
pub fn when(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(ms as i64).map_or_else(
        || ms.to_string(),
        |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
    )
}

/// A short form of a peer id, the whole of it on hover.
pub fn peer(id: &str) -> String {
    let short = id.get(id.len().saturating_sub(8)..).unwrap_or(id);
    format!("<span title=\"{}\">…{}</span>", esc(id), esc(short))
}

/// How an attempt ended other than by an exit code, as the API names it
/// (`timed_out`, …).
pub fn outcome(outcome: &peerbatch_protocol::Outcome) -> String {
    let named = serde_json::to_value(crate::api::outcome_of(outcome));
    named.map_or_else(|_| "—".into(), |v| text(&v))
}
