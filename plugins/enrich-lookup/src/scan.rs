//! Finding the closing brace of a record's top-level object, without parsing the record.

/// Deepest nesting of objects and arrays accepted inside the top-level object.
const DEPTH_MAX: u32 = 128;

const MISMATCHED: &str = "mismatched brackets in the JSON object";

/// Where a record's top-level object closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close {
    /// Offset of the closing `}`.
    pub offset: usize,
    /// True when the object has no members (`{}`, `{ }`).
    pub empty: bool,
}

/// Finds the `}` that closes the object starting `doc` (after whitespace and an optional UTF-8
/// BOM). Strings are skipped (escapes honoured) and brackets matched; only whitespace may
/// follow the object. The members are not validated beyond that, except that the last byte
/// before the `}` may not be `,` or `:`. Errors are messages for the record's dead letter.
pub fn root_object_close(doc: &[u8]) -> Result<Close, &'static str> {
    let bom = if doc.starts_with(b"\xEF\xBB\xBF") {
        3
    } else {
        0
    };
    let start = skip_ws(doc, bom);
    if doc.get(start) != Some(&b'{') {
        return Err("not a JSON object");
    }
    // Open brackets inside the root object, innermost in bit 0: 1 for `{`, 0 for `[`.
    let mut stack: u128 = 0;
    let mut depth: u32 = 0;
    let mut i = start + 1;
    let close = loop {
        let Some(&b) = doc.get(i) else {
            return Err("unterminated JSON object");
        };
        match b {
            b'"' => {
                i = string_end(doc, i + 1).ok_or("unterminated string in the JSON object")?;
                continue;
            }
            b'{' | b'[' => {
                if depth == DEPTH_MAX {
                    return Err("the JSON object is nested deeper than 128 levels");
                }
                stack = (stack << 1) | u128::from(b == b'{');
                depth += 1;
            }
            b'}' | b']' => {
                let is_object = b == b'}';
                if depth == 0 {
                    if is_object {
                        break i;
                    }
                    return Err(MISMATCHED);
                }
                if (stack & 1 == 1) != is_object {
                    return Err(MISMATCHED);
                }
                stack >>= 1;
                depth -= 1;
            }
            _ => {}
        }
        i += 1;
    };
    // The last byte before the `}` that is not whitespace.
    let mut last = close;
    while last > start && doc.get(last - 1).is_some_and(|&b| is_ws(b)) {
        last -= 1;
    }
    let last = last - 1;
    match doc.get(last) {
        Some(b',') => return Err("invalid JSON object: ',' before the closing brace"),
        Some(b':') => return Err("invalid JSON object: ':' before the closing brace"),
        _ => {}
    }
    if skip_ws(doc, close + 1) != doc.len() {
        return Err("unexpected bytes after the JSON object");
    }
    Ok(Close {
        offset: close,
        empty: last == start,
    })
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn skip_ws(doc: &[u8], mut i: usize) -> usize {
    while doc.get(i).is_some_and(|&b| is_ws(b)) {
        i += 1;
    }
    i
}

/// With `i` just after an opening quote: the offset just after the closing quote.
fn string_end(doc: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let rest = doc.get(i..)?;
        let at = i + memchr::memchr2(b'"', b'\\', rest)?;
        if doc.get(at) == Some(&b'"') {
            return Some(at + 1);
        }
        // A backslash: skip it and the byte it escapes.
        i = at + 2;
    }
}

#[cfg(test)]
mod tests {
    use super::{Close, root_object_close};

    fn close(doc: &str) -> Result<Close, &'static str> {
        root_object_close(doc.as_bytes())
    }

    #[test]
    fn finds_the_closing_brace() {
        assert_eq!(
            close("{}"),
            Ok(Close {
                offset: 1,
                empty: true
            })
        );
        assert_eq!(
            close(" { \n } \n"),
            Ok(Close {
                offset: 5,
                empty: true
            })
        );
        assert_eq!(
            close("\u{feff}{}"),
            Ok(Close {
                offset: 4,
                empty: true
            })
        );
        assert_eq!(
            close(r#"{"a":1}"#),
            Ok(Close {
                offset: 6,
                empty: false
            })
        );
        assert_eq!(
            close(r#"{"a":"}"}"#),
            Ok(Close {
                offset: 8,
                empty: false
            })
        );
        assert_eq!(
            close(r#"{"a\"}":"\\"}"#),
            Ok(Close {
                offset: 12,
                empty: false
            })
        );
        assert_eq!(
            close(r#"{"a":[{},[]],"b":{"c":[]} }"#),
            Ok(Close {
                offset: 26,
                empty: false
            })
        );
    }

    #[test]
    fn rejects_broken_objects() {
        assert_eq!(close(""), Err("not a JSON object"));
        assert_eq!(close("[]"), Err("not a JSON object"));
        assert_eq!(close("{"), Err("unterminated JSON object"));
        assert_eq!(
            close(r#"{"a":"\"}"#),
            Err("unterminated string in the JSON object")
        );
        assert_eq!(
            close(r#"{"a":"\"#),
            Err("unterminated string in the JSON object")
        );
        assert_eq!(
            close(r#"{"a":{]}"#),
            Err("mismatched brackets in the JSON object")
        );
        assert_eq!(
            close(r#"{"a":1]"#),
            Err("mismatched brackets in the JSON object")
        );
        assert_eq!(close("{} x"), Err("unexpected bytes after the JSON object"));
        let ok = format!("{{\"a\":{}{}}}", "[".repeat(128), "]".repeat(128));
        assert!(close(&ok).is_ok());
        let deep = format!("{{\"a\":{}{}}}", "{\"b\":".repeat(129), "}".repeat(129));
        assert_eq!(
            close(&deep),
            Err("the JSON object is nested deeper than 128 levels")
        );
    }

    #[test]
    fn never_panics_on_prefixes() {
        let doc = r#" {"a":[1,{"b":"x\"y}"}],"c":"\u00e9\\","d":{}} "#;
        for end in 0..=doc.len() {
            let _ = root_object_close(&doc.as_bytes()[..end]);
        }
        assert!(close(doc).is_ok());
    }
}
