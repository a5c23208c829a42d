//! Delimiter-separated lines, as the Kinesis Agent's CSVTOJSON reads them, plus RFC 4180
//! quoting.

use crate::cursor::Mismatch;
use crate::json::{Object, push_escaped};

/// A CSV format: the names of the columns, by position, and the delimiter.
#[derive(Debug, Clone)]
pub(crate) struct Csv {
    /// `"name":` per column, escaped.
    keys: Box<[Box<[u8]>]>,
    /// Not empty, no `"`.
    delimiter: Box<[u8]>,
}

impl Csv {
    /// `names` must not be empty; `delimiter` must not be empty nor hold a `"`.
    pub(crate) fn new(names: &[String], delimiter: &str) -> Csv {
        debug_assert!(!names.is_empty() && !delimiter.is_empty() && !delimiter.contains('"'));
        Csv {
            keys: names
                .iter()
                .map(|n| crate::json::member_prefix(n))
                .collect(),
            delimiter: delimiter.as_bytes().into(),
        }
    }

    /// Converts one line into a JSON object appended to `out`: column `i` under name `i`, as a
    /// string. Columns beyond the names are ignored (and not checked); names beyond the
    /// columns are left out.
    ///
    /// A column that starts with `"` is quoted: it ends at the next `"` not doubled, `""`
    /// inside stands for `"`, and the delimiter or the end of the line must follow.
    pub(crate) fn write(&self, line: &[u8], out: &mut Vec<u8>) -> Result<(), Mismatch> {
        if line.is_empty() {
            return Err(Mismatch {
                at: 0,
                expected: "a column (the line is empty)",
            });
        }
        let delimiter = &self.delimiter[..];
        let mut obj = Object::begin(out);
        let mut pos = 0;
        for key in &self.keys {
            let rest = &line[pos..];
            obj.raw_key(key);
            let out = obj.out();
            out.push(b'"');
            let len = if let Some(body) = rest.strip_prefix(b"\"") {
                let mut i = 0;
                let mut from = 0;
                loop {
                    let Some(q) = body[i..].iter().position(|&b| b == b'"').map(|q| q + i) else {
                        return Err(Mismatch {
                            at: line.len(),
                            expected: "a closing '\"'",
                        });
                    };
                    push_escaped(out, &body[from..q]);
                    if body.get(q + 1) == Some(&b'"') {
                        out.extend_from_slice(b"\\\"");
                        i = q + 2;
                        from = i;
                    } else {
                        let after = &body[q + 1..];
                        if !after.is_empty() && !after.starts_with(delimiter) {
                            return Err(Mismatch {
                                at: pos + 1 + q + 1,
                                expected: "the delimiter or the end of the line after a closing '\"'",
                            });
                        }
                        break q + 2;
                    }
                }
            } else {
                let len = find(rest, delimiter).unwrap_or(rest.len());
                push_escaped(out, &rest[..len]);
                len
            };
            out.push(b'"');
            pos += len;
            if line[pos..].starts_with(delimiter) {
                pos += delimiter.len();
            } else {
                break;
            }
        }
        obj.end();
        Ok(())
    }
}

/// The offset of the first `needle` (not empty) in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    match needle {
        [b] => haystack.iter().position(|x| x == b),
        _ => haystack.windows(needle.len()).position(|w| w == needle),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn convert(names: &[&str], delimiter: &str, line: &str) -> Result<Value, String> {
        let names: Vec<String> = names.iter().map(|&n| n.to_owned()).collect();
        let csv = Csv::new(&names, delimiter);
        let mut out = Vec::new();
        csv.write(line.as_bytes(), &mut out)
            .map_err(|m| m.to_string())?;
        Ok(serde_json::from_slice(&out).unwrap())
    }

    #[test]
    fn columns_by_position() {
        let names = ["a", "b", "c"];
        assert_eq!(
            convert(&names, ",", "1,2.5,x y").unwrap(),
            json!({"a": "1", "b": "2.5", "c": "x y"})
        );
        // Spaces are kept, as the Kinesis Agent keeps them.
        assert_eq!(
            convert(&names, ",", "v1, v2").unwrap(),
            json!({"a": "v1", "b": " v2"})
        );
        assert_eq!(
            convert(&names, ",", "1,2,3,4,5").unwrap(),
            json!({"a": "1", "b": "2", "c": "3"})
        );
        assert_eq!(convert(&names, ",", "1").unwrap(), json!({"a": "1"}));
        assert_eq!(
            convert(&names, ",", "1,").unwrap(),
            json!({"a": "1", "b": ""})
        );
        assert_eq!(
            convert(&names, ",", ",,").unwrap(),
            json!({"a": "", "b": "", "c": ""})
        );
        assert_eq!(
            convert(&names, "\t", "a,b\tc\\d\t\u{1}").unwrap(),
            json!({"a": "a,b", "b": "c\\d", "c": "\u{1}"})
        );
        assert_eq!(
            convert(&names, "||", "x|y||z||").unwrap(),
            json!({"a": "x|y", "b": "z", "c": ""})
        );
        assert_eq!(convert(&["k"], ";", "é;x").unwrap(), json!({"k": "é"}));
    }

    #[test]
    fn quoted_columns() {
        let names = ["a", "b", "c"];
        assert_eq!(
            convert(&names, ",", r#""x, y","say ""hi""","""""#).unwrap(),
            json!({"a": "x, y", "b": "say \"hi\"", "c": "\""})
        );
        assert_eq!(
            convert(&names, ",", r#""",1"#).unwrap(),
            json!({"a": "", "b": "1"})
        );
        assert_eq!(
            convert(&names, ",", r#""a""b""#).unwrap(),
            json!({"a": "a\"b"})
        );
        // A quote inside an unquoted column is just a character.
        assert_eq!(
            convert(&names, ",", r#"a"b,c"#).unwrap(),
            json!({"a": "a\"b", "b": "c"})
        );
        // Columns past the names are not looked at.
        assert_eq!(
            convert(&["a"], ",", r#"1,"open"#).unwrap(),
            json!({"a": "1"})
        );
    }

    #[test]
    fn mismatches() {
        let names = ["a", "b"];
        assert_eq!(
            convert(&names, ",", "").unwrap_err(),
            "expected a column (the line is empty) at byte 0"
        );
        assert_eq!(
            convert(&names, ",", r#"1,"open"#).unwrap_err(),
            "expected a closing '\"' at byte 7"
        );
        assert_eq!(
            convert(&names, ",", r#""a"b,c"#).unwrap_err(),
            "expected the delimiter or the end of the line after a closing '\"' at byte 3"
        );
        assert_eq!(
            convert(&names, ",", r#"1,"a" ,c"#).unwrap_err(),
            "expected the delimiter or the end of the line after a closing '\"' at byte 5"
        );
    }
}
