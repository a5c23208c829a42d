//! An enrich stage that turns log lines into JSON objects: syslog (RFC 3164 and RFC 5424),
//! Apache access logs (common and combined) and error logs, and CSV, as the Kinesis Agent's
//! `LOGTOJSON` and `CSVTOJSON` processing options do, with the same field names.
//!
//! # Config
//!
//! ```json
//! {"format": "csv", "csv_fields": ["device_id", "temperature", "ts"], "csv_delimiter": ",",
//!  "on_mismatch": "error", "year": 2024}
//! ```
//!
//! - `format` (required): `"syslog"` (RFC 5424 when the line starts with `<PRI>1 `, else
//!   RFC 3164), `"rfc3164"`, `"rfc5424"`, `"apache_common"`, `"apache_combined"`,
//!   `"apache_error"` or `"csv"`.
//! - `csv_fields` (required for `csv`, only for `csv`): the names of the columns, by position;
//!   at least one, no duplicates.
//! - `csv_delimiter` (only for `csv`, default `","`): the string between columns; not empty,
//!   no `"`.
//! - `on_mismatch` (default `"error"`): what to do with a line that does not match the
//!   format. `"error"`: the record is an error, `does not match <format>: expected <what> at
//!   byte <n>`, which the router dead-letters; `"pass"`: the record is left as it was.
//! - `year` (only for `syslog` and `rfc3164`, 1 to 9999): RFC 3164 timestamps carry no year;
//!   with one, `Jun 14 15:16:01` becomes `2024-06-14T15:16:01` (no time zone: the line has
//!   none). Without, timestamps are kept as written.
//!
//! # Output
//!
//! Each record's payload is replaced with one JSON object on one line, keys in the order
//! below. A trailing line break (`\n`, `\r\n` or `\r`) is dropped first; loghub files are CRLF.
//! Strings are copied as written (no unescaping, except CSV's `""`), with `"`, `\` and control
//! characters escaped and invalid UTF-8 replaced with U+FFFD. Fields marked *number* are JSON
//! numbers when the text is an integer and strings otherwise. **A part the line writes as `-`
//! (Apache's and RFC 5424's "no value") is `null`; an optional part the line does not have is
//! left out.**
//!
//! | Format | Keys (optional ones in italics) |
//! |---|---|
//! | RFC 3164 | *`priority`, `facility`, `severity`*¹ (numbers), `timestamp`, `hostname`, *`program`*², *`processid`*² (number), `message` |
//! | RFC 5424 | `priority`, `facility`, `severity`, `version` (numbers), `timestamp`, `hostname`, `appname`, `processid` (number), `msgid`, `structureddata` (the elements as written), *`message`*³ |
//! | `apache_common` | `host`, `ident`, `authuser`, `datetime`, `request`, `response` (number), `bytes` (number) |
//! | `apache_combined` | the above, then `referer`, `agent` |
//! | `apache_error` | `timestamp`, *`module`*, `severity`, *`processid`*, *`threadid`* (numbers), *`client`*, `message` |
//! | `csv` | one string per column, under the `csv_fields` names; missing columns left out |
//!
//! ¹ When the line starts with `<PRI>`. ² RFC 3164's tag, `program[pid]: ` or `program: `
//! (parentheses allowed: `sshd(pam_unix)[19939]: `); a line without one (`syslogd 1.4.1:
//! restart.`) is all `message`. ³ Left out when the line ends after the structured data; a
//! leading UTF-8 BOM is dropped.
//!
//! RFC 3164 accepts `Mmm dd hh:mm:ss` timestamps (day space-padded or not, optional fraction)
//! and rsyslog's `yyyy-mm-ddThh:mm:ss...` ones, and takes the word after the timestamp as the
//! host name. `apache_common` ignores whatever follows the size, so combined lines convert
//! too. `apache_error` reads Apache 2.2 (`[Sun Dec 04 04:47:44 2005] [notice] ...`) and 2.4
//! (`[... 2000] [core:error] [pid 1:tid 2] [client 1.2.3.4:5] ...`) lines. CSV columns may be
//! quoted (RFC 4180: `"a, ""b"""` is `a, "b"`); a quote must then be followed by the
//! delimiter or the end of the line.
//!
//! ```
//! use log_to_json::LogToJson;
//! let out = edge_router_plugin::testing::enrich::<LogToJson>(
//!     r#"{"format": "syslog", "year": 2005}"#,
//!     &[b"Jun 14 15:16:01 combo sshd(pam_unix)[19939]: check pass; user unknown\r\n", b"junk"],
//! )
//! .unwrap();
//! assert_eq!(
//!     out[0].as_deref(),
//!     Ok(&br#"{"timestamp":"2005-06-14T15:16:01","hostname":"combo","program":"sshd(pam_unix)","processid":19939,"message":"check pass; user unknown"}"#[..])
//! );
//! assert_eq!(
//!     out[1],
//!     Err("does not match syslog: expected a month name (Jan to Dec) at byte 0".to_owned())
//! );
//! ```

#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod apache;
mod csv;
mod cursor;
mod json;
mod syslog;

use edge_router_plugin::{Changed, Context, Enrich, Record};
use serde_json::Value;

use crate::cursor::Mismatch;
use crate::syslog::Flavor;

/// The enrich stage.
#[derive(Debug, Clone)]
pub struct LogToJson {
    /// What to parse.
    format: Format,
    /// The config's name for the format, for error messages.
    name: &'static str,
    /// Whether a line that does not match is left as it is (else it is an error).
    pass_mismatches: bool,
}

/// A validated `format` with its options.
#[derive(Debug, Clone)]
enum Format {
    Syslog { flavor: Flavor, year: Option<u16> },
    ApacheAccess { combined: bool },
    ApacheError,
    Csv(csv::Csv),
}

/// The config's format names.
const FORMATS: [&str; 7] = [
    "syslog",
    "rfc3164",
    "rfc5424",
    "apache_common",
    "apache_combined",
    "apache_error",
    "csv",
];

impl LogToJson {
    /// Reads the stage config (see the crate docs).
    pub fn from_config(config: &str) -> Result<LogToJson, String> {
        let value: Value =
            serde_json::from_str(config).map_err(|e| format!("config is not valid JSON: {e}"))?;
        let Value::Object(map) = value else {
            return Err("config must be a JSON object such as {\"format\": \"syslog\"}".into());
        };
        const FIELDS: [&str; 5] = [
            "format",
            "csv_fields",
            "csv_delimiter",
            "on_mismatch",
            "year",
        ];
        if let Some(unknown) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(format!(
                "config: unknown field `{unknown}` (expected one of {})",
                FIELDS.map(|f| format!("`{f}`")).join(", ")
            ));
        }
        let one_of = FORMATS.map(|f| format!("\"{f}\"")).join(", ");
        let name = match map.get("format") {
            Some(Value::String(s)) => FORMATS.into_iter().find(|f| f == s).ok_or_else(|| {
                format!("config: `format`: unknown format \"{s}\" (expected one of {one_of})")
            })?,
            Some(_) => {
                return Err(format!(
                    "config: `format` must be a string, one of {one_of}"
                ));
            }
            None => return Err(format!("config: missing `format`, one of {one_of}")),
        };
        let only_for = |field: &str, formats: &[&str], what: &str| {
            if map.contains_key(field) && !formats.contains(&name) {
                Err(format!(
                    "config: `{field}` applies only to {what}, not to \"{name}\""
                ))
            } else {
                Ok(())
            }
        };
        only_for("csv_fields", &["csv"], "the \"csv\" format")?;
        only_for("csv_delimiter", &["csv"], "the \"csv\" format")?;
        only_for(
            "year",
            &["syslog", "rfc3164"],
            "the \"syslog\" and \"rfc3164\" formats",
        )?;
        let year = match map.get("year") {
            None => None,
            Some(v) => Some(
                v.as_u64()
                    .and_then(|y| u16::try_from(y).ok())
                    .filter(|y| (1..=9999).contains(y))
                    .ok_or("config: `year` must be a whole number from 1 to 9999")?,
            ),
        };
        let pass_mismatches = match map.get("on_mismatch") {
            None => false,
            Some(Value::String(s)) if s == "error" => false,
            Some(Value::String(s)) if s == "pass" => true,
            Some(_) => return Err("config: `on_mismatch` must be \"error\" or \"pass\"".into()),
        };
        let format = match name {
            "syslog" => Format::Syslog {
                flavor: Flavor::Auto,
                year,
            },
            "rfc3164" => Format::Syslog {
                flavor: Flavor::Rfc3164,
                year,
            },
            "rfc5424" => Format::Syslog {
                flavor: Flavor::Rfc5424,
                year: None,
            },
            "apache_common" => Format::ApacheAccess { combined: false },
            "apache_combined" => Format::ApacheAccess { combined: true },
            "apache_error" => Format::ApacheError,
            _ => Format::Csv(csv_config(&map)?),
        };
        Ok(LogToJson {
            format,
            name,
            pass_mismatches,
        })
    }

    /// Converts one line (a trailing line break is ignored) into a JSON object appended to
    /// `out`, or says why it does not match the format (leaving `out` as it was). Ignores
    /// `on_mismatch`.
    pub fn convert(&self, line: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let start = out.len();
        self.write(line, out).map_err(|m| {
            out.truncate(start);
            self.mismatch_message(m)
        })
    }

    /// [`LogToJson::convert`] with the mismatch as it is; `out` may hold part of an object.
    fn write(&self, line: &[u8], out: &mut Vec<u8>) -> Result<(), Mismatch> {
        let line = trim_line_break(line);
        match &self.format {
            Format::Syslog { flavor, year } => syslog::write(line, *flavor, *year, out),
            Format::ApacheAccess { combined } => apache::write_access(line, *combined, out),
            Format::ApacheError => apache::write_error(line, out),
            Format::Csv(csv) => csv.write(line, out),
        }
    }

    fn mismatch_message(&self, m: Mismatch) -> String {
        format!("does not match {}: {m}", self.name)
    }
}

/// `csv_fields` and `csv_delimiter`.
fn csv_config(map: &serde_json::Map<String, Value>) -> Result<csv::Csv, String> {
    const FIELDS_EXAMPLE: &str = "[\"device_id\", \"temperature\", \"ts\"]";
    let names: Vec<String> = match map.get("csv_fields") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                format!("config: `csv_fields` must be a list of strings, e.g. {FIELDS_EXAMPLE}")
            })?,
        Some(_) => {
            return Err(format!(
                "config: `csv_fields` must be a list of strings, e.g. {FIELDS_EXAMPLE}"
            ));
        }
        None => {
            return Err(format!(
                "config: the \"csv\" format needs `csv_fields`, the column names, e.g. {FIELDS_EXAMPLE}"
            ));
        }
    };
    if names.is_empty() {
        return Err("config: `csv_fields` must name at least one column".into());
    }
    for (i, name) in names.iter().enumerate() {
        if names[..i].contains(name) {
            return Err(format!("config: `csv_fields` names \"{name}\" twice"));
        }
    }
    let delimiter = match map.get("csv_delimiter") {
        None => ",",
        Some(Value::String(d)) if !d.is_empty() && !d.contains('"') => d.as_str(),
        Some(_) => {
            return Err("config: `csv_delimiter` must be a non-empty string without '\"'".into());
        }
    };
    Ok(csv::Csv::new(&names, delimiter))
}

/// `line` without one trailing `\n`, `\r\n` or `\r`.
fn trim_line_break(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl Enrich for LogToJson {
    fn init(config: &str, _ctx: &Context) -> Result<Self, String> {
        LogToJson::from_config(config)
    }

    fn enrich(&mut self, rec: &Record<'_>, out: &mut Vec<u8>) -> Result<Changed, String> {
        out.reserve(rec.payload.len() + 128);
        match self.write(rec.payload, out) {
            Ok(()) => Ok(Changed::Yes),
            // The SDK ignores `out` for unchanged records and errors.
            Err(_) if self.pass_mismatches => Ok(Changed::No),
            Err(m) => Err(self.mismatch_message(m)),
        }
    }
}

edge_router_plugin::export_enrich!(LogToJson);

#[cfg(test)]
mod tests;
