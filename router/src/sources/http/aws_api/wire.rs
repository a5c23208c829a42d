//! The two encodings of the AWS API, with no I/O: a request body (JSON 1.1 or CBOR 1.1) ->
//! [`Input`], and [`Out`], which writes an answer in either encoding through one set of calls.
//!
//! JSON carries record data as base64 text; CBOR as byte strings (what the AWS SDK for Java sends
//! by default). Both are read into the same [`Input`], borrowing from the body where they can, so
//! the validation and decoding that follow are written once. Unknown members are ignored, as the
//! services do; a member of the wrong type is a `SerializationException`.

use std::borrow::Cow;

use serde::Deserialize;

use super::ApiError;

/// The body encoding of a request, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// `application/x-amz-json-1.1`.
    Json,
    /// `application/x-amz-cbor-1.1`.
    Cbor,
}

/// The JSON content type.
pub const AMZ_JSON: &str = "application/x-amz-json-1.1";
/// The CBOR content type.
pub const AMZ_CBOR: &str = "application/x-amz-cbor-1.1";

impl Wire {
    /// The encoding a `Content-Type` names (parameters such as `; charset=utf-8` ignored), or
    /// `None` for any other type.
    pub fn from_content_type(ct: Option<&str>) -> Option<Wire> {
        let t = ct?.split(';').next()?.trim();
        if t.eq_ignore_ascii_case(AMZ_JSON) {
            Some(Wire::Json)
        } else if t.eq_ignore_ascii_case(AMZ_CBOR) {
            Some(Wire::Cbor)
        } else {
            None
        }
    }

    /// The `Content-Type` of answers in this encoding.
    pub fn content_type(self) -> &'static str {
        match self {
            Wire::Json => AMZ_JSON,
            Wire::Cbor => AMZ_CBOR,
        }
    }

    /// Reads a request body.
    pub fn parse(self, body: &[u8]) -> Result<Input<'_>, ApiError> {
        match self {
            Wire::Json => {
                // An empty body is an empty request, as the services read it.
                if body.iter().all(u8::is_ascii_whitespace) {
                    return Ok(Input::default());
                }
                if let Some(input) = super::json_scan::parse_plain(body) {
                    return Ok(input);
                }
                serde_json::from_slice(body).map_err(|e| {
                    ApiError::serialization(format!("the JSON body cannot be read: {e}"))
                })
            }
            Wire::Cbor => {
                if body.is_empty() {
                    return Ok(Input::default());
                }
                parse_cbor(body)
            }
        }
    }
}

/// Record data as sent: base64 text (JSON) or raw bytes (CBOR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Blob<'a> {
    /// Base64 text, still to be decoded.
    Base64(Cow<'a, str>),
    /// The bytes themselves.
    Raw(Cow<'a, [u8]>),
}

impl<'de: 'a, 'a> Deserialize<'de> for Blob<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Blob<'a>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Blob<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a base64 string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Blob<'de>, E> {
                Ok(Blob::Base64(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Blob<'de>, E> {
                Ok(Blob::Base64(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Blob<'de>, E> {
                Ok(Blob::Base64(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// One record of a call, as sent (Kinesis entries have keys; Firehose records only data).
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Entry<'a> {
    /// `Data`.
    #[serde(borrow, default)]
    pub data: Option<Blob<'a>>,
    /// `PartitionKey`.
    #[serde(borrow, default)]
    pub partition_key: Option<Cow<'a, str>>,
    /// `ExplicitHashKey`.
    #[serde(borrow, default)]
    pub explicit_hash_key: Option<Cow<'a, str>>,
}

/// Most entries of a `Records` list that are kept: the services take at most 500, and a body of
/// many tiny entries (`{}` is two bytes) must not become a list many times its size.
pub const ENTRIES_KEPT: usize = 500;

/// A `Records` list: its first [`ENTRIES_KEPT`] entries, and how many it had.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Entries<'a> {
    /// The entries kept.
    pub list: Vec<Entry<'a>>,
    /// How many the list had (the rest were read and dropped).
    pub total: usize,
}

impl<'a> Entries<'a> {
    fn push(&mut self, e: Entry<'a>) {
        if self.list.len() < ENTRIES_KEPT {
            self.list.push(e);
        }
        self.total += 1;
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Entries<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Entries<'a>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Entries<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of records")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Entries<'de>, A::Error> {
                let mut out = Entries::default();
                while out.list.len() < ENTRIES_KEPT {
                    match seq.next_element::<Entry<'de>>()? {
                        Some(e) => out.push(e),
                        None => return Ok(out),
                    }
                }
                // Past the limit: read the rest without keeping it.
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    out.total += 1;
                }
                Ok(out)
            }
        }
        d.deserialize_seq(V)
    }
}

/// Every member a served call may carry; each call reads the ones it has.
#[derive(Debug, Default, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Input<'a> {
    /// `StreamName` (Kinesis).
    #[serde(borrow, default)]
    pub stream_name: Option<Cow<'a, str>>,
    /// `StreamARN` (Kinesis).
    #[serde(rename = "StreamARN", borrow, default)]
    pub stream_arn: Option<Cow<'a, str>>,
    /// `DeliveryStreamName` (Firehose).
    #[serde(borrow, default)]
    pub delivery_stream_name: Option<Cow<'a, str>>,
    /// `Records` (Kinesis PutRecords, Firehose PutRecordBatch).
    #[serde(borrow, default)]
    pub records: Option<Entries<'a>>,
    /// `Record` (Firehose PutRecord).
    #[serde(borrow, default)]
    pub record: Option<Entry<'a>>,
    /// `Data` (Kinesis PutRecord).
    #[serde(borrow, default)]
    pub data: Option<Blob<'a>>,
    /// `PartitionKey` (Kinesis PutRecord).
    #[serde(borrow, default)]
    pub partition_key: Option<Cow<'a, str>>,
    /// `ExplicitHashKey` (Kinesis PutRecord).
    #[serde(borrow, default)]
    pub explicit_hash_key: Option<Cow<'a, str>>,
    /// `NextToken` (ListShards).
    #[serde(borrow, default)]
    pub next_token: Option<Cow<'a, str>>,
    /// `MaxResults` (ListShards).
    #[serde(default)]
    pub max_results: Option<i64>,
    /// `Limit` (DescribeStream).
    #[serde(default)]
    pub limit: Option<i64>,
    /// `ExclusiveStartShardId` (DescribeStream, ListShards).
    #[serde(borrow, default)]
    pub exclusive_start_shard_id: Option<Cow<'a, str>>,
}

impl<'a> Input<'a> {
    /// Kinesis PutRecord's own record.
    pub fn own_entry(&mut self) -> Entry<'a> {
        Entry {
            data: self.data.take(),
            partition_key: self.partition_key.take(),
            explicit_hash_key: self.explicit_hash_key.take(),
        }
    }
}

fn cbor_error(e: &minicbor::decode::Error) -> ApiError {
    ApiError::serialization(format!("the CBOR body cannot be read: {e}"))
}

/// A CBOR text string, definite or in chunks, or `None` for null.
fn cbor_text<'b>(d: &mut minicbor::Decoder<'b>) -> Result<Option<Cow<'b, str>>, ApiError> {
    use minicbor::data::Type;
    match d.datatype().map_err(|e| cbor_error(&e))? {
        Type::Null | Type::Undefined => {
            d.skip().map_err(|e| cbor_error(&e))?;
            Ok(None)
        }
        Type::String => Ok(Some(Cow::Borrowed(d.str().map_err(|e| cbor_error(&e))?))),
        Type::StringIndef => {
            let mut s = String::new();
            for part in d.str_iter().map_err(|e| cbor_error(&e))? {
                s.push_str(part.map_err(|e| cbor_error(&e))?);
            }
            Ok(Some(Cow::Owned(s)))
        }
        other => Err(ApiError::serialization(format!(
            "the CBOR body has a {other} at byte {} where a text string was expected",
            d.position()
        ))),
    }
}

/// A CBOR byte string, definite or in chunks, or `None` for null.
fn cbor_blob<'b>(d: &mut minicbor::Decoder<'b>) -> Result<Option<Blob<'b>>, ApiError> {
    use minicbor::data::Type;
    match d.datatype().map_err(|e| cbor_error(&e))? {
        Type::Null | Type::Undefined => {
            d.skip().map_err(|e| cbor_error(&e))?;
            Ok(None)
        }
        Type::Bytes => Ok(Some(Blob::Raw(Cow::Borrowed(
            d.bytes().map_err(|e| cbor_error(&e))?,
        )))),
        Type::BytesIndef => {
            let mut v = Vec::new();
            for part in d.bytes_iter().map_err(|e| cbor_error(&e))? {
                v.extend_from_slice(part.map_err(|e| cbor_error(&e))?);
            }
            Ok(Some(Blob::Raw(Cow::Owned(v))))
        }
        other => Err(ApiError::serialization(format!(
            "the CBOR body has a {other} at byte {} where a byte string (Data) was expected",
            d.position()
        ))),
    }
}

/// A CBOR integer, or `None` for null.
fn cbor_int(d: &mut minicbor::Decoder<'_>) -> Result<Option<i64>, ApiError> {
    use minicbor::data::Type;
    match d.datatype().map_err(|e| cbor_error(&e))? {
        Type::Null | Type::Undefined => {
            d.skip().map_err(|e| cbor_error(&e))?;
            Ok(None)
        }
        _ => d
            .i64()
            .map(Some)
            .map_err(|e| ApiError::serialization(format!("the CBOR body: {e}"))),
    }
}

/// Calls `member` for each key of the map at the decoder's position (definite or indefinite);
/// `member` must consume the value.
fn cbor_map<'b>(
    d: &mut minicbor::Decoder<'b>,
    mut member: impl FnMut(&str, &mut minicbor::Decoder<'b>) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    use minicbor::data::Type;
    let len = match d.datatype().map_err(|e| cbor_error(&e))? {
        Type::Map | Type::MapIndef => d.map().map_err(|e| cbor_error(&e))?,
        other => {
            return Err(ApiError::serialization(format!(
                "the CBOR body has a {other} at byte {} where a map was expected",
                d.position()
            )));
        }
    };
    let mut i = 0u64;
    loop {
        match len {
            Some(n) if i >= n => break,
            None if d.datatype().map_err(|e| cbor_error(&e))? == Type::Break => {
                // The break byte that ends an indefinite-length item.
                d.set_position(d.position() + 1);
                break;
            }
            _ => {}
        }
        let key = cbor_text(d)?.unwrap_or_default();
        member(key.as_ref(), d)?;
        i += 1;
    }
    Ok(())
}

/// Calls `item` for each element of the array at the decoder's position.
fn cbor_array<'b>(
    d: &mut minicbor::Decoder<'b>,
    mut item: impl FnMut(&mut minicbor::Decoder<'b>) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    use minicbor::data::Type;
    let len = match d.datatype().map_err(|e| cbor_error(&e))? {
        Type::Array | Type::ArrayIndef => d.array().map_err(|e| cbor_error(&e))?,
        other => {
            return Err(ApiError::serialization(format!(
                "the CBOR body has a {other} at byte {} where an array was expected",
                d.position()
            )));
        }
    };
    let mut i = 0u64;
    loop {
        match len {
            Some(n) if i >= n => break,
            None if d.datatype().map_err(|e| cbor_error(&e))? == Type::Break => {
                // The break byte that ends an indefinite-length item.
                d.set_position(d.position() + 1);
                break;
            }
            _ => {}
        }
        item(d)?;
        i += 1;
    }
    Ok(())
}

fn cbor_entry<'b>(d: &mut minicbor::Decoder<'b>) -> Result<Option<Entry<'b>>, ApiError> {
    if d.datatype().map_err(|e| cbor_error(&e))? == minicbor::data::Type::Null {
        d.skip().map_err(|e| cbor_error(&e))?;
        return Ok(None);
    }
    let mut e = Entry::default();
    cbor_map(d, |key, d| {
        match key {
            "Data" => e.data = cbor_blob(d)?,
            "PartitionKey" => e.partition_key = cbor_text(d)?,
            "ExplicitHashKey" => e.explicit_hash_key = cbor_text(d)?,
            _ => d.skip().map_err(|e| cbor_error(&e))?,
        }
        Ok(())
    })?;
    Ok(Some(e))
}

fn parse_cbor(body: &[u8]) -> Result<Input<'_>, ApiError> {
    let mut d = minicbor::Decoder::new(body);
    let mut input = Input::default();
    cbor_map(&mut d, |key, d| {
        match key {
            "StreamName" => input.stream_name = cbor_text(d)?,
            "StreamARN" => input.stream_arn = cbor_text(d)?,
            "DeliveryStreamName" => input.delivery_stream_name = cbor_text(d)?,
            "PartitionKey" => input.partition_key = cbor_text(d)?,
            "ExplicitHashKey" => input.explicit_hash_key = cbor_text(d)?,
            "NextToken" => input.next_token = cbor_text(d)?,
            "ExclusiveStartShardId" => input.exclusive_start_shard_id = cbor_text(d)?,
            "Data" => input.data = cbor_blob(d)?,
            "MaxResults" => input.max_results = cbor_int(d)?,
            "Limit" => input.limit = cbor_int(d)?,
            "Record" => input.record = cbor_entry(d)?,
            "Records" => {
                if d.datatype().map_err(|e| cbor_error(&e))? == minicbor::data::Type::Null {
                    d.skip().map_err(|e| cbor_error(&e))?;
                } else {
                    let mut list = Entries::default();
                    cbor_array(d, |d| {
                        if list.total < ENTRIES_KEPT {
                            list.push(cbor_entry(d)?.unwrap_or_default());
                        } else {
                            d.skip().map_err(|e| cbor_error(&e))?;
                            list.total += 1;
                        }
                        Ok(())
                    })?;
                    input.records = Some(list);
                }
            }
            _ => d.skip().map_err(|e| cbor_error(&e))?,
        }
        Ok(())
    })?;
    if d.position() != body.len() {
        return Err(ApiError::serialization(format!(
            "the CBOR body has {} bytes after its map",
            body.len() - d.position()
        )));
    }
    Ok(input)
}

/// An answer being written, in JSON or CBOR, through the same calls: maps and arrays are
/// opened with their length (CBOR writes it; JSON needs it only to be closed with `end`).
pub enum Out {
    /// JSON text (as bytes: the values it is made of are written without checking them again)
    /// and, per open map or array, whether the next item is its first.
    Json(Vec<u8>, Vec<bool>, bool),
    /// CBOR bytes.
    Cbor(minicbor::Encoder<Vec<u8>>),
}

impl Out {
    /// An empty answer in `wire`'s encoding.
    pub fn new(wire: Wire) -> Out {
        Out::with_capacity(wire, 256)
    }

    /// An empty answer in `wire`'s encoding with room for `bytes` bytes.
    pub fn with_capacity(wire: Wire, bytes: usize) -> Out {
        match wire {
            Wire::Json => Out::Json(Vec::with_capacity(bytes), Vec::new(), false),
            Wire::Cbor => Out::Cbor(minicbor::Encoder::new(Vec::with_capacity(bytes))),
        }
    }

    /// The bytes written.
    pub fn finish(self) -> Vec<u8> {
        match self {
            Out::Json(s, _, _) => s,
            Out::Cbor(e) => e.into_writer(),
        }
    }

    /// Before a value in JSON: a comma unless it is the first item, or the value of a key.
    fn json_item(s: &mut Vec<u8>, open: &mut [bool], after_key: &mut bool) {
        if std::mem::take(after_key) {
            return;
        }
        if let Some(first) = open.last_mut() {
            if !*first {
                s.push(b',');
            }
            *first = false;
        }
    }

    /// Opens a map of `n` members.
    pub fn map(&mut self, n: usize) -> &mut Out {
        match self {
            Out::Json(s, open, k) => {
                Out::json_item(s, open, k);
                s.push(b'{');
                open.push(true);
            }
            Out::Cbor(e) => {
                let _ = e.map(n as u64);
            }
        }
        self
    }

    /// Opens an array of `n` items.
    pub fn array(&mut self, n: usize) -> &mut Out {
        match self {
            Out::Json(s, open, k) => {
                Out::json_item(s, open, k);
                s.push(b'[');
                open.push(true);
            }
            Out::Cbor(e) => {
                let _ = e.array(n as u64);
            }
        }
        self
    }

    /// Closes the innermost map or array.
    pub fn end(&mut self, map: bool) -> &mut Out {
        if let Out::Json(s, open, _) = self {
            open.pop();
            s.push(if map { b'}' } else { b']' });
        }
        self
    }

    /// A member's key.
    pub fn key(&mut self, key: &str) -> &mut Out {
        match self {
            Out::Json(s, open, k) => {
                Out::json_item(s, open, k);
                json_string(s, key);
                s.push(b':');
                *k = true;
            }
            Out::Cbor(e) => {
                let _ = e.str(key);
            }
        }
        self
    }

    /// A text value.
    pub fn str(&mut self, v: &str) -> &mut Out {
        match self {
            Out::Json(s, open, k) => {
                Out::json_item(s, open, k);
                json_string(s, v);
            }
            Out::Cbor(e) => {
                let _ = e.str(v);
            }
        }
        self
    }

    /// A text value of ASCII letters, digits and `-` only (sequence numbers and shard ids the
    /// endpoint makes), given as bytes: JSON takes them as they are, unchecked and unescaped.
    pub fn plain(&mut self, v: &[u8]) -> &mut Out {
        debug_assert!(v.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-'));
        match self {
            Out::Json(s, open, k) => {
                Out::json_item(s, open, k);
                s.push(b'"');
                s.extend_from_slice(v);
                s.push(b'"');
            }
            Out::Cbor(e) => {
                let _ = e.str(std::str::from_utf8(v).unwrap_or_default());
            }
        }
        self
    }

    /// An unsigned integer value.
    pub fn u64(&mut self, v: u64) -> &mut Out {
        match self {
            Out::Json(s, open, k) => {
                use std::io::Write as _;
                Out::json_item(s, open, k);
                let _ = write!(s, "{v}");
            }
            Out::Cbor(e) => {
                let _ = e.u64(v);
            }
        }
        self
    }

    /// A boolean value.
    pub fn bool(&mut self, v: bool) -> &mut Out {
        match self {
            Out::Json(s, open, k) => {
                Out::json_item(s, open, k);
                s.extend_from_slice(if v { &b"true"[..] } else { &b"false"[..] });
            }
            Out::Cbor(e) => {
                let _ = e.bool(v);
            }
        }
        self
    }

    /// A timestamp: epoch seconds in JSON (as the services write them), epoch milliseconds in
    /// CBOR (what the AWS SDK for Java reads and writes there).
    pub fn timestamp(&mut self, unix_millis: u64) -> &mut Out {
        match self {
            Out::Json(s, open, k) => {
                use std::io::Write as _;
                Out::json_item(s, open, k);
                let _ = write!(s, "{}.{:03}", unix_millis / 1000, unix_millis % 1000);
            }
            Out::Cbor(e) => {
                let _ = e.u64(unix_millis);
            }
        }
        self
    }

    /// `"key": "value"`.
    pub fn kv(&mut self, key: &str, v: &str) -> &mut Out {
        self.key(key).str(v)
    }
}

/// Appends `v` as a JSON string.
fn json_string(s: &mut Vec<u8>, v: &str) {
    let plain = v
        .bytes()
        .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f);
    if plain {
        s.push(b'"');
        s.extend_from_slice(v.as_bytes());
        s.push(b'"');
    } else {
        s.extend_from_slice(serde_json::Value::from(v).to_string().as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cbor(f: impl FnOnce(&mut minicbor::Encoder<Vec<u8>>)) -> Vec<u8> {
        let mut e = minicbor::Encoder::new(Vec::new());
        f(&mut e);
        e.into_writer()
    }

    #[test]
    fn content_types() {
        assert_eq!(Wire::from_content_type(Some(AMZ_JSON)), Some(Wire::Json));
        assert_eq!(
            Wire::from_content_type(Some("application/X-AMZ-CBOR-1.1; charset=utf-8")),
            Some(Wire::Cbor)
        );
        assert_eq!(Wire::from_content_type(Some("application/json")), None);
        assert_eq!(Wire::from_content_type(None), None);
    }

    #[test]
    fn json_and_cbor_read_into_the_same_input() {
        let json = br#"{"StreamName":"s","Records":[{"Data":"eA==","PartitionKey":"k","ExplicitHashKey":"7"}],"Other":{"x":[1,2]}}"#;
        let j = Wire::Json.parse(json).unwrap();
        let c = cbor(|e| {
            e.map(3).unwrap();
            e.str("StreamName").unwrap().str("s").unwrap();
            e.str("Other").unwrap().begin_map().unwrap();
            e.str("x")
                .unwrap()
                .array(2)
                .unwrap()
                .u8(1)
                .unwrap()
                .u8(2)
                .unwrap();
            e.end().unwrap();
            e.str("Records")
                .unwrap()
                .array(1)
                .unwrap()
                .begin_map()
                .unwrap();
            e.str("Data").unwrap().bytes(b"x").unwrap();
            e.str("PartitionKey").unwrap().str("k").unwrap();
            e.str("ExplicitHashKey").unwrap().str("7").unwrap();
            e.end().unwrap();
        });
        let c = Wire::Cbor.parse(&c).unwrap();
        assert_eq!(j.stream_name, c.stream_name);
        let (je, ce) = (
            &j.records.as_ref().unwrap().list[0],
            &c.records.as_ref().unwrap().list[0],
        );
        assert_eq!(je.data, Some(Blob::Base64("eA==".into())));
        assert_eq!(ce.data, Some(Blob::Raw(Cow::Borrowed(b"x"))));
        assert_eq!(
            (&je.partition_key, &je.explicit_hash_key),
            (&ce.partition_key, &ce.explicit_hash_key)
        );
    }

    #[test]
    fn cbor_chunks_nulls_and_ints() {
        let c = cbor(|e| {
            e.begin_map().unwrap();
            e.str("Data").unwrap().begin_bytes().unwrap();
            e.bytes(b"ab").unwrap().bytes(b"c").unwrap().end().unwrap();
            e.str("PartitionKey").unwrap().begin_str().unwrap();
            e.str("p").unwrap().str("k").unwrap().end().unwrap();
            e.str("ExplicitHashKey").unwrap().null().unwrap();
            e.str("MaxResults").unwrap().u16(1000).unwrap();
            e.end().unwrap();
        });
        let mut i = Wire::Cbor.parse(&c).unwrap();
        assert_eq!(i.max_results, Some(1000));
        let e = i.own_entry();
        assert_eq!(e.data, Some(Blob::Raw(Cow::Owned(b"abc".to_vec()))));
        assert_eq!(e.partition_key.as_deref(), Some("pk"));
        assert_eq!(e.explicit_hash_key, None);
    }

    #[test]
    fn bad_bodies_are_serialization_errors() {
        let wrong_type = cbor(|e| {
            e.map(1).unwrap().str("Data").unwrap().str("eA==").unwrap();
        });
        let trailing = {
            let mut v = cbor(|e| {
                e.map(0).unwrap();
            });
            v.push(0);
            v
        };
        for body in [&wrong_type[..], &trailing, &[0x82, 0x01], &[0xa1, 0x61]] {
            let e = Wire::Cbor.parse(body).unwrap_err();
            assert_eq!(e.kind, "SerializationException", "{body:?}: {e}");
        }
        assert_eq!(
            Wire::Json
                .parse(br#"{"PartitionKey": 5}"#)
                .unwrap_err()
                .kind,
            "SerializationException"
        );
        assert_eq!(Wire::Json.parse(b" ").unwrap(), Input::default());
    }

    #[test]
    fn answers_in_both_encodings() {
        let write = |wire| {
            let mut o = Out::new(wire);
            o.map(3).kv("A", "x\"y").key("B").array(2);
            o.u64(1).bool(true).end(false);
            o.key("C")
                .map(1)
                .key("T")
                .timestamp(1_500)
                .end(true)
                .end(true);
            o.finish()
        };
        let j: serde_json::Value = serde_json::from_slice(&write(Wire::Json)).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"A": "x\"y", "B": [1, true], "C": {"T": 1.5}})
        );
        let c = write(Wire::Cbor);
        let mut d = minicbor::Decoder::new(&c);
        assert_eq!(d.map().unwrap(), Some(3));
        assert_eq!((d.str().unwrap(), d.str().unwrap()), ("A", "x\"y"));
        assert_eq!((d.str().unwrap(), d.array().unwrap()), ("B", Some(2)));
        assert_eq!((d.u64().unwrap(), d.bool().unwrap()), (1, true));
        assert_eq!((d.str().unwrap(), d.map().unwrap()), ("C", Some(1)));
        assert_eq!((d.str().unwrap(), d.u64().unwrap()), ("T", 1500));
        assert_eq!(d.position(), c.len());
    }

    #[test]
    fn a_list_of_many_tiny_entries_keeps_only_what_a_call_may_have() {
        let n = 100_000;
        let json = format!("{{\"Records\":[{}{{}}]}}", "{},".repeat(n - 1));
        let i = Wire::Json.parse(json.as_bytes()).unwrap();
        let r = i.records.unwrap();
        assert_eq!((r.list.len(), r.total), (ENTRIES_KEPT, n));
        let c = cbor(|e| {
            e.map(1)
                .unwrap()
                .str("Records")
                .unwrap()
                .array(n as u64)
                .unwrap();
            for _ in 0..n {
                e.map(1).unwrap().str("Data").unwrap().bytes(b"x").unwrap();
            }
        });
        let r = Wire::Cbor.parse(&c).unwrap().records.unwrap();
        assert_eq!((r.list.len(), r.total), (ENTRIES_KEPT, n));
    }
}
