//! `edge-router generate`: deterministic sample records in the shapes edge hosts emit, to try a
//! pipeline without a data source (like Vector's `demo_logs` or Fluent Bit's `dummy`), and the
//! data the project's own tests and benchmarks run on.
//!
//! The same [`Options`] always produce the same bytes, and record `i` does not depend on how
//! many records are asked for (a longer run starts with the records of a shorter one).

use std::io::{self, Write};

/// The record shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// JSON telemetry: `{"device_id":17,"temperature":65.2,"humidity":40,"ts":...,"fw":...,"site":...}`.
    Sensor,
    /// JSON billing records (`payerId`, `productCode`, `usageType`, `operation`, `value`, `timestamp`).
    Metering,
    /// JSON clickstream (`user`, `session`, `page`, `referrer`, `ts`, `ua`).
    Click,
    /// CSV telemetry: `17,65.2,2016-03-25 01:01:20`.
    Csv,
    /// RFC 5424 syslog lines.
    Syslog,
    /// Apache common log format lines.
    Clf,
}

impl Kind {
    /// Every kind with its name.
    pub const ALL: [(&'static str, Kind); 6] = [
        ("sensor", Kind::Sensor),
        ("metering", Kind::Metering),
        ("click", Kind::Click),
        ("csv", Kind::Csv),
        ("syslog", Kind::Syslog),
        ("clf", Kind::Clf),
    ];

    /// The kind named `name`.
    pub fn parse(name: &str) -> Result<Kind, String> {
        Kind::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, k)| k)
            .ok_or_else(|| {
                let names: Vec<&str> = Kind::ALL.iter().map(|(n, _)| *n).collect();
                format!(
                    "unknown record kind {name:?} (one of: {})",
                    names.join(", ")
                )
            })
    }
}

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// The record shape.
    pub kind: Kind,
    /// How many records.
    pub count: u64,
    /// The random seed.
    pub seed: u64,
    /// Distinct devices (users, hosts) the records come from, numbered from 1.
    pub devices: u64,
    /// Filler bytes added to each JSON record (a `"pad"` field) and syslog message.
    pub pad: usize,
}

impl Options {
    /// `count` records of `kind` with the default seed (7), 10,000 devices and no padding.
    pub fn new(kind: Kind, count: u64) -> Options {
        Options {
            kind,
            count,
            seed: 7,
            devices: 10_000,
            pad: 0,
        }
    }
}

/// A small, fast, deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` (`hi > lo`).
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo).max(1)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Normally distributed (Box-Muller), rounded to one decimal.
    fn gauss(&mut self, mean: f64, sd: f64) -> f64 {
        let u1 = self.unit().max(f64::MIN_POSITIVE);
        let u2 = self.unit();
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        ((mean + sd * z) * 10.0).round() / 10.0
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.range(0, items.len() as u64) as usize]
    }
}

const PRODUCTS: [&str; 5] = [
    "AmazonS3",
    "AmazonEC2",
    "AmazonKinesis",
    "AWSLambda",
    "AmazonDynamoDB",
];
const USAGE: [&str; 4] = [
    "Bandwidth",
    "Requests-Tier1",
    "TimedStorage-ByteHrs",
    "BoxUsage",
];
const OPERATIONS: [&str; 4] = ["PUT", "GET", "LIST", "RunInstances"];
const PAGES: [&str; 6] = [
    "/",
    "/cart",
    "/checkout",
    "/search",
    "/product/",
    "/category/",
];
const APPS: [&str; 5] = ["evntslog", "sshd", "kernel", "nginx", "cron"];
const METHODS: [&str; 6] = ["GET", "GET", "GET", "POST", "PUT", "DELETE"];
const STATUS: [&str; 8] = ["200", "200", "200", "200", "304", "404", "500", "503"];
const FILES: [&str; 4] = ["apache_pb.gif", "index.html", "api/v1/items", "login"];

/// `2016-03-25THH:MM:SSZ`, twenty records a second from `base` seconds into the day.
fn timestamp(base: u64, i: u64) -> String {
    let s = base + i / 20;
    format!(
        "2016-03-25T{:02}:{:02}:{:02}Z",
        (s / 3600) % 24,
        (s / 60) % 60,
        s % 60
    )
}

/// Writes the records `o` describes to `out`.
pub fn write(o: &Options, out: &mut impl Write) -> io::Result<()> {
    let mut rng = Rng(o.seed);
    let pad = "x".repeat(o.pad);
    let pad_field = if o.pad > 0 {
        format!(",\"pad\":\"{pad}\"")
    } else {
        String::new()
    };
    let devices = o.devices.max(1);
    for i in 0..o.count {
        let dev = rng.range(1, devices + 1);
        match o.kind {
            Kind::Sensor => {
                let t = rng.gauss(68.0, 9.0);
                let humidity = rng.range(20, 90);
                writeln!(
                    out,
                    "{{\"device_id\":{dev},\"temperature\":{t:.1},\"humidity\":{humidity},\"ts\":\"{}\",\"fw\":\"1.4.{}\",\"site\":\"plant-{}\"{pad_field}}}",
                    timestamp(3600, i),
                    dev % 7,
                    dev % 13
                )?;
            }
            Kind::Metering => {
                let product = PRODUCTS[(dev % 5) as usize];
                let usage = rng.pick(&USAGE);
                let op = rng.pick(&OPERATIONS);
                let value = rng.range(1, 100_000);
                writeln!(
                    out,
                    "{{\"payerId\":\"payer-{dev}\",\"productCode\":\"{product}\",\"clientProductCode\":\"{product}\",\"usageType\":\"{usage}\",\"operation\":\"{op}\",\"value\":\"{value}\",\"timestamp\":\"{}\"{pad_field}}}",
                    1_216_674_828 + i
                )?;
            }
            Kind::Click => {
                let mut page = rng.pick(&PAGES).to_owned();
                if page.ends_with('/') && page.len() > 1 {
                    page.push_str(&rng.range(1, 500).to_string());
                }
                let referrer = rng.pick(&PAGES);
                writeln!(
                    out,
                    "{{\"user\":\"u{dev}\",\"session\":\"s{}\",\"page\":\"{page}\",\"referrer\":\"{referrer}\",\"ts\":\"{}\",\"ua\":\"Mozilla/5.0\"{pad_field}}}",
                    dev * 31 + i / 50,
                    timestamp(0, i)
                )?;
            }
            Kind::Csv => {
                let t = rng.gauss(68.0, 9.0);
                writeln!(
                    out,
                    "{dev},{t:.1},2016-03-25 {}",
                    &timestamp(3600, i)[11..19]
                )?;
            }
            Kind::Syslog => {
                let pri = [165, 134, 11, 30][rng.range(0, 4) as usize];
                let app = rng.pick(&APPS);
                let msgid = rng.range(1, 99);
                let event = rng.range(1000, 9999);
                let ts = timestamp(0, i);
                writeln!(
                    out,
                    "<{pri}>1 {}.{:03}Z host-{dev}.example.com {app} - ID{msgid} [exampleSDID@32473 iut=\"3\" eventSource=\"Application\" eventID=\"{event}\"] An application event log entry{pad}",
                    &ts[..ts.len() - 1],
                    i % 1000
                )?;
            }
            Kind::Clf => {
                let octet = rng.range(1, 255);
                let method = rng.pick(&METHODS);
                let file = rng.pick(&FILES);
                let status = rng.pick(&STATUS);
                let size = rng.range(100, 50_000);
                writeln!(
                    out,
                    "10.{}.{}.{octet} - user{dev} [10/Oct/2000:13:{:02}:{:02} -0700] \"{method} /{file} HTTP/1.0\" {status} {size}",
                    dev % 256,
                    (dev / 256) % 256,
                    (i / 60) % 60,
                    i % 60
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    fn text(o: &Options) -> String {
        let mut v = Vec::new();
        write(o, &mut v).unwrap();
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn the_same_options_give_the_same_bytes_and_longer_runs_extend_shorter_ones() {
        for (_, kind) in Kind::ALL {
            let short = text(&Options::new(kind, 100));
            let long = text(&Options::new(kind, 1000));
            assert_eq!(short, text(&Options::new(kind, 100)));
            assert!(long.starts_with(&short), "{kind:?}");
            assert_eq!(long.lines().count(), 1000);
            let other_seed = text(&Options {
                seed: 8,
                ..Options::new(kind, 100)
            });
            assert_ne!(short, other_seed, "{kind:?}");
        }
    }

    #[test]
    fn json_kinds_are_valid_json_with_their_fields() {
        for (kind, field) in [
            (Kind::Sensor, "temperature"),
            (Kind::Metering, "productCode"),
            (Kind::Click, "page"),
        ] {
            let o = Options {
                pad: 10,
                ..Options::new(kind, 500)
            };
            for line in text(&o).lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                assert!(v.get(field).is_some(), "{line}");
                assert_eq!(v["pad"], "xxxxxxxxxx");
            }
        }
    }

    #[test]
    fn sensor_records_spread_over_the_devices_and_temperatures() {
        let o = Options {
            devices: 24,
            ..Options::new(Kind::Sensor, 20_000)
        };
        let mut devices = std::collections::BTreeSet::new();
        let (mut hot, mut n) = (0, 0);
        for line in text(&o).lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            devices.insert(v["device_id"].as_u64().unwrap());
            n += 1;
            if v["temperature"].as_f64().unwrap() > 80.0 {
                hot += 1;
            }
        }
        assert_eq!(devices.len(), 24);
        assert_eq!(devices.first(), Some(&1));
        // About 9% of a normal(68, 9) is above 80.
        assert!((n / 20..n / 7).contains(&hot), "{hot} of {n}");
    }

    #[test]
    fn the_fixtures_under_tests_data_are_this_generators_output() {
        // The log-to-json plugin's tests read these (a plugin crate cannot run the router).
        for kind in ["syslog", "clf", "csv"] {
            let path = format!(
                "{}/../tests/data/generated/{kind}.log",
                env!("CARGO_MANIFEST_DIR")
            );
            let fixture = std::fs::read_to_string(&path).unwrap();
            assert_eq!(
                fixture,
                text(&Options::new(Kind::parse(kind).unwrap(), 50)),
                "{path} is stale: rewrite it with `edge-router generate {kind} 50`"
            );
        }
    }

    #[test]
    fn text_kinds_have_their_shapes() {
        let csv = text(&Options::new(Kind::Csv, 3));
        assert!(csv.lines().all(|l| l.split(',').count() == 3), "{csv}");
        let syslog = text(&Options::new(Kind::Syslog, 3));
        assert!(
            syslog
                .lines()
                .all(|l| l.starts_with('<') && l.contains(">1 2016-03-25T")),
            "{syslog}"
        );
        let clf = text(&Options::new(Kind::Clf, 3));
        assert!(
            clf.lines()
                .all(|l| l.contains(" [10/Oct/2000:13:") && l.contains(" HTTP/1.0\" ")),
            "{clf}"
        );
        assert!(
            Kind::parse("nope")
                .unwrap_err()
                .contains("sensor, metering")
        );
    }
}
