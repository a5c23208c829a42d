//! Apache httpd logs: the access log in common and combined format, and the error log.

use crate::cursor::{Cursor, Mismatch};
use crate::json::{Object, parse_integer};

/// `-` (Apache's "no value") as `None`.
fn dash(field: &[u8]) -> Option<&[u8]> {
    (field != b"-").then_some(field)
}

/// Converts one access-log line into a JSON object appended to `out`.
///
/// Common: `host ident authuser [datetime] "request" response bytes`; combined adds
/// ` "referer" "agent"`. Anything after that (after a space) is ignored.
pub(crate) fn write_access(line: &[u8], combined: bool, out: &mut Vec<u8>) -> Result<(), Mismatch> {
    let mut c = Cursor::new(line);
    let host = c.token("a client host")?;
    c.expect(b' ', "a space after the host")?;
    let ident = c.token("an ident ('-' when unknown)")?;
    c.expect(b' ', "a space after the ident")?;
    let authuser = c.token("a user name ('-' when unknown)")?;
    c.expect(b' ', "a space after the user name")?;
    c.expect(b'[', "'[' opening the date")?;
    let datetime = c.until(b']', "']' closing the date")?;
    c.skip(1);
    c.expect(b' ', "a space after the date")?;
    let request = c.quoted("'\"' opening the request")?;
    c.expect(b' ', "a space after the request")?;
    let response = integer_or_dash(&mut c, "a status code (or '-')")?;
    c.expect(b' ', "a space after the status code")?;
    let bytes = integer_or_dash(&mut c, "a size in bytes (or '-')")?;
    let referer_agent = if combined {
        c.expect(b' ', "a space after the size")?;
        let referer = c.quoted("'\"' opening the referer")?;
        c.expect(b' ', "a space after the referer")?;
        let agent = c.quoted("'\"' opening the user agent")?;
        if !c.at_end() && c.peek() != Some(b' ') {
            return Err(c.fail("a space or the end of the line after the user agent"));
        }
        Some((referer, agent))
    } else {
        None
    };
    let mut obj = Object::begin(out);
    obj.string_or_null("host", dash(host));
    obj.string_or_null("ident", dash(ident));
    obj.string_or_null("authuser", dash(authuser));
    obj.string("datetime", datetime);
    obj.string_or_null("request", dash(request));
    obj.integer_string_or_null("response", dash(response));
    obj.integer_string_or_null("bytes", dash(bytes));
    if let Some((referer, agent)) = referer_agent {
        obj.string_or_null("referer", dash(referer));
        obj.string_or_null("agent", dash(agent));
    }
    obj.end();
    Ok(())
}

/// A token that is an integer or `-`.
fn integer_or_dash<'a>(c: &mut Cursor<'a>, expected: &'static str) -> Result<&'a [u8], Mismatch> {
    let start = *c;
    let token = c.token(expected)?;
    if token == b"-" || parse_integer(token).is_some() {
        Ok(token)
    } else {
        Err(start.fail(expected))
    }
}

/// `\w` of regular expressions.
fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Converts one error-log line into a JSON object appended to `out`.
///
/// `[Sun Dec 04 04:47:44 2005] [notice] message` (Apache 2.2) or
/// `[Wed Oct 11 14:32:52.123456 2000] [core:error] [pid 35708:tid 4328636416] [client
/// 72.15.99.187:5000] message` (2.4); the `[pid ...]` and `[client ...]` parts are optional.
pub(crate) fn write_error(line: &[u8], out: &mut Vec<u8>) -> Result<(), Mismatch> {
    let mut c = Cursor::new(line);
    c.expect(b'[', "'[' opening the date")?;
    let start = c.pos();
    c.weekday()?;
    c.expect(b' ', "a space after the day name")?;
    c.month()?;
    c.spaces1("a space after the month")?;
    c.number(2, "a day of the month")?;
    c.expect(b' ', "a space after the day of the month")?;
    c.time_of_day()?;
    c.expect(b' ', "a space after the time")?;
    c.digits(4, "a year")?;
    let timestamp = &line[start..c.pos()];
    c.expect(b']', "']' closing the date")?;
    c.expect(b' ', "a space after the date")?;
    c.expect(b'[', "'[' opening the level")?;
    let first = c.take_while1(is_word, "a level such as 'error' or 'core:error'")?;
    let (module, severity) = if c.eat(b':') {
        (
            Some(first),
            c.take_while1(is_word, "a level after the module")?,
        )
    } else {
        (None, first)
    };
    c.expect(b']', "']' closing the level")?;
    let (mut processid, mut threadid, mut client) = (None, None, None);
    if c.eat_prefix(b" [pid ") {
        processid = Some(c.take_while1(|b| b.is_ascii_digit(), "a process id")?);
        if c.eat_prefix(b":tid ") {
            threadid = Some(c.take_while1(|b| b.is_ascii_digit(), "a thread id")?);
        }
        c.expect(b']', "']' closing the process id")?;
    }
    if c.eat_prefix(b" [client ") {
        client = Some(c.until(b']', "']' closing the client")?);
        c.skip(1);
    }
    let message = if c.at_end() {
        &b""[..]
    } else {
        c.expect(b' ', "a space before the message")?;
        c.rest()
    };
    let mut obj = Object::begin(out);
    obj.string("timestamp", timestamp);
    if let Some(module) = module {
        obj.string("module", module);
    }
    obj.string("severity", severity);
    if let Some(pid) = processid {
        obj.integer_or_string("processid", pid);
    }
    if let Some(tid) = threadid {
        obj.integer_or_string("threadid", tid);
    }
    if let Some(client) = client {
        obj.string("client", client);
    }
    obj.string("message", message);
    obj.end();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn access(line: &str, combined: bool) -> Result<Value, String> {
        let mut out = Vec::new();
        write_access(line.as_bytes(), combined, &mut out).map_err(|m| m.to_string())?;
        Ok(serde_json::from_slice(&out).unwrap())
    }

    fn error(line: &str) -> Result<Value, String> {
        let mut out = Vec::new();
        write_error(line.as_bytes(), &mut out).map_err(|m| m.to_string())?;
        Ok(serde_json::from_slice(&out).unwrap())
    }

    #[test]
    fn common_log() {
        // The example of the Apache documentation.
        let line = r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326"#;
        let expected = json!({"host": "127.0.0.1", "ident": null, "authuser": "frank",
            "datetime": "10/Oct/2000:13:55:36 -0700", "request": "GET /apache_pb.gif HTTP/1.0",
            "response": 200, "bytes": 2326});
        assert_eq!(access(line, false).unwrap(), expected);
        // Common ignores what follows, so combined lines convert too.
        let combined = format!("{line} \"http://www.example.com/start.html\" \"Mozilla/4.08\"");
        assert_eq!(access(&combined, false).unwrap(), expected);
        assert_eq!(
            access(r#"::1 - - [01/Jan/2024:00:00:00 +0000] "-" 408 -"#, false).unwrap(),
            json!({"host": "::1", "ident": null, "authuser": null,
                   "datetime": "01/Jan/2024:00:00:00 +0000", "request": null,
                   "response": 408, "bytes": null})
        );
        // Apache escapes quotes in the request as \"; they are kept as written.
        assert_eq!(
            access(r#"h - - [d] "GET /\"x\" HTTP/1.1" 400 0"#, false).unwrap()["request"],
            r#"GET /\"x\" HTTP/1.1"#
        );
    }

    #[test]
    fn combined_log() {
        let line = r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)""#;
        assert_eq!(
            access(line, true).unwrap(),
            json!({"host": "127.0.0.1", "ident": null, "authuser": "frank",
                   "datetime": "10/Oct/2000:13:55:36 -0700",
                   "request": "GET /apache_pb.gif HTTP/1.0", "response": 200, "bytes": 2326,
                   "referer": "http://www.example.com/start.html",
                   "agent": "Mozilla/4.08 [en] (Win98; I ;Nav)"})
        );
        let v = access(&format!(r#"{line} 1234 "extra""#), true).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 9);
        let v = access(r#"h - - [d] "GET / HTTP/1.1" 200 5 "-" "-""#, true).unwrap();
        assert_eq!((&v["referer"], &v["agent"]), (&Value::Null, &Value::Null));
    }

    #[test]
    fn access_mismatches() {
        let err = |line: &str, combined| access(line, combined).unwrap_err();
        assert_eq!(err("", false), "expected a client host at byte 0");
        assert_eq!(
            err("just some text", false),
            "expected a space after the user name at byte 14"
        );
        assert_eq!(
            err("just some more text", false),
            "expected '[' opening the date at byte 15"
        );
        assert_eq!(
            err(r#"h - - [d "GET / HTTP/1.1" 200 5"#, false),
            "expected ']' closing the date at byte 31"
        );
        assert_eq!(
            err(r#"h - - [d] GET / HTTP/1.1 200 5"#, false),
            "expected '\"' opening the request at byte 10"
        );
        assert_eq!(
            err(r#"h - - [d] "GET / HTTP/1.1 200 5"#, false),
            "expected a closing '\"' at byte 31"
        );
        assert_eq!(
            err(r#"h - - [d] "GET /" OK 5"#, false),
            "expected a status code (or '-') at byte 18"
        );
        assert_eq!(
            err(r#"h - - [d] "GET /" 200 5k"#, false),
            "expected a size in bytes (or '-') at byte 22"
        );
        assert_eq!(
            err(r#"h - - [d] "GET /" 200"#, false),
            "expected a space after the status code at byte 21"
        );
        assert_eq!(
            err(r#"h - - [d] "GET /" 200 5"#, true),
            "expected a space after the size at byte 23"
        );
        assert_eq!(
            err(r#"h - - [d] "GET /" 200 5 "r" "a"x"#, true),
            "expected a space or the end of the line after the user agent at byte 31"
        );
    }

    #[test]
    fn error_log() {
        assert_eq!(
            error("[Sun Dec 04 04:47:44 2005] [notice] workerEnv.init() ok /etc/httpd/conf/workers2.properties").unwrap(),
            json!({"timestamp": "Sun Dec 04 04:47:44 2005", "severity": "notice",
                   "message": "workerEnv.init() ok /etc/httpd/conf/workers2.properties"})
        );
        assert_eq!(
            error("[Wed Oct 11 14:32:52.123456 2000] [core:error] [pid 35708:tid 4328636416] [client 72.15.99.187:5000] AH00037: Symbolic link not allowed").unwrap(),
            json!({"timestamp": "Wed Oct 11 14:32:52.123456 2000", "module": "core",
                   "severity": "error", "processid": 35708, "threadid": 4_328_636_416_u64,
                   "client": "72.15.99.187:5000",
                   "message": "AH00037: Symbolic link not allowed"})
        );
        assert_eq!(
            error("[Mon Jan  1 00:00:00 2024] [mpm_event:notice] [pid 1] AH00489: resuming")
                .unwrap(),
            json!({"timestamp": "Mon Jan  1 00:00:00 2024", "module": "mpm_event",
                   "severity": "notice", "processid": 1, "message": "AH00489: resuming"})
        );
        assert_eq!(
            error("[Sun Dec 04 04:47:44 2005] [error]").unwrap()["message"],
            ""
        );
    }

    #[test]
    fn error_log_mismatches() {
        let err = |line: &str| error(line).unwrap_err();
        assert_eq!(err("Sun Dec 04"), "expected '[' opening the date at byte 0");
        assert_eq!(
            err("[Dec 04 04:47:44 2005] [error] x"),
            "expected a day name (Mon to Sun) at byte 1"
        );
        assert_eq!(
            err("[Sun Dec 04 04:47:44] [error] x"),
            "expected a space after the time at byte 20"
        );
        assert_eq!(
            err("[Sun Dec 04 04:47:44 2005] error x"),
            "expected '[' opening the level at byte 27"
        );
        assert_eq!(
            err("[Sun Dec 04 04:47:44 2005] [] x"),
            "expected a level such as 'error' or 'core:error' at byte 28"
        );
        assert_eq!(
            err("[Sun Dec 04 04:47:44 2005] [error]x"),
            "expected a space before the message at byte 34"
        );
        assert_eq!(
            err("[Sun Dec 04 04:47:44 2005] [error] [pid x] m"),
            "expected a process id at byte 40"
        );
    }
}
