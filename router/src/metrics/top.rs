//! `edge-router top`: a live view of a running router, from its metrics endpoint. Every interval
//! it scrapes `/metrics`, and shows per-component record rates (from the difference of two
//! scrapes), queue fill and end-to-end latency. Parsing and the view are pure ([`parse`],
//! [`view`]); [`run`] fetches and prints.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::client::EndpointClient;

/// Samples of one scrape: series (name with labels, as written) -> value.
pub type Scrape = BTreeMap<String, f64>;

/// Parses the Prometheus text format (comments skipped; malformed lines ignored).
pub fn parse(text: &str) -> Scrape {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse::<f64>().ok()?))
        })
        .collect()
}

/// The value of label `label` in a series like `name{a="x",b="y"}`.
fn label<'s>(series: &'s str, label: &str) -> Option<&'s str> {
    let inner = series.split_once('{')?.1.strip_suffix('}')?;
    let key = format!("{label}=\"");
    let start = inner.find(&key)? + key.len();
    let rest = &inner[start..];
    Some(&rest[..rest.find('"')?])
}

fn per_label<'s>(s: &'s Scrape, name: &str, by: &str) -> BTreeMap<&'s str, f64> {
    s.iter()
        .filter(|(k, _)| k.starts_with(name) && k[name.len()..].starts_with('{'))
        .filter_map(|(k, v)| Some((label(k, by)?, *v)))
        .collect()
}

fn rate(now: f64, before: Option<f64>, secs: f64) -> f64 {
    match before {
        Some(b) if secs > 0.0 && now >= b => (now - b) / secs,
        _ => 0.0,
    }
}

fn human(n: f64) -> String {
    if n >= 1e6 {
        format!("{:.2}M", n / 1e6)
    } else if n >= 1e3 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n:.0}")
    }
}

/// The screen for scrape `now`, with rates against `before` taken `secs` earlier.
pub fn view(now: &Scrape, before: Option<&Scrape>, secs: f64) -> String {
    let mut out = String::new();
    let g = |s: &Scrape, k: &str| s.get(k).copied();
    let total = |k: &str| g(now, k).unwrap_or(0.0);
    let total_rate = |k: &str| rate(total(k), before.and_then(|b| g(b, k)), secs);
    let _ = writeln!(
        out,
        "edge-router  up {:.0}s   read {}/s   written {}/s   dead-lettered {}   in flight {}",
        total("edge_router_uptime_seconds"),
        human(total_rate("edge_router_records_read_total")),
        human(total_rate("edge_router_records_written_total")),
        total("edge_router_records_dead_lettered_total"),
        total("edge_router_records_in_flight"),
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<28} {:>12} {:>12} {:>14} {:>10}",
        "component", "in/s", "out/s", "records out", "dead"
    );
    let ins = per_label(now, "edge_router_component_records_in_total", "component");
    let outs = per_label(now, "edge_router_component_records_out_total", "component");
    let dead = per_label(
        now,
        "edge_router_component_records_dead_lettered_total",
        "component",
    );
    let tripped = per_label(
        now,
        "edge_router_component_plugin_breaker_open",
        "component",
    );
    let (ins_b, outs_b) = match before {
        Some(b) => (
            per_label(b, "edge_router_component_records_in_total", "component"),
            per_label(b, "edge_router_component_records_out_total", "component"),
        ),
        None => Default::default(),
    };
    for (c, v) in &ins {
        let o = outs.get(c).copied().unwrap_or(0.0);
        // A plugin stage whose breaker is open: its plugin is not being called.
        let state = if tripped.get(c).copied().unwrap_or(0.0) > 0.0 {
            "  TRIPPED"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "{:<28} {:>12} {:>12} {:>14} {:>10}{state}",
            c,
            human(rate(*v, ins_b.get(c).copied(), secs)),
            human(rate(o, outs_b.get(c).copied(), secs)),
            o,
            dead.get(c).copied().unwrap_or(0.0)
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<28} {:>12} {:>12} {:>8}",
        "queue", "records", "capacity", "fill"
    );
    let depth = per_label(now, "edge_router_queue_records", "queue");
    let cap = per_label(now, "edge_router_queue_records_capacity", "queue");
    let bytes = per_label(now, "edge_router_queue_bytes", "queue");
    let bytes_cap = per_label(now, "edge_router_queue_bytes_capacity", "queue");
    for (q, d) in &depth {
        let c = cap.get(q).copied().unwrap_or(0.0);
        let fill = |n: f64, m: f64| if m > 0.0 { n / m } else { 0.0 };
        let f = fill(*d, c).max(fill(
            bytes.get(q).copied().unwrap_or(0.0),
            bytes_cap.get(q).copied().unwrap_or(0.0),
        ));
        let _ = writeln!(out, "{q:<28} {d:>12} {c:>12} {:>7.0}%", f * 100.0);
    }
    let q = |p: &str| {
        g(
            now,
            &format!("edge_router_end_to_end_latency_seconds{{quantile=\"{p}\"}}"),
        )
        .unwrap_or(0.0)
            * 1e3
    };
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "latency arrival->written (ms, since start): p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}",
        q("0.5"),
        q("0.9"),
        q("0.99"),
        q("0.999")
    );
    out
}

/// Shows the live view of the router whose metrics endpoint is `address` every `interval`,
/// `count` times (forever for `None`). Clears the screen between views when `clear`.
pub fn run(
    address: &str,
    interval: Duration,
    count: Option<u64>,
    clear: bool,
) -> Result<(), String> {
    let client = EndpointClient::new(address)?;
    let mut before: Option<(Scrape, Instant)> = None;
    let mut shown = 0u64;
    loop {
        let (status, body) = client.call(hyper::Method::GET, "/metrics")?;
        if !status.is_success() {
            return Err(format!("scraping http://{address}/metrics: HTTP {status}"));
        }
        let now = parse(&String::from_utf8_lossy(&body));
        let at = Instant::now();
        let secs = before
            .as_ref()
            .map_or(0.0, |(_, t)| at.duration_since(*t).as_secs_f64());
        let screen = view(&now, before.as_ref().map(|(s, _)| s), secs);
        let written = {
            use std::io::Write as _;
            let mut out = std::io::stdout().lock();
            if clear {
                write!(out, "\x1b[2J\x1b[H{screen}").and_then(|()| out.flush())
            } else {
                writeln!(out, "{screen}")
            }
        };
        if written.is_err() {
            // Standard output is gone (`top | head`): nothing left to show.
            return Ok(());
        }
        shown += 1;
        if count.is_some_and(|c| shown >= c) {
            return Ok(());
        }
        before = Some((now, at));
        std::thread::sleep(interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: &str = "# HELP x y\n# TYPE edge_router_records_read_total counter\n\
        edge_router_records_read_total 100\nedge_router_records_written_total 90\n\
        edge_router_component_records_in_total{component=\"sources.web\",kind=\"source\"} 100\n\
        edge_router_component_records_out_total{component=\"sources.web\",kind=\"source\"} 100\n\
        edge_router_queue_records{queue=\"sinks.out\"} 10\n\
        edge_router_queue_records_capacity{queue=\"sinks.out\"} 40\n\
        edge_router_end_to_end_latency_seconds{quantile=\"0.99\"} 0.0025\n";

    #[test]
    fn parse_and_labels() {
        let s = parse(T0);
        assert_eq!(s["edge_router_records_read_total"], 100.0);
        assert_eq!(
            label("m{component=\"sources.web\",kind=\"source\"}", "kind"),
            Some("source")
        );
        assert_eq!(label("m", "kind"), None);
    }

    #[test]
    fn rates_come_from_two_scrapes() {
        let before = parse(T0);
        let now = parse(&T0.replace(" 100\n", " 300\n"));
        let v = view(&now, Some(&before), 2.0);
        assert!(v.contains("read 100/s"), "{v}");
        assert!(
            v.lines()
                .any(|l| l.starts_with("sources.web") && l.contains(" 100 ")),
            "{v}"
        );
        assert!(
            v.lines()
                .any(|l| l.starts_with("sinks.out") && l.ends_with("25%")),
            "{v}"
        );
        assert!(v.contains("p99 2.50"), "{v}");
        // The first view has no rates yet.
        assert!(view(&before, None, 0.0).contains("read 0/s"));
    }

    #[test]
    fn a_tripped_stage_is_marked() {
        let text = format!(
            "{T0}edge_router_component_records_in_total{{component=\"stages.p\",kind=\"stage\"}} 5\n\
             edge_router_component_plugin_breaker_open{{component=\"stages.p\",kind=\"stage\"}} 1\n"
        );
        let v = view(&parse(&text), None, 0.0);
        assert!(
            v.lines()
                .any(|l| l.starts_with("stages.p") && l.ends_with("TRIPPED")),
            "{v}"
        );
        assert!(
            !v.lines()
                .any(|l| l.starts_with("sources.web") && l.contains("TRIPPED"))
        );
    }
}
