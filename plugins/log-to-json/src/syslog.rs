//! Syslog lines: RFC 3164 (BSD, what most `/var/log/*` files hold) and RFC 5424.

use crate::cursor::{Cursor, Mismatch};
use crate::json::Object;

/// Which syslog format a stage expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    /// RFC 5424 when the line starts with `<PRI>1 `, else RFC 3164.
    Auto,
    /// RFC 3164 only.
    Rfc3164,
    /// RFC 5424 only.
    Rfc5424,
}

/// Converts one syslog line into a JSON object appended to `out`. `year` turns RFC 3164
/// timestamps (`Jun 14 15:16:01`) into `2024-06-14T15:16:01`.
pub(crate) fn write(
    line: &[u8],
    flavor: Flavor,
    year: Option<u16>,
    out: &mut Vec<u8>,
) -> Result<(), Mismatch> {
    let rfc5424 = match flavor {
        Flavor::Auto => looks_like_rfc5424(line),
        Flavor::Rfc3164 => false,
        Flavor::Rfc5424 => true,
    };
    if rfc5424 {
        Rfc5424::parse(line)?.write(out);
    } else {
        Rfc3164::parse(line)?.write(year, out);
    }
    Ok(())
}

/// Whether the line starts with an RFC 5424 header, `<PRI>1 `.
fn looks_like_rfc5424(line: &[u8]) -> bool {
    let mut c = Cursor::new(line);
    priority(&mut c).is_ok() && c.eat_prefix(b"1 ")
}

/// `<PRI>`: 1 to 3 digits, at most 191 (facility 23, severity 7).
fn priority(c: &mut Cursor<'_>) -> Result<u8, Mismatch> {
    const EXPECTED: &str = "a priority from 0 to 191";
    c.expect(b'<', "'<' opening the priority")?;
    let at = c.pos();
    let pri = c.number(3, EXPECTED)?;
    let pri = u8::try_from(pri)
        .ok()
        .filter(|&p| p <= 191)
        .ok_or(Mismatch {
            at,
            expected: EXPECTED,
        })?;
    c.expect(b'>', "'>' closing the priority")?;
    Ok(pri)
}

fn write_priority(obj: &mut Object<'_>, pri: u8) {
    obj.integer("priority", i64::from(pri));
    obj.integer("facility", i64::from(pri >> 3));
    obj.integer("severity", i64::from(pri & 7));
}

/// `-` (RFC 5424's NILVALUE) as `None`.
fn nil(field: &[u8]) -> Option<&[u8]> {
    (field != b"-").then_some(field)
}

/// An RFC 3164 timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timestamp<'a> {
    /// `Jun 14 15:16:01`, `Jul  3 04:08:03`, `Jun 14 15:16:01.123`.
    Bsd {
        text: &'a [u8],
        month: u8,
        day: u8,
        time: &'a [u8],
    },
    /// `2024-06-14T15:16:01.123+02:00` (rsyslog's high-precision format), kept as written.
    Iso(&'a [u8]),
}

/// The parts of an RFC 3164 line: `[<PRI>]TIMESTAMP HOSTNAME [TAG[\[PID\]]: ]MESSAGE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rfc3164<'a> {
    priority: Option<u8>,
    timestamp: Timestamp<'a>,
    hostname: &'a [u8],
    program: Option<&'a [u8]>,
    processid: Option<&'a [u8]>,
    message: &'a [u8],
}

impl<'a> Rfc3164<'a> {
    fn parse(line: &'a [u8]) -> Result<Rfc3164<'a>, Mismatch> {
        let mut c = Cursor::new(line);
        let priority = match c.peek() {
            Some(b'<') => Some(priority(&mut c)?),
            _ => None,
        };
        let start = c.pos();
        let timestamp = if c.peek().is_some_and(|b| b.is_ascii_digit()) {
            c.digits(4, "a year (yyyy-mm-ddThh:mm:ss)")?;
            c.expect(b'-', "'-' in the date (yyyy-mm-dd)")?;
            c.digits(2, "a month (yyyy-mm-dd)")?;
            c.expect(b'-', "'-' in the date (yyyy-mm-dd)")?;
            c.digits(2, "a day (yyyy-mm-dd)")?;
            c.expect(b'T', "'T' between the date and the time")?;
            c.time_of_day()?;
            c.take_while(|b| b != b' ');
            Timestamp::Iso(&line[start..c.pos()])
        } else {
            let month = c.month()?;
            c.spaces1("a space after the month")?;
            let at = c.pos();
            let day = c.number(2, "a day of the month")?;
            let day = u8::try_from(day)
                .ok()
                .filter(|d| (1..=31).contains(d))
                .ok_or(Mismatch {
                    at,
                    expected: "a day of the month",
                })?;
            c.expect(b' ', "a space after the day of the month")?;
            let time = c.time_of_day()?;
            Timestamp::Bsd {
                text: &line[start..c.pos()],
                month,
                day,
                time,
            }
        };
        c.spaces1("a space after the timestamp")?;
        let hostname = c.token("a host name")?;
        c.take_while(|b| b == b' ');
        let (program, processid, message) = split_tag(c.rest());
        Ok(Rfc3164 {
            priority,
            timestamp,
            hostname,
            program,
            processid,
            message,
        })
    }

    fn write(&self, year: Option<u16>, out: &mut Vec<u8>) {
        let mut obj = Object::begin(out);
        if let Some(pri) = self.priority {
            write_priority(&mut obj, pri);
        }
        match (self.timestamp, year) {
            (
                Timestamp::Bsd {
                    month, day, time, ..
                },
                Some(year),
            ) => obj.string_with("timestamp", |out| {
                push_padded(out, u32::from(year), 4);
                out.push(b'-');
                push_padded(out, u32::from(month), 2);
                out.push(b'-');
                push_padded(out, u32::from(day), 2);
                out.push(b'T');
                out.extend_from_slice(time);
            }),
            (Timestamp::Bsd { text, .. } | Timestamp::Iso(text), _) => {
                obj.string("timestamp", text);
            }
        }
        obj.string("hostname", self.hostname);
        if let Some(program) = self.program {
            obj.string("program", program);
        }
        if let Some(pid) = self.processid {
            obj.integer_or_string("processid", pid);
        }
        obj.string("message", self.message);
        obj.end();
    }
}

/// Appends `n` in decimal with at least `width` digits.
fn push_padded(out: &mut Vec<u8>, n: u32, width: usize) {
    let mut digits = Vec::with_capacity(width);
    crate::json::push_u64(&mut digits, u64::from(n));
    out.extend(std::iter::repeat_n(
        b'0',
        width.saturating_sub(digits.len()),
    ));
    out.extend_from_slice(&digits);
}

/// Splits the content after the host name into program, process id and message.
///
/// The tag is a run of bytes up to `[`, `:` or a space, where `:` and `[` inside parentheses
/// do not count (`sshd(pam_unix)`, `su(pam_unix:auth)`). `TAG: message` and
/// `TAG[PID]: message` have a program (and a process id); anything else (`syslogd 1.4.1:
/// restart.`, `-- root[2421]: ...`) is all message. One space after the colon is dropped.
fn split_tag(content: &[u8]) -> (Option<&[u8]>, Option<&[u8]>, &[u8]) {
    let mut depth = 0usize;
    let mut end = content.len();
    for (i, &b) in content.iter().enumerate() {
        match b {
            b'(' => depth += 1,
            b')' => depth = depth.saturating_sub(1),
            b' ' => {
                end = i;
                break;
            }
            b'[' | b':' if depth == 0 => {
                end = i;
                break;
            }
            _ => {}
        }
    }
    let (program, after) = content.split_at(end);
    if !program.is_empty() {
        match after.first() {
            Some(b':') => {
                if let Some(message) = message_after_colon(after) {
                    return (Some(program), None, message);
                }
            }
            Some(b'[') => {
                let pid_and_rest = &after[1..];
                if let Some(close) = pid_and_rest.iter().position(|&b| b == b']')
                    && close > 0
                    && let Some(message) = message_after_colon(&pid_and_rest[close + 1..])
                {
                    return (Some(program), Some(&pid_and_rest[..close]), message);
                }
            }
            _ => {}
        }
    }
    (None, None, content)
}

/// The message after a tag: `rest` must start with `:`, which is dropped with one space.
fn message_after_colon(rest: &[u8]) -> Option<&[u8]> {
    let rest = rest.strip_prefix(b":")?;
    Some(rest.strip_prefix(b" ").unwrap_or(rest))
}

/// The parts of an RFC 5424 line:
/// `<PRI>VERSION TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rfc5424<'a> {
    priority: u8,
    version: u32,
    timestamp: Option<&'a [u8]>,
    hostname: Option<&'a [u8]>,
    appname: Option<&'a [u8]>,
    processid: Option<&'a [u8]>,
    msgid: Option<&'a [u8]>,
    structureddata: Option<&'a [u8]>,
    message: Option<&'a [u8]>,
}

impl<'a> Rfc5424<'a> {
    fn parse(line: &'a [u8]) -> Result<Rfc5424<'a>, Mismatch> {
        let mut c = Cursor::new(line);
        let priority = priority(&mut c)?;
        if c.peek() == Some(b'0') {
            return Err(c.fail("a syslog version (1)"));
        }
        let version = c.number(3, "a syslog version (1)")?;
        c.expect(b' ', "a space after the version")?;
        let mut field = |expected: &'static str, space: &'static str| {
            let value = c.token(expected)?;
            c.expect(b' ', space)?;
            Ok(nil(value))
        };
        let timestamp = field("a timestamp or '-'", "a space after the timestamp")?;
        let hostname = field("a host name or '-'", "a space after the host name")?;
        let appname = field("an app name or '-'", "a space after the app name")?;
        let processid = field("a process id or '-'", "a space after the process id")?;
        let msgid = field("a message id or '-'", "a space after the message id")?;
        let sd_start = c.pos();
        let structureddata = if c.eat(b'-') {
            None
        } else if c.peek() == Some(b'[') {
            while c.peek() == Some(b'[') {
                sd_element(&mut c)?;
            }
            Some(&line[sd_start..c.pos()])
        } else {
            return Err(c.fail("structured data ('[' or '-')"));
        };
        let message = if c.at_end() {
            None
        } else {
            c.expect(
                b' ',
                "a space or the end of the line after the structured data",
            )?;
            let msg = c.rest();
            Some(msg.strip_prefix("\u{feff}".as_bytes()).unwrap_or(msg))
        };
        Ok(Rfc5424 {
            priority,
            version,
            timestamp,
            hostname,
            appname,
            processid,
            msgid,
            structureddata,
            message,
        })
    }

    fn write(&self, out: &mut Vec<u8>) {
        let mut obj = Object::begin(out);
        write_priority(&mut obj, self.priority);
        obj.integer("version", i64::from(self.version));
        obj.string_or_null("timestamp", self.timestamp);
        obj.string_or_null("hostname", self.hostname);
        obj.string_or_null("appname", self.appname);
        obj.integer_string_or_null("processid", self.processid);
        obj.string_or_null("msgid", self.msgid);
        obj.string_or_null("structureddata", self.structureddata);
        if let Some(message) = self.message {
            obj.string("message", message);
        }
        obj.end();
    }
}

/// Skips one `[SD-ID PARAM="value" ...]`; in values, `\"`, `\\` and `\]` are escapes.
fn sd_element(c: &mut Cursor<'_>) -> Result<(), Mismatch> {
    c.expect(b'[', "'[' opening a structured data element")?;
    let rest = c.rest();
    let mut in_value = false;
    let mut i = 0;
    while let Some(&b) = rest.get(i) {
        match (in_value, b) {
            (true, b'\\') => i += 1,
            (true, b'"') => in_value = false,
            (false, b'"') => in_value = true,
            (false, b']') => {
                c.skip(i + 1);
                return Ok(());
            }
            _ => {}
        }
        i += 1;
    }
    c.skip(rest.len());
    Err(c.fail("']' closing a structured data element"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn convert(line: &str, flavor: Flavor, year: Option<u16>) -> Result<Value, String> {
        let mut out = Vec::new();
        write(line.as_bytes(), flavor, year, &mut out).map_err(|m| m.to_string())?;
        Ok(serde_json::from_slice(&out).unwrap())
    }

    fn auto(line: &str) -> Value {
        convert(line, Flavor::Auto, None).unwrap()
    }

    #[test]
    fn rfc3164_tags() {
        assert_eq!(
            auto("Jun 14 15:16:01 combo sshd(pam_unix)[19939]: check pass; user unknown"),
            json!({"timestamp": "Jun 14 15:16:01", "hostname": "combo",
                   "program": "sshd(pam_unix)", "processid": 19939,
                   "message": "check pass; user unknown"})
        );
        assert_eq!(
            auto("Jun 14 15:16:01 combo su(pam_unix:auth)[7]: x"),
            json!({"timestamp": "Jun 14 15:16:01", "hostname": "combo",
                   "program": "su(pam_unix:auth)", "processid": 7, "message": "x"})
        );
        assert_eq!(
            auto("Jul  3 04:08:03 combo kernel: Linux version 2.6"),
            json!({"timestamp": "Jul  3 04:08:03", "hostname": "combo", "program": "kernel",
                   "message": "Linux version 2.6"})
        );
        assert_eq!(
            auto("Jul  3 04:08:03 combo syslogd 1.4.1: restart."),
            json!({"timestamp": "Jul  3 04:08:03", "hostname": "combo",
                   "message": "syslogd 1.4.1: restart."})
        );
        assert_eq!(
            auto("Jul  7 08:06:15 combo  -- root[2421]: ROOT LOGIN ON tty2"),
            json!({"timestamp": "Jul  7 08:06:15", "hostname": "combo",
                   "message": "-- root[2421]: ROOT LOGIN ON tty2"})
        );
        // A non-numeric process id stays a string; an empty one is no tag.
        assert_eq!(
            auto("Jan  1 00:00:00 h app[main]:msg")["processid"],
            json!("main")
        );
        assert_eq!(
            auto("Jan  1 00:00:00 h app[]: msg")["message"],
            json!("app[]: msg")
        );
        assert_eq!(
            auto("Jan  1 00:00:00 h app[1] msg")["message"],
            json!("app[1] msg")
        );
        // Nothing after the host name.
        assert_eq!(
            auto("Jan 31 23:59:59 h"),
            json!({"timestamp": "Jan 31 23:59:59", "hostname": "h", "message": ""})
        );
        assert_eq!(auto("Jan 31 23:59:59 h app:")["message"], json!(""));
    }

    #[test]
    fn rfc3164_priority_year_and_iso_timestamps() {
        assert_eq!(
            auto("<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8"),
            json!({"priority": 34, "facility": 4, "severity": 2,
                   "timestamp": "Oct 11 22:14:15", "hostname": "mymachine", "program": "su",
                   "message": "'su root' failed for lonvick on /dev/pts/8"})
        );
        let with_year = |line| convert(line, Flavor::Rfc3164, Some(2005)).unwrap();
        assert_eq!(
            with_year("Jul  3 04:08:03 combo kernel: x")["timestamp"],
            "2005-07-03T04:08:03"
        );
        assert_eq!(
            with_year("Dec 10 06:55:46.123 LabSZ sshd[1]: x")["timestamp"],
            "2005-12-10T06:55:46.123"
        );
        let early = convert("Jan  1 00:00:00 h x", Flavor::Rfc3164, Some(7)).unwrap();
        assert_eq!(early["timestamp"], "0007-01-01T00:00:00");
        let iso = "2024-06-14T15:16:01.123456+02:00 web-1 nginx[80]: GET /";
        for year in [None, Some(1999)] {
            assert_eq!(
                convert(iso, Flavor::Auto, year).unwrap(),
                json!({"timestamp": "2024-06-14T15:16:01.123456+02:00", "hostname": "web-1",
                       "program": "nginx", "processid": 80, "message": "GET /"})
            );
        }
    }

    #[test]
    fn rfc3164_mismatches() {
        let err = |line: &str| convert(line, Flavor::Rfc3164, None).unwrap_err();
        assert_eq!(err(""), "expected a month name (Jan to Dec) at byte 0");
        assert_eq!(
            err("hello world"),
            "expected a month name (Jan to Dec) at byte 0"
        );
        assert_eq!(
            err("Jun 32 00:00:00 h x"),
            "expected a day of the month at byte 4"
        );
        assert_eq!(
            err("Jun 1 0:00:00 h x"),
            "expected an hour (hh:mm:ss) at byte 6"
        );
        assert_eq!(
            err("Jun 14 15:16:01"),
            "expected a space after the timestamp at byte 15"
        );
        assert_eq!(err("Jun 14 15:16:01 "), "expected a host name at byte 16");
        assert_eq!(
            err("<192>Jun 14 15:16:01 h x"),
            "expected a priority from 0 to 191 at byte 1"
        );
        assert_eq!(
            err("<1x>Jun 14 15:16:01 h x"),
            "expected '>' closing the priority at byte 2"
        );
        assert_eq!(
            err("<165>1 2003-10-11T22:14:15.003Z host app - - - x"),
            "expected a year (yyyy-mm-ddThh:mm:ss) at byte 5"
        );
        assert_eq!(
            err("2024-06-14 15:16:01 h x"),
            "expected 'T' between the date and the time at byte 10"
        );
    }

    #[test]
    fn rfc5424() {
        // The examples of RFC 5424 section 6.5.
        assert_eq!(
            auto(
                "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \u{feff}'su root' failed for lonvick on /dev/pts/8"
            ),
            json!({"priority": 34, "facility": 4, "severity": 2, "version": 1,
                   "timestamp": "2003-10-11T22:14:15.003Z", "hostname": "mymachine.example.com",
                   "appname": "su", "processid": null, "msgid": "ID47", "structureddata": null,
                   "message": "'su root' failed for lonvick on /dev/pts/8"})
        );
        assert_eq!(
            auto(
                "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to make the do-nuts."
            ),
            json!({"priority": 165, "facility": 20, "severity": 5, "version": 1,
                   "timestamp": "2003-08-24T05:14:15.000003-07:00", "hostname": "192.0.2.1",
                   "appname": "myproc", "processid": 8710, "msgid": null, "structureddata": null,
                   "message": "%% It's time to make the do-nuts."})
        );
        let sd = r#"[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]"#;
        assert_eq!(
            auto(&format!(
                "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 {sd}"
            )),
            json!({"priority": 165, "facility": 20, "severity": 5, "version": 1,
                   "timestamp": "2003-10-11T22:14:15.003Z", "hostname": "mymachine.example.com",
                   "appname": "evntslog", "processid": null, "msgid": "ID47",
                   "structureddata": sd})
        );
        // Escapes inside parameter values do not end the element.
        let sd = r#"[a@1 x="q\"]\\" y="]"]"#;
        let v = auto(&format!("<0>1 - - - - - {sd} m"));
        assert_eq!(v["structureddata"], sd);
        assert_eq!(v["message"], "m");
        assert_eq!(v["timestamp"], Value::Null);
        assert_eq!(
            auto("<13>1 - - - - - - ")["message"],
            json!(""),
            "an empty message is kept"
        );
        assert_eq!(
            convert("<13>2 - - - abc - -", Flavor::Rfc5424, None).unwrap()["processid"],
            json!("abc")
        );
    }

    #[test]
    fn rfc5424_mismatches() {
        let err = |line: &str| convert(line, Flavor::Rfc5424, None).unwrap_err();
        assert_eq!(
            err("Jun 14 15:16:01 h x"),
            "expected '<' opening the priority at byte 0"
        );
        assert_eq!(
            err("<13>0 - - - - - -"),
            "expected a syslog version (1) at byte 4"
        );
        assert_eq!(
            err("<13>1 - - - - -"),
            "expected a space after the message id at byte 15"
        );
        assert_eq!(
            err("<13>1 -  - - - - -"),
            "expected a host name or '-' at byte 8"
        );
        assert_eq!(
            err("<13>1 - - - - - x"),
            "expected structured data ('[' or '-') at byte 16"
        );
        assert_eq!(
            err("<13>1 - - - - - [a b=\"]\""),
            "expected ']' closing a structured data element at byte 24"
        );
        assert_eq!(
            err("<13>1 - - - - - [a]x"),
            "expected a space or the end of the line after the structured data at byte 19"
        );
        assert_eq!(
            err("<13>1 - - - - - -x"),
            "expected a space or the end of the line after the structured data at byte 17"
        );
    }
}
