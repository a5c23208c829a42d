//! The Kinesis partitioner: each record's partition key and, optionally, its explicit hash key.
//!
//! Kinesis places a record on the shard whose range holds its 128-bit *hash key*: the MD5 of the
//! partition key, or an explicit hash key the producer sets instead. A [`PartitionSpec`] (read from
//! the sink's `partition`, `fallback`, `too_long` and `explicit_hash_key` settings) says where both
//! come from; a [`Partitioner`] applies it to one record at a time and answers an [`Assigned`] key
//! or a [`PartitionError`] (the sink dead-letters the record with the error's message). Pure: no
//! I/O, no clock; randomness comes from the `Rng` the caller passes, so tests seed it.
//!
//! # Partition key strategies (`partition`)
//!
//! | setting | key |
//! |---|---|
//! | `random` | 16 random lowercase hex digits per record: spread over all shards, no order |
//! | `record` | the key the source gave the record (none for stdin) |
//! | `field:PATH` | a JSON field's value (`device_id`, `a.b[0].c`, `["odd.key"]`) |
//! | `attribute:NAME` | a record attribute |
//! | `constant:TEXT` | the same key for every record |
//! | `hash:PATH,PATH,...` | 32 lowercase hex digits of an MD5 over several fields (below) |
//!
//! A field's value is its string content after unescaping (`"a\u0062"` gives `ab`), or the text
//! of a number, `true` or `false` as written, or the JSON text of an object or array; so `17` and
//! `"17"` give the same key. A field that is absent or `null`, a string with an invalid escape, and
//! an empty value all count as **missing**, and so does an empty attribute or record key.
//!
//! `hash:` reads every listed field (each as above; any missing field makes the key missing) and
//! digests, in the order listed, each value's length as an 8-byte big-endian integer followed by
//! its bytes. The length prefix keeps combinations apart that plain concatenation would merge:
//! `("ab", "c")` and `("a", "bc")` give different keys. Paths are separated by commas (a comma
//! inside a bracketed, quoted key such as `["a,b"]` does not split) and trimmed of surrounding
//! ASCII whitespace.
//!
//! # Missing keys (`fallback`)
//!
//! `random` (the default) gives a missing key a random key, `constant:TEXT` gives it `TEXT`, and
//! `dead_letter` makes [`Partitioner::assign`] return [`PartitionError::MissingKey`], whose message
//! names the field, attribute or record key that was missing.
//!
//! # Kinesis's limit: 1 to 256 characters (`too_long`)
//!
//! Lengths are counted in UTF-16 code units, as Java-based services and kinesalite (JavaScript)
//! measure strings: a key of at most [`PARTITION_KEY_LEN_MAX`] units is at most 256 characters
//! however the limit is counted, and for characters of the Basic Multilingual Plane one unit is one
//! character (a character beyond it, such as most emoji, counts as two). `truncate` (the default)
//! keeps the longest prefix that fits, cut on a character boundary; `reject` returns
//! [`PartitionError::TooLong`]. Truncated keys that share their first 256 units share a shard.
//!
//! Keys from binary payloads need not be UTF-8, but Kinesis keys are text: every byte that is not
//! part of valid UTF-8 becomes the four characters `\xNN` (lowercase hex), see
//! [`key_from_bytes`]. Unlike replacement with U+FFFD, distinct binary keys stay distinct and so
//! stay spread over the shards; valid UTF-8 is kept as it is.
//!
//! # Explicit hash keys (`explicit_hash_key`)
//!
//! Unset by default: Kinesis places records by the MD5 of their partition key. When set, the
//! record's hash key is computed instead and sent as `ExplicitHashKey`:
//!
//! | setting | explicit hash key |
//! |---|---|
//! | `random` | uniform over 0..=2^128-1 |
//! | `record` | the source's explicit hash key (decimal), passed through; none if it gave none |
//! | `field:PATH` | MD5 of the field's value (as above) as a big-endian integer |
//! | `attribute:NAME` | MD5 of the attribute's value |
//! | `hash:PATH,PATH,...` | the `hash:` digest above, as a big-endian integer |
//!
//! MD5 spreads values evenly over the whole key space, so each shard of a stream gets a share of
//! distinct values proportional to its width, and the same value always lands on the same shard
//! (until a reshard). For a UTF-8 value of at most 256 units, `explicit_hash_key = "field:x"`
//! places a record exactly where `partition = "field:x"` would, whatever the partition key is.
//! When the source is missing, the fallback applies: `random` gives a random hash key,
//! `constant:TEXT` the MD5 of `TEXT`, `dead_letter` [`PartitionError::MissingHashKey`]. Only
//! `record` is different: a record without an explicit hash key simply gets none (Kinesis uses its
//! partition key), and one that is not a decimal 0..=2^128-1 is [`PartitionError::BadHashKey`].
//!
//! # Example
//!
//! ```
//! use edge_router::core::partitioner::{PartitionSpec, Partitioner};
//! # use edge_router::core::record::{Origin, PositionBase, RecordRef};
//! # use rand::SeedableRng;
//! # let origin = Origin {
//! #     source: "s".into(),
//! #     arrival_unix_nanos: 0,
//! #     arrival: std::time::Instant::now(),
//! #     position: PositionBase::None,
//! # };
//! let spec = PartitionSpec::parse("field:device.id", Some("dead_letter"), None, None)?;
//! let partitioner = Partitioner::new(spec);
//! let mut rng = rand::rngs::StdRng::seed_from_u64(1);
//!
//! let rec = RecordRef { payload: br#"{"device":{"id":"d-17"}}"#, meta: None, origin: &origin };
//! let assigned = partitioner.assign(&rec, &mut rng)?;
//! assert_eq!(assigned.partition_key, "d-17");
//! assert_eq!(assigned.explicit_hash_key, None);
//!
//! let rec = RecordRef { payload: br#"{"device":{}}"#, meta: None, origin: &origin };
//! let error = partitioner.assign(&rec, &mut rng).unwrap_err();
//! assert!(error.to_string().contains("field `device.id`"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::borrow::Cow;
use std::fmt::Write as _;

use md5::{Digest, Md5};
use rand::Rng;

use crate::core::jsonpath::{JsonPath, JsonValue, lookup};
use crate::core::kinesis::hash::{HashKeyError, format_hash_key, hash_key, parse_hash_key};
use crate::core::record::RecordRef;

/// The longest partition key Kinesis accepts, in UTF-16 code units (see the module docs).
pub const PARTITION_KEY_LEN_MAX: usize = 256;

/// Length of a `random` partition key: 16 lowercase hex digits (64 random bits).
pub const RANDOM_KEY_LEN: usize = 16;

/// Where a record's partition key comes from (the `partition` setting).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum KeySource {
    /// `random` (the default of every Kinesis producer): a fresh random key per record.
    #[default]
    Random,
    /// `record`: the key the source gave the record.
    Record,
    /// `field:PATH`: a JSON field's value.
    Field(JsonPath),
    /// `attribute:NAME`: a record attribute.
    Attribute(String),
    /// `constant:TEXT`: the same key for every record.
    Constant(String),
    /// `hash:PATH,PATH,...`: a digest of several fields' values.
    Hash(Vec<JsonPath>),
}

impl KeySource {
    /// Parses `random`, `record`, `field:PATH`, `attribute:NAME`, `constant:TEXT` or
    /// `hash:PATH,PATH,...`.
    ///
    /// # Errors
    ///
    /// A message for a config error: an unknown strategy (listing the valid ones), a missing or
    /// unexpected argument, or a bad field path with its byte offset.
    pub fn parse(text: &str) -> Result<KeySource, String> {
        let (kind, arg) = split_kind(text);
        match (kind, arg) {
            ("random", None) => Ok(KeySource::Random),
            ("record", None) => Ok(KeySource::Record),
            ("random" | "record", Some(_)) => Err(format!("`{kind}` takes no argument")),
            ("field", arg) => parse_path(arg.unwrap_or_default()).map(KeySource::Field),
            ("attribute", arg) => parse_name(arg).map(KeySource::Attribute),
            ("constant", arg) => match arg {
                Some(text) if !text.is_empty() => Ok(KeySource::Constant(text.to_owned())),
                _ => Err("`constant:` needs a non-empty TEXT, e.g. `constant:all`".to_owned()),
            },
            ("hash", arg) => parse_paths(arg.unwrap_or_default()).map(KeySource::Hash),
            _ => Err(format!(
                "unknown partition key strategy {text:?}; expected `random`, `record`, \
                 `field:PATH`, `attribute:NAME`, `constant:TEXT` or `hash:PATH,PATH,...`"
            )),
        }
    }
}

/// Where a record's explicit hash key comes from (the `explicit_hash_key` setting).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HashKeySource {
    /// `random`: uniform over 0..=2^128-1.
    Random,
    /// `record`: the source's explicit hash key, passed through.
    Record,
    /// `field:PATH`: MD5 of a JSON field's value.
    Field(JsonPath),
    /// `attribute:NAME`: MD5 of a record attribute.
    Attribute(String),
    /// `hash:PATH,PATH,...`: the digest of several fields' values.
    Hash(Vec<JsonPath>),
}

impl HashKeySource {
    /// Parses `random`, `record`, `field:PATH`, `attribute:NAME` or `hash:PATH,PATH,...`.
    ///
    /// # Errors
    ///
    /// A message for a config error, as [`KeySource::parse`].
    pub fn parse(text: &str) -> Result<HashKeySource, String> {
        let (kind, arg) = split_kind(text);
        match (kind, arg) {
            ("random", None) => Ok(HashKeySource::Random),
            ("record", None) => Ok(HashKeySource::Record),
            ("random" | "record", Some(_)) => Err(format!("`{kind}` takes no argument")),
            ("field", arg) => parse_path(arg.unwrap_or_default()).map(HashKeySource::Field),
            ("attribute", arg) => parse_name(arg).map(HashKeySource::Attribute),
            ("hash", arg) => parse_paths(arg.unwrap_or_default()).map(HashKeySource::Hash),
            _ => Err(format!(
                "unknown explicit hash key strategy {text:?}; expected `random`, `record`, \
                 `field:PATH`, `attribute:NAME`, `hash:PATH,PATH,...` or `none`"
            )),
        }
    }
}

/// What a record whose key is missing gets (the `fallback` setting).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Fallback {
    /// `random` (the default): a random key (or random explicit hash key).
    #[default]
    Random,
    /// `constant:TEXT`: this key (or the MD5 of it as the explicit hash key).
    Constant(String),
    /// `dead_letter`: an error; the sink dead-letters the record.
    DeadLetter,
}

impl Fallback {
    /// Parses `random`, `constant:TEXT` or `dead_letter`.
    ///
    /// # Errors
    ///
    /// A message for a config error naming the valid choices.
    pub fn parse(text: &str) -> Result<Fallback, String> {
        match split_kind(text) {
            ("random", None) => Ok(Fallback::Random),
            ("dead_letter", None) => Ok(Fallback::DeadLetter),
            ("constant", Some(text)) if !text.is_empty() => Ok(Fallback::Constant(text.to_owned())),
            ("constant", _) => {
                Err("`constant:` needs a non-empty TEXT, e.g. `constant:unknown`".into())
            }
            _ => Err(format!(
                "unknown fallback {text:?}; expected `random`, `constant:TEXT` or `dead_letter`"
            )),
        }
    }
}

/// What happens to a key longer than Kinesis allows (the `too_long` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TooLong {
    /// `truncate` (the default): keep the longest prefix that fits, on a character boundary.
    #[default]
    Truncate,
    /// `reject`: an error; the sink dead-letters the record.
    Reject,
}

impl TooLong {
    /// Parses `truncate` or `reject` (also spelt `dead_letter`, which is what happens to the
    /// record).
    ///
    /// # Errors
    ///
    /// A message for a config error naming the valid choices.
    pub fn parse(text: &str) -> Result<TooLong, String> {
        match text {
            "truncate" => Ok(TooLong::Truncate),
            "reject" | "dead_letter" => Ok(TooLong::Reject),
            _ => Err(format!(
                "unknown too_long {text:?}; expected `truncate` or `reject`"
            )),
        }
    }
}

/// The validated partitioning settings of a Kinesis sink.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartitionSpec {
    /// Where the partition key comes from (default `random`).
    pub key: KeySource,
    /// What a record with a missing key gets (default `random`).
    pub fallback: Fallback,
    /// What happens to keys over 256 characters (default `truncate`).
    pub too_long: TooLong,
    /// Where the explicit hash key comes from; `None` (the default) sends none.
    pub explicit_hash_key: Option<HashKeySource>,
}

impl PartitionSpec {
    /// Parses the four settings; `None` means the setting is absent and takes its default
    /// (`fallback = "random"`, `too_long = "truncate"`, no explicit hash key; `none` also means
    /// no explicit hash key).
    ///
    /// # Errors
    ///
    /// The first problem found, with the setting it belongs to: the parse errors of
    /// [`KeySource::parse`], [`Fallback::parse`], [`TooLong::parse`] and
    /// [`HashKeySource::parse`], and a `constant:` key or fallback over 256 characters when
    /// `too_long = "reject"` (it would reject every record it is used for).
    pub fn parse(
        partition: &str,
        fallback: Option<&str>,
        too_long: Option<&str>,
        explicit_hash_key: Option<&str>,
    ) -> Result<PartitionSpec, PartitionSpecError> {
        let error = |setting| move |message| PartitionSpecError { setting, message };
        let key = KeySource::parse(partition).map_err(error("partition"))?;
        let fallback = fallback
            .map(Fallback::parse)
            .transpose()
            .map_err(error("fallback"))?
            .unwrap_or_default();
        let too_long = too_long
            .map(TooLong::parse)
            .transpose()
            .map_err(error("too_long"))?
            .unwrap_or_default();
        let explicit_hash_key = match explicit_hash_key {
            None | Some("none") => None,
            Some(text) => Some(HashKeySource::parse(text).map_err(error("explicit_hash_key"))?),
        };
        if too_long == TooLong::Reject {
            let check = |setting, text: &str| {
                let units = utf16_len(text);
                if units > PARTITION_KEY_LEN_MAX {
                    return Err(error(setting)(format!(
                        "the constant key is {units} characters (UTF-16 code units) long; \
                         Kinesis takes at most {PARTITION_KEY_LEN_MAX} and too_long = \"reject\" \
                         would reject every record that uses it"
                    )));
                }
                Ok(())
            };
            if let KeySource::Constant(text) = &key {
                check("partition", text)?;
            }
            if let Fallback::Constant(text) = &fallback {
                check("fallback", text)?;
            }
        }
        Ok(PartitionSpec {
            key,
            fallback,
            too_long,
            explicit_hash_key,
        })
    }
}

/// A problem in the partitioning settings.
///
/// Displays as the message alone: the config reader adds the file, line and key, using
/// `setting` to find the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PartitionSpecError {
    /// The setting at fault: `partition`, `fallback`, `too_long` or `explicit_hash_key`.
    pub setting: &'static str,
    /// What is wrong and what was expected.
    pub message: String,
}

/// One record's placement: what the sink sends as `PartitionKey` and `ExplicitHashKey`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assigned<'a> {
    /// 1 to 256 characters of valid UTF-8; borrowed from the record or the settings when it
    /// came from there unchanged (or truncated), owned when generated, unescaped or converted.
    pub partition_key: Cow<'a, str>,
    /// The explicit hash key, if one was configured and found.
    pub explicit_hash_key: Option<u128>,
    /// True when a fallback supplied the partition key or the explicit hash key.
    pub used_fallback: bool,
    /// True when the partition key was cut to fit Kinesis's limit.
    pub truncated: bool,
}

impl Assigned<'_> {
    /// The hash key Kinesis places the record by: the explicit hash key if any, else the MD5 of
    /// the partition key.
    pub fn hash_key(&self) -> u128 {
        self.explicit_hash_key
            .unwrap_or_else(|| hash_key(self.partition_key.as_bytes()))
    }

    /// The explicit hash key in the API's decimal text form.
    pub fn explicit_hash_key_text(&self) -> Option<String> {
        self.explicit_hash_key.map(format_hash_key)
    }
}

/// Why a record could not be placed; the sink dead-letters it with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PartitionError {
    /// The partition key was missing and `fallback = "dead_letter"`.
    #[error("no partition key: {what} is missing, null or empty, and fallback = \"dead_letter\"")]
    MissingKey {
        /// Which field, attribute or key was missing, e.g. ``field `device.id` ``.
        what: String,
    },
    /// The explicit hash key's source was missing and `fallback = "dead_letter"`.
    #[error(
        "no explicit hash key: {what} is missing, null or empty, and fallback = \"dead_letter\""
    )]
    MissingHashKey {
        /// Which field or attribute was missing.
        what: String,
    },
    /// The partition key was too long and `too_long = "reject"`.
    #[error(
        "partition key from {what} is {units} characters (UTF-16 code units) long; Kinesis takes \
         at most {PARTITION_KEY_LEN_MAX}, and too_long = \"reject\""
    )]
    TooLong {
        /// Where the key came from.
        what: String,
        /// Its length in UTF-16 code units.
        units: usize,
    },
    /// The source's explicit hash key is not a decimal 0..=2^128-1.
    #[error("the record's explicit hash key {text:?} is invalid: {error}")]
    BadHashKey {
        /// The text the source gave.
        text: String,
        /// Why it does not parse.
        error: HashKeyError,
    },
}

/// Applies a [`PartitionSpec`] to records.
#[derive(Debug, Clone)]
pub struct Partitioner {
    spec: PartitionSpec,
}

/// Which part of a key source was missing (the message is built only when it is needed).
#[derive(Debug, Clone, Copy)]
enum Missing {
    /// The source as a whole.
    Whole,
    /// The field at this index of a `hash:` list.
    HashField(usize),
}

impl Partitioner {
    /// A partitioner for `spec`. Takes any spec; [`PartitionSpec::parse`] additionally reports
    /// settings that could never work. (An empty `constant` key counts as missing, and an empty
    /// `constant` fallback gives [`PartitionError::MissingKey`].)
    pub fn new(spec: PartitionSpec) -> Partitioner {
        Partitioner { spec }
    }

    /// The settings.
    pub fn spec(&self) -> &PartitionSpec {
        &self.spec
    }

    /// Places one record: its partition key and (if configured) explicit hash key.
    ///
    /// Allocates nothing when the key is borrowed: a field string without escapes, a number, an
    /// attribute, the record's key or a constant, valid UTF-8 (truncated or not). Generated keys
    /// (`random`, `hash:`), unescaped strings and converted binary keys are owned. A `random` key
    /// is drawn before a `random` explicit hash key, so a seeded `rng` gives repeatable results.
    ///
    /// # Errors
    ///
    /// [`PartitionError`] when `fallback = "dead_letter"` and a key is missing, when
    /// `too_long = "reject"` and the key is too long, or when the record's own explicit hash key
    /// (`explicit_hash_key = "record"`) is not valid.
    pub fn assign<'a, R: Rng + ?Sized>(
        &'a self,
        rec: &RecordRef<'a>,
        rng: &mut R,
    ) -> Result<Assigned<'a>, PartitionError> {
        let mut used_fallback = false;
        let key = match self.partition_key(rec, rng) {
            Ok(key) => key,
            Err(missing) => {
                used_fallback = true;
                match &self.spec.fallback {
                    Fallback::Random => random_key(rng),
                    Fallback::Constant(text) if !text.is_empty() => Cow::Borrowed(text.as_str()),
                    Fallback::Constant(_) | Fallback::DeadLetter => {
                        return Err(PartitionError::MissingKey {
                            what: describe(&self.spec.key, missing),
                        });
                    }
                }
            }
        };
        let (partition_key, truncated) = self.fit(key, used_fallback)?;
        let explicit_hash_key = match &self.spec.explicit_hash_key {
            None => None,
            Some(source) => match explicit_hash_key(source, rec, rng)? {
                Ok(found) => found,
                Err(missing) => {
                    used_fallback = true;
                    Some(match &self.spec.fallback {
                        Fallback::Random => random_u128(rng),
                        Fallback::Constant(text) => hash_key(text.as_bytes()),
                        Fallback::DeadLetter => {
                            return Err(PartitionError::MissingHashKey {
                                what: describe_hash_source(source, missing),
                            });
                        }
                    })
                }
            },
        };
        Ok(Assigned {
            partition_key,
            explicit_hash_key,
            used_fallback,
            truncated,
        })
    }

    /// The key from the configured source, not yet checked for length; `Err` when missing.
    fn partition_key<'a, R: Rng + ?Sized>(
        &'a self,
        rec: &RecordRef<'a>,
        rng: &mut R,
    ) -> Result<Cow<'a, str>, Missing> {
        let key = match &self.spec.key {
            KeySource::Random => return Ok(random_key(rng)),
            KeySource::Record => Cow::Borrowed(rec.partition_key().unwrap_or_default()),
            KeySource::Field(path) => {
                key_from_bytes(field_value(rec.payload, path).ok_or(Missing::Whole)?)
            }
            KeySource::Attribute(name) => Cow::Borrowed(rec.attribute(name).unwrap_or_default()),
            KeySource::Constant(text) => Cow::Borrowed(text.as_str()),
            KeySource::Hash(paths) => {
                let digest = hash_fields(rec.payload, paths).map_err(Missing::HashField)?;
                let mut hex = String::with_capacity(2 * digest.len());
                push_hex(&mut hex, &digest);
                return Ok(Cow::Owned(hex));
            }
        };
        if key.is_empty() {
            Err(Missing::Whole)
        } else {
            Ok(key)
        }
    }

    /// Applies `too_long` to a non-empty key; answers the key and whether it was cut.
    fn fit<'a>(
        &self,
        key: Cow<'a, str>,
        from_fallback: bool,
    ) -> Result<(Cow<'a, str>, bool), PartitionError> {
        let cut = truncate_key(&key).len();
        if cut == key.len() {
            return Ok((key, false));
        }
        if self.spec.too_long == TooLong::Reject {
            let what = if from_fallback {
                "the constant fallback".to_owned()
            } else {
                describe(&self.spec.key, Missing::Whole)
            };
            return Err(PartitionError::TooLong {
                what,
                units: utf16_len(&key),
            });
        }
        let key = match key {
            Cow::Borrowed(text) => Cow::Borrowed(text.get(..cut).unwrap_or_default()),
            Cow::Owned(mut text) => {
                text.truncate(cut);
                Cow::Owned(text)
            }
        };
        Ok((key, true))
    }
}

/// The explicit hash key from `source`: `Ok(Err(_))` when missing (the fallback decides),
/// `Ok(Ok(None))` when the record has none to pass through.
fn explicit_hash_key<R: Rng + ?Sized>(
    source: &HashKeySource,
    rec: &RecordRef<'_>,
    rng: &mut R,
) -> Result<Result<Option<u128>, Missing>, PartitionError> {
    let bytes = match source {
        HashKeySource::Random => return Ok(Ok(Some(random_u128(rng)))),
        HashKeySource::Record => {
            let text = rec
                .meta
                .and_then(|m| m.explicit_hash_key.as_deref())
                .unwrap_or_default();
            if text.is_empty() {
                return Ok(Ok(None));
            }
            return parse_hash_key(text)
                .map(|key| Ok(Some(key)))
                .map_err(|error| PartitionError::BadHashKey {
                    text: text.to_owned(),
                    error,
                });
        }
        HashKeySource::Field(path) => field_value(rec.payload, path),
        HashKeySource::Attribute(name) => rec
            .attribute(name)
            .filter(|v| !v.is_empty())
            .map(|v| Cow::Borrowed(v.as_bytes())),
        HashKeySource::Hash(paths) => {
            return Ok(hash_fields(rec.payload, paths)
                .map(|digest| Some(u128::from_be_bytes(digest)))
                .map_err(Missing::HashField));
        }
    };
    Ok(bytes.map(|b| Some(hash_key(&b))).ok_or(Missing::Whole))
}

/// A field's value as key bytes; `None` when absent, `null`, empty, or a string with a bad
/// escape.
fn field_value<'a>(payload: &'a [u8], path: &JsonPath) -> Option<Cow<'a, [u8]>> {
    match lookup(payload, path)? {
        JsonValue::Null => None,
        value => value.key_bytes().filter(|bytes| !bytes.is_empty()),
    }
}

/// MD5 over `len(value) as u64 big-endian ++ value` for each field in order; `Err(i)` when
/// field `i` is missing.
fn hash_fields(payload: &[u8], paths: &[JsonPath]) -> Result<[u8; 16], usize> {
    let mut md5 = Md5::new();
    for (index, path) in paths.iter().enumerate() {
        let value = field_value(payload, path).ok_or(index)?;
        let len = u64::try_from(value.len()).unwrap_or(u64::MAX);
        md5.update(len.to_be_bytes());
        md5.update(&value);
    }
    Ok(md5.finalize().into())
}

/// Names what was missing, for an error message.
fn describe(source: &KeySource, missing: Missing) -> String {
    match (source, missing) {
        (KeySource::Field(path), _) => format!("field `{path}`"),
        (KeySource::Attribute(name), _) => format!("attribute `{name}`"),
        (KeySource::Record, _) => "the record's own partition key".to_owned(),
        (KeySource::Constant(_), _) => "the constant key".to_owned(),
        (KeySource::Hash(paths), missing) => describe_hash_field(paths, missing),
        (KeySource::Random, _) => "the random key".to_owned(),
    }
}

/// Names what was missing of an explicit hash key source.
fn describe_hash_source(source: &HashKeySource, missing: Missing) -> String {
    match source {
        HashKeySource::Field(path) => format!("field `{path}`"),
        HashKeySource::Attribute(name) => format!("attribute `{name}`"),
        HashKeySource::Hash(paths) => describe_hash_field(paths, missing),
        HashKeySource::Random => "the random key".to_owned(),
        HashKeySource::Record => "the record's own explicit hash key".to_owned(),
    }
}

/// ``field `b` (of `hash:a,b`)``.
fn describe_hash_field(paths: &[JsonPath], missing: Missing) -> String {
    let index = match missing {
        Missing::HashField(index) => index,
        Missing::Whole => 0,
    };
    let mut all = String::new();
    for (n, path) in paths.iter().enumerate() {
        let _ = write!(all, "{}{path}", if n == 0 { "" } else { "," });
    }
    match paths.get(index) {
        Some(path) => format!("field `{path}` (of `hash:{all}`)"),
        None => format!("`hash:{all}`"),
    }
}

/// A `random` key: [`RANDOM_KEY_LEN`] lowercase hex digits.
fn random_key<'a, R: Rng + ?Sized>(rng: &mut R) -> Cow<'a, str> {
    let mut key = String::with_capacity(RANDOM_KEY_LEN);
    push_hex(&mut key, &rng.next_u64().to_be_bytes());
    Cow::Owned(key)
}

/// A uniform 128-bit hash key.
fn random_u128<R: Rng + ?Sized>(rng: &mut R) -> u128 {
    (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64())
}

/// Appends `bytes` as lowercase hex.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
}

/// The text of a key given as bytes: valid UTF-8 unchanged (and still borrowed if it was), each
/// byte that is not part of valid UTF-8 as `\xNN` (lowercase hex).
pub fn key_from_bytes(bytes: Cow<'_, [u8]>) -> Cow<'_, str> {
    match bytes {
        Cow::Borrowed(b) => match std::str::from_utf8(b) {
            Ok(text) => Cow::Borrowed(text),
            Err(_) => Cow::Owned(escape_invalid(b)),
        },
        Cow::Owned(v) => match String::from_utf8(v) {
            Ok(text) => Cow::Owned(text),
            Err(e) => Cow::Owned(escape_invalid(e.as_bytes())),
        },
    }
}

/// `bytes` with every invalid UTF-8 byte written as `\xNN`.
fn escape_invalid(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for &b in chunk.invalid() {
            out.push_str("\\x");
            push_hex(&mut out, &[b]);
        }
    }
    out
}

/// The longest prefix of `key`, cut on a character boundary, of at most
/// [`PARTITION_KEY_LEN_MAX`] UTF-16 code units (hence at most 256 characters); `key` itself
/// when it fits.
pub fn truncate_key(key: &str) -> &str {
    // A UTF-8 byte count is never below the UTF-16 unit count, so short keys need no scan.
    if key.len() <= PARTITION_KEY_LEN_MAX {
        return key;
    }
    let mut units = 0;
    for (at, c) in key.char_indices() {
        units += c.len_utf16();
        if units > PARTITION_KEY_LEN_MAX {
            return key.get(..at).unwrap_or_default();
        }
    }
    key
}

/// The length of `text` in UTF-16 code units (what Kinesis's limit counts).
pub fn utf16_len(text: &str) -> usize {
    text.chars().map(char::len_utf16).sum()
}

/// Splits `kind:arg`; no colon gives `(text, None)`.
fn split_kind(text: &str) -> (&str, Option<&str>) {
    match text.split_once(':') {
        Some((kind, arg)) => (kind, Some(arg)),
        None => (text, None),
    }
}

/// Parses one field path with a config-error message.
fn parse_path(text: &str) -> Result<JsonPath, String> {
    JsonPath::parse(text).map_err(|e| format!("bad field path {text:?}: {e}"))
}

/// The NAME of `attribute:NAME`.
fn parse_name(arg: Option<&str>) -> Result<String, String> {
    match arg {
        Some(name) if !name.is_empty() => Ok(name.to_owned()),
        _ => Err("`attribute:` needs a NAME, e.g. `attribute:host`".to_owned()),
    }
}

/// Parses the comma-separated paths of `hash:`; a comma inside a quoted bracket key does not
/// split.
fn parse_paths(text: &str) -> Result<Vec<JsonPath>, String> {
    if text.trim().is_empty() {
        return Err("`hash:` needs at least one field path, e.g. `hash:device_id,site`".into());
    }
    let mut items = Vec::new();
    let mut quote = None;
    let mut escaped = false;
    let mut prev = 0u8;
    let mut start = 0;
    for (at, b) in text.bytes().enumerate() {
        match quote {
            Some(_) if escaped => escaped = false,
            Some(_) if b == b'\\' => escaped = true,
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if (b == b'"' || b == b'\'') && prev == b'[' => quote = Some(b),
            None if b == b',' => {
                items.push(text.get(start..at).unwrap_or_default());
                start = at + 1;
            }
            None => {}
        }
        prev = b;
    }
    items.push(text.get(start..).unwrap_or_default());
    items
        .into_iter()
        .enumerate()
        .map(|(n, item)| {
            let item = item.trim_matches(|c: char| c.is_ascii_whitespace());
            if item.is_empty() {
                return Err(format!(
                    "`hash:` has an empty field path at position {}",
                    n + 1
                ));
            }
            parse_path(item)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::record::{Origin, PositionBase, RecordMeta};
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use std::sync::Arc;
    use std::time::Instant;

    fn origin() -> Origin {
        Origin {
            source: Arc::from("test"),
            arrival_unix_nanos: 0,
            arrival: Instant::now(),
            position: PositionBase::None,
        }
    }

    fn meta(key: Option<&str>, ehk: Option<&str>, attributes: &[(&str, &str)]) -> RecordMeta {
        RecordMeta {
            partition_key: key.map(Into::into),
            explicit_hash_key: ehk.map(Into::into),
            attributes: attributes
                .iter()
                .map(|&(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    fn partitioner(
        partition: &str,
        fallback: Option<&str>,
        too_long: Option<&str>,
        ehk: Option<&str>,
    ) -> Partitioner {
        Partitioner::new(PartitionSpec::parse(partition, fallback, too_long, ehk).unwrap())
    }

    /// An owned copy of an [`Assigned`], so tests can compare it after the record is gone.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Placed {
        key: String,
        ehk: Option<u128>,
        used_fallback: bool,
        truncated: bool,
        borrowed: bool,
    }

    fn place(
        p: &Partitioner,
        payload: &[u8],
        meta: Option<&RecordMeta>,
        rng: &mut StdRng,
    ) -> Result<Placed, PartitionError> {
        let origin = origin();
        let rec = RecordRef {
            payload,
            meta,
            origin: &origin,
        };
        p.assign(&rec, rng).map(|a| Placed {
            key: a.partition_key.to_string(),
            ehk: a.explicit_hash_key,
            used_fallback: a.used_fallback,
            truncated: a.truncated,
            borrowed: matches!(a.partition_key, Cow::Borrowed(_)),
        })
    }

    /// Places a JSON payload without metadata, with a fixed seed.
    fn place_json(p: &Partitioner, payload: &str) -> Result<Placed, PartitionError> {
        place(p, payload.as_bytes(), None, &mut StdRng::seed_from_u64(0))
    }

    fn is_hex(key: &str, len: usize) -> bool {
        key.len() == len && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }

    fn path(text: &str) -> JsonPath {
        JsonPath::parse(text).unwrap()
    }

    // ---- parsing ----

    #[test]
    fn parses_every_strategy() {
        let k = |t: &str| KeySource::parse(t).unwrap();
        assert_eq!(k("random"), KeySource::Random);
        assert_eq!(k("record"), KeySource::Record);
        assert_eq!(k("field:a.b[0].c"), KeySource::Field(path("a.b[0].c")));
        assert_eq!(k("attribute:host"), KeySource::Attribute("host".into()));
        assert_eq!(k("constant:a:b c"), KeySource::Constant("a:b c".into()));
        assert_eq!(
            k("hash:device_id, site ,a[1]"),
            KeySource::Hash(vec![path("device_id"), path("site"), path("a[1]")])
        );
        // A comma inside a quoted bracket key does not split, nor does an escaped quote end it.
        assert_eq!(
            k(r#"hash:["a,b"],c,['x\',y'].z"#),
            KeySource::Hash(vec![
                JsonPath::parse(r#"["a,b"]"#).unwrap(),
                path("c"),
                JsonPath::parse(r"['x\',y'].z").unwrap(),
            ])
        );

        let h = |t: &str| HashKeySource::parse(t).unwrap();
        assert_eq!(h("random"), HashKeySource::Random);
        assert_eq!(h("record"), HashKeySource::Record);
        assert_eq!(
            h("field:device_id"),
            HashKeySource::Field(path("device_id"))
        );
        assert_eq!(h("attribute:host"), HashKeySource::Attribute("host".into()));
        assert_eq!(
            h("hash:a,b"),
            HashKeySource::Hash(vec![path("a"), path("b")])
        );

        assert_eq!(Fallback::parse("random"), Ok(Fallback::Random));
        assert_eq!(Fallback::parse("dead_letter"), Ok(Fallback::DeadLetter));
        assert_eq!(
            Fallback::parse("constant:unknown"),
            Ok(Fallback::Constant("unknown".into()))
        );
        assert_eq!(TooLong::parse("truncate"), Ok(TooLong::Truncate));
        assert_eq!(TooLong::parse("reject"), Ok(TooLong::Reject));
        assert_eq!(TooLong::parse("dead_letter"), Ok(TooLong::Reject));
    }

    #[test]
    fn parse_errors_say_what_is_wrong() {
        let k = |t: &str| KeySource::parse(t).unwrap_err();
        assert!(k("Random").contains("unknown partition key strategy \"Random\""));
        assert!(k("Random").contains("`hash:PATH,PATH,...`"));
        assert!(k("").contains("unknown partition key strategy"));
        assert_eq!(k("random:x"), "`random` takes no argument");
        assert_eq!(k("record:"), "`record` takes no argument");
        assert!(k("field:").contains("bad field path \"\": at byte 0: empty path"));
        assert!(k("field:a..b").contains("empty key"));
        assert!(k("field").contains("bad field path"));
        assert!(k("attribute:").contains("needs a NAME"));
        assert!(k("attribute").contains("needs a NAME"));
        assert!(k("constant:").contains("non-empty TEXT"));
        assert!(k("hash:").contains("at least one field path"));
        assert!(k("hash: ").contains("at least one field path"));
        assert!(k("hash:a,,b").contains("empty field path at position 2"));
        assert!(k("hash:a,").contains("empty field path at position 2"));
        assert!(k("hash:a,b[").contains("bad field path \"b[\""));

        let h = |t: &str| HashKeySource::parse(t).unwrap_err();
        assert!(h("constant:x").contains("unknown explicit hash key strategy"));
        assert!(h("field:").contains("bad field path"));

        assert!(
            Fallback::parse("drop")
                .unwrap_err()
                .contains("`dead_letter`")
        );
        assert!(
            Fallback::parse("constant:")
                .unwrap_err()
                .contains("non-empty")
        );
        assert!(
            Fallback::parse("random:x")
                .unwrap_err()
                .contains("unknown fallback")
        );
        assert!(
            TooLong::parse("cut")
                .unwrap_err()
                .contains("`truncate` or `reject`")
        );
    }

    #[test]
    fn spec_parse_defaults_and_names_the_setting() {
        let spec = PartitionSpec::parse("random", None, None, None).unwrap();
        assert_eq!(spec, PartitionSpec::default());
        assert_eq!(spec.fallback, Fallback::Random);
        assert_eq!(spec.too_long, TooLong::Truncate);
        assert_eq!(spec.explicit_hash_key, None);
        let spec = PartitionSpec::parse(
            "field:id",
            Some("dead_letter"),
            Some("reject"),
            Some("field:site"),
        )
        .unwrap();
        assert_eq!(spec.key, KeySource::Field(path("id")));
        assert_eq!(spec.fallback, Fallback::DeadLetter);
        assert_eq!(spec.too_long, TooLong::Reject);
        assert_eq!(
            spec.explicit_hash_key,
            Some(HashKeySource::Field(path("site")))
        );
        let none = PartitionSpec::parse("record", None, None, Some("none")).unwrap();
        assert_eq!(none.explicit_hash_key, None);

        let setting = |p, f, t, e| PartitionSpec::parse(p, f, t, e).unwrap_err().setting;
        assert_eq!(setting("nope", None, None, None), "partition");
        assert_eq!(setting("random", Some("nope"), None, None), "fallback");
        assert_eq!(setting("random", None, Some("nope"), None), "too_long");
        assert_eq!(
            setting("random", None, None, Some("nope")),
            "explicit_hash_key"
        );
        // Displays as the message alone (the config reader adds file, line and key).
        let error = PartitionSpec::parse("random", None, Some("cut"), None).unwrap_err();
        assert_eq!(error.to_string(), error.message);
        assert!(!error.to_string().starts_with("too_long"));

        // A constant that `reject` would refuse for every record is a config error...
        let long = format!("constant:{}", "k".repeat(257));
        let error = PartitionSpec::parse(&long, None, Some("reject"), None).unwrap_err();
        assert_eq!(error.setting, "partition");
        assert!(
            error.message.contains("257 characters"),
            "{}",
            error.message
        );
        let error =
            PartitionSpec::parse("field:id", Some(&long), Some("reject"), None).unwrap_err();
        assert_eq!(error.setting, "fallback");
        // ...but fine when it is truncated, and 256 is fine either way.
        assert!(PartitionSpec::parse(&long, None, None, None).is_ok());
        let fits = format!("constant:{}", "k".repeat(256));
        assert!(PartitionSpec::parse(&fits, Some(&fits), Some("reject"), None).is_ok());
    }

    // ---- strategies ----

    #[test]
    fn random_keys_are_hex_fresh_and_seeded() {
        let p = partitioner("random", None, None, None);
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..100)
                .map(|_| place(&p, b"{}", None, &mut rng).unwrap())
                .collect::<Vec<_>>()
        };
        let first = run(7);
        for placed in &first {
            assert!(is_hex(&placed.key, RANDOM_KEY_LEN), "{placed:?}");
            assert!(!placed.used_fallback && !placed.truncated && !placed.borrowed);
            assert_eq!(placed.ehk, None);
        }
        let mut distinct: Vec<_> = first.iter().map(|p| &p.key).collect();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), 100);
        assert_eq!(run(7), first, "the same seed gives the same keys");
        assert_ne!(run(8), first);
    }

    #[test]
    fn record_key() {
        let p = partitioner("record", Some("dead_letter"), None, None);
        let mut rng = StdRng::seed_from_u64(0);
        let m = meta(Some("pk-1"), None, &[]);
        let placed = place(&p, b"x", Some(&m), &mut rng).unwrap();
        assert_eq!(placed.key, "pk-1");
        assert!(placed.borrowed);
        // Binary payloads are fine: the key does not come from them.
        let placed = place(&p, b"\xff\x00", Some(&m), &mut rng).unwrap();
        assert_eq!(placed.key, "pk-1");
        for m in [
            None,
            Some(meta(None, None, &[])),
            Some(meta(Some(""), None, &[])),
        ] {
            let error = place(&p, b"x", m.as_ref(), &mut rng).unwrap_err();
            assert_eq!(
                error.to_string(),
                "no partition key: the record's own partition key is missing, null or empty, \
                 and fallback = \"dead_letter\""
            );
        }
    }

    #[test]
    fn field_keys_nested_and_borrowed() {
        let doc = r#"{"a":{"b":[{"c":"deep"},{"c":"other"}]},"n":17,"s":"17","t":true,
                     "esc":"x\u0041\n","o":{"k": [1]},"clé":"v"}"#;
        let key = |spec: &str| place_json(&partitioner(spec, None, None, None), doc).unwrap();
        let deep = key("field:a.b[0].c");
        assert_eq!(deep.key, "deep");
        assert!(deep.borrowed && !deep.used_fallback && !deep.truncated);
        assert_eq!(key("field:a.b[1].c").key, "other");
        assert_eq!(key("field:a.b[1]").key, r#"{"c":"other"}"#);
        assert_eq!(key("field:n").key, "17");
        assert_eq!(key("field:s").key, "17");
        assert_eq!(key("field:t").key, "true");
        assert_eq!(key("field:o").key, r#"{"k": [1]}"#);
        assert_eq!(key("field:clé").key, "v");
        let escaped = key("field:esc");
        assert_eq!(escaped.key, "xA\n");
        assert!(!escaped.borrowed, "unescaping allocates");
        assert!(key("field:n").borrowed);
    }

    #[test]
    fn attribute_and_constant_keys_are_borrowed() {
        let m = meta(None, None, &[("host", "h1"), ("empty", "")]);
        let mut rng = StdRng::seed_from_u64(0);
        let p = partitioner("attribute:host", Some("dead_letter"), None, None);
        let placed = place(&p, b"{}", Some(&m), &mut rng).unwrap();
        assert_eq!(placed.key, "h1");
        assert!(placed.borrowed);
        for attr in ["attribute:empty", "attribute:nope"] {
            let p = partitioner(attr, Some("dead_letter"), None, None);
            let error = place(&p, b"{}", Some(&m), &mut rng).unwrap_err();
            let name = attr.trim_start_matches("attribute:");
            assert!(
                error.to_string().contains(&format!("attribute `{name}`")),
                "{error}"
            );
        }
        let p = partitioner("constant:all", None, None, None);
        let placed = place(&p, b"not json", None, &mut rng).unwrap();
        assert_eq!(placed.key, "all");
        assert!(placed.borrowed && !placed.used_fallback);
    }

    // ---- hash of several fields ----

    #[test]
    fn hash_of_fields_is_defined_and_stable() {
        let p = partitioner("hash:device_id,site", None, None, None);
        let key = |doc: &str| place_json(&p, doc).unwrap().key;
        let k = key(r#"{"device_id":"d-17","site":"plant-1"}"#);
        // md5(u64be(4) "d-17" u64be(7) "plant-1"), computed independently with Python.
        assert_eq!(k, "2885d7a3bde228aed193440059e01a32");
        let mut encoding = Vec::new();
        for value in [&b"d-17"[..], b"plant-1"] {
            encoding.extend_from_slice(&(value.len() as u64).to_be_bytes());
            encoding.extend_from_slice(value);
        }
        let mut hex = String::new();
        push_hex(&mut hex, &crate::core::kinesis::hash::md5(&encoding));
        assert_eq!(k, hex);
        // Member order, whitespace, other fields and escapes do not change the key.
        assert_eq!(
            key(r#"{ "x":[1,{"y":2}], "site" : "plant-\u0031", "device_id":"d-17" }"#),
            k
        );
        // A number and a string with the same text give the same key, as with `field:`.
        assert_eq!(
            key(r#"{"device_id":17,"site":"plant-1"}"#),
            "9b49e25bd785c0f03bfc21be3d7ef00a"
        );
        assert_eq!(
            key(r#"{"device_id":"17","site":"plant-1"}"#),
            "9b49e25bd785c0f03bfc21be3d7ef00a"
        );
        // The order of the paths matters.
        let swapped = partitioner("hash:site,device_id", None, None, None);
        assert_ne!(
            place_json(&swapped, r#"{"device_id":"d-17","site":"plant-1"}"#)
                .unwrap()
                .key,
            k
        );
    }

    #[test]
    fn hash_of_fields_does_not_merge_boundaries() {
        let p = partitioner("hash:a,b", None, None, None);
        let key = |a: &str, b: &str| {
            let doc = serde_json::json!({ "a": a, "b": b }).to_string();
            place_json(&p, &doc).unwrap().key
        };
        assert_ne!(key("ab", "c"), key("a", "bc"));
        assert_ne!(key("a,b", "c"), key("a", "b,c"));
        assert_ne!(key("a\0", "b"), key("a", "\0b"));
        assert_ne!(key("a", "b"), key("b", "a"));
        assert_eq!(key("ab", "c"), key("ab", "c"));
        assert!(is_hex(&key("ab", "c"), 32));
    }

    #[test]
    fn hash_of_fields_missing_any_field() {
        let p = partitioner("hash:device_id,site", Some("dead_letter"), None, None);
        for doc in [
            r#"{"device_id":"d"}"#,
            r#"{"device_id":"d","site":null}"#,
            r#"{"device_id":"d","site":""}"#,
        ] {
            let error = place_json(&p, doc).unwrap_err();
            assert_eq!(
                error,
                PartitionError::MissingKey {
                    what: "field `site` (of `hash:device_id,site`)".into()
                },
                "{doc}"
            );
        }
        let error = place_json(&p, r#"{"site":"s"}"#).unwrap_err();
        assert!(
            error.to_string().contains("field `device_id` (of"),
            "{error}"
        );
        let random = partitioner("hash:device_id,site", None, None, None);
        let placed = place_json(&random, r#"{"site":"s"}"#).unwrap();
        assert!(placed.used_fallback && is_hex(&placed.key, RANDOM_KEY_LEN));
    }

    // ---- fallbacks ----

    #[test]
    fn missing_keys_use_the_fallback() {
        let missing = [
            r#"{"device":{"other":1}}"#,
            r#"{"device":{"id":null}}"#,
            r#"{"device":{"id":""}}"#,
            r#"{"device":{"id":"bad \x escape"}}"#,
            r#"{"device":[]}"#,
            "not json at all",
            "",
        ];
        let random = partitioner("field:device.id", None, None, None);
        let constant = partitioner("field:device.id", Some("constant:unknown"), None, None);
        let dead = partitioner("field:device.id", Some("dead_letter"), None, None);
        for doc in missing {
            let placed = place_json(&random, doc).unwrap();
            assert!(placed.used_fallback, "{doc}");
            assert!(is_hex(&placed.key, RANDOM_KEY_LEN), "{doc}: {placed:?}");
            let placed = place_json(&constant, doc).unwrap();
            assert_eq!(placed.key, "unknown");
            assert!(placed.used_fallback && placed.borrowed);
            let error = place_json(&dead, doc).unwrap_err();
            assert_eq!(
                error.to_string(),
                "no partition key: field `device.id` is missing, null or empty, and fallback = \
                 \"dead_letter\"",
                "{doc}"
            );
        }
        // A present key does not use the fallback.
        let placed = place_json(&constant, r#"{"device":{"id":"d1"}}"#).unwrap();
        assert_eq!(placed.key, "d1");
        assert!(!placed.used_fallback);
    }

    #[test]
    fn random_fallback_spreads() {
        let p = partitioner("field:id", None, None, None);
        let mut rng = StdRng::seed_from_u64(3);
        let mut keys: Vec<String> = (0..50)
            .map(|_| place(&p, b"{}", None, &mut rng).unwrap().key)
            .collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 50);
    }

    // ---- length limit ----

    #[test]
    fn long_keys_are_truncated_on_char_boundaries() {
        let p = partitioner("attribute:k", None, None, None);
        let mut rng = StdRng::seed_from_u64(0);
        let cases = [
            ("a".repeat(256), "a".repeat(256), false),
            ("a".repeat(300), "a".repeat(256), true),
            // 2-byte characters: 256 characters, 512 bytes.
            ("é".repeat(300), "é".repeat(256), true),
            ("é".repeat(256), "é".repeat(256), false),
            // 3-byte characters (one UTF-16 unit each).
            ("€".repeat(257), "€".repeat(256), true),
            // Beyond the BMP: two UTF-16 units each, so 128 of them fit.
            ("😀".repeat(200), "😀".repeat(128), true),
            ("😀".repeat(128), "😀".repeat(128), false),
            // The cut never splits a character: 255 units plus one that needs two.
            (format!("{}😀", "a".repeat(255)), "a".repeat(255), true),
            (
                format!("{}é", "a".repeat(255)),
                format!("{}é", "a".repeat(255)),
                false,
            ),
        ];
        for (input, expected, truncated) in cases {
            let m = meta(None, None, &[("k", &input)]);
            let placed = place(&p, b"{}", Some(&m), &mut rng).unwrap();
            assert_eq!(placed.key, expected);
            assert_eq!(placed.truncated, truncated, "{input}");
            assert!(
                placed.borrowed,
                "truncating a borrowed key does not allocate"
            );
        }
        // Owned keys (here: unescaped) are cut in place.
        let doc = format!(r#"{{"k":"\u00e9{}"}}"#, "x".repeat(300));
        let placed = place_json(&partitioner("field:k", None, None, None), &doc).unwrap();
        assert_eq!(placed.key, format!("é{}", "x".repeat(255)));
        assert!(placed.truncated && !placed.borrowed);
        // Long constants and constant fallbacks are truncated too.
        let long = "c".repeat(300);
        let p = partitioner("field:k", Some(&format!("constant:{long}")), None, None);
        let placed = place_json(&p, "{}").unwrap();
        assert_eq!(placed.key, "c".repeat(256));
        assert!(placed.truncated && placed.used_fallback);
    }

    #[test]
    fn long_keys_are_rejected_when_asked() {
        let p = partitioner("field:k", None, Some("reject"), None);
        let doc = format!(r#"{{"k":"{}"}}"#, "😀".repeat(129));
        let error = place_json(&p, &doc).unwrap_err();
        assert_eq!(
            error,
            PartitionError::TooLong {
                what: "field `k`".into(),
                units: 258
            }
        );
        assert_eq!(
            error.to_string(),
            "partition key from field `k` is 258 characters (UTF-16 code units) long; Kinesis \
             takes at most 256, and too_long = \"reject\""
        );
        let fits = format!(r#"{{"k":"{}"}}"#, "😀".repeat(128));
        assert_eq!(place_json(&p, &fits).unwrap().key, "😀".repeat(128));
        // The generated keys always fit.
        let hash = partitioner("hash:k", None, Some("reject"), None);
        assert!(place_json(&hash, &doc).is_ok());
    }

    #[test]
    fn truncate_key_edges() {
        assert_eq!(truncate_key(""), "");
        assert_eq!(truncate_key("abc"), "abc");
        let s = "a".repeat(1000);
        assert_eq!(truncate_key(&s).len(), 256);
        assert_eq!(utf16_len("a😀é€"), 5);
    }

    proptest! {
        #[test]
        fn truncation_is_the_longest_fitting_prefix(key in "\\PC{0,400}") {
            let cut = truncate_key(&key);
            prop_assert!(key.starts_with(cut));
            prop_assert!(std::str::from_utf8(cut.as_bytes()).is_ok());
            prop_assert!(cut.chars().count() <= PARTITION_KEY_LEN_MAX);
            prop_assert!(utf16_len(cut) <= PARTITION_KEY_LEN_MAX);
            if utf16_len(&key) <= PARTITION_KEY_LEN_MAX {
                prop_assert_eq!(cut, key.as_str());
            } else {
                // Maximal: the next character would not fit.
                let next = key[cut.len()..].chars().next().unwrap();
                prop_assert!(utf16_len(cut) + next.len_utf16() > PARTITION_KEY_LEN_MAX);
                prop_assert!(!cut.is_empty());
            }
        }

        #[test]
        fn assigned_keys_always_fit(value in "\\PC{1,400}", seed: u64) {
            let p = partitioner("field:k", None, None, None);
            let doc = serde_json::json!({ "k": value }).to_string();
            let placed = place(&p, doc.as_bytes(), None, &mut StdRng::seed_from_u64(seed))
                .unwrap();
            prop_assert!(!placed.key.is_empty());
            prop_assert!(utf16_len(&placed.key) <= PARTITION_KEY_LEN_MAX);
            prop_assert!(value.starts_with(&placed.key));
            prop_assert_eq!(placed.truncated, placed.key.len() < value.len());
        }
    }

    // ---- keys that are not UTF-8 ----

    #[test]
    fn binary_keys_escape_invalid_bytes() {
        let p = partitioner("field:k", None, None, None);
        let place_bytes = |doc: &[u8]| place(&p, doc, None, &mut StdRng::seed_from_u64(0));
        let placed = place_bytes(b"{\"k\":\"a\xffb\xc3\xa9\xe2\x82\"}").unwrap();
        assert_eq!(placed.key, "a\\xffbé\\xe2\\x82");
        assert!(!placed.borrowed && !placed.used_fallback);
        // Distinct binary keys stay distinct (U+FFFD would merge them).
        assert_ne!(
            place_bytes(b"{\"k\":\"\xfe\"}").unwrap().key,
            place_bytes(b"{\"k\":\"\xff\"}").unwrap().key
        );
        assert_eq!(
            key_from_bytes(Cow::Owned(b"\x80ok".to_vec())),
            Cow::<str>::Owned("\\x80ok".into())
        );
        assert!(matches!(
            key_from_bytes(Cow::Borrowed(b"ok")),
            Cow::Borrowed("ok")
        ));
    }

    /// Reverses `key_from_bytes` for inputs without backslashes.
    fn unescape_hex(text: &str) -> Vec<u8> {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'\\' {
                let hex = std::str::from_utf8(&bytes[i + 2..i + 4]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 4;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        out
    }

    proptest! {
        #[test]
        fn binary_keys_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let text = key_from_bytes(Cow::Borrowed(&bytes));
            if let Ok(valid) = std::str::from_utf8(&bytes) {
                prop_assert_eq!(text.as_ref(), valid);
            }
            if !bytes.contains(&b'\\') {
                prop_assert_eq!(unescape_hex(&text), bytes);
            }
        }
    }

    // ---- explicit hash keys ----

    #[test]
    fn explicit_hash_key_from_a_field() {
        let p = partitioner("random", None, None, Some("field:device_id"));
        let placed = place_json(&p, r#"{"device_id":"d-17"}"#).unwrap();
        // int.from_bytes(hashlib.md5(b"d-17").digest(), "big")
        assert_eq!(placed.ehk, Some(32214717867712272892266706553380962368));
        assert!(is_hex(&placed.key, RANDOM_KEY_LEN));
        assert!(!placed.used_fallback);
        // The same place `partition = "field:device_id"` would give.
        let by_key = partitioner("field:device_id", None, None, None);
        let key = place_json(&by_key, r#"{"device_id":"d-17"}"#).unwrap().key;
        assert_eq!(placed.ehk, Some(hash_key(key)));

        let origin = origin();
        let rec = RecordRef {
            payload: br#"{"device_id":"d-17"}"#,
            meta: None,
            origin: &origin,
        };
        let assigned = p.assign(&rec, &mut StdRng::seed_from_u64(0)).unwrap();
        assert_eq!(assigned.hash_key(), 32214717867712272892266706553380962368);
        assert_eq!(
            assigned.explicit_hash_key_text().as_deref(),
            Some("32214717867712272892266706553380962368")
        );
        // Without one, the hash key is the partition key's MD5.
        let plain = partitioner("field:device_id", None, None, None);
        let assigned = plain.assign(&rec, &mut StdRng::seed_from_u64(0)).unwrap();
        assert_eq!(assigned.explicit_hash_key_text(), None);
        assert_eq!(assigned.hash_key(), hash_key("d-17"));
    }

    #[test]
    fn explicit_hash_key_from_attribute_and_hash() {
        let m = meta(None, None, &[("host", "h1")]);
        let mut rng = StdRng::seed_from_u64(0);
        let p = partitioner("constant:k", None, None, Some("attribute:host"));
        let placed = place(&p, b"{}", Some(&m), &mut rng).unwrap();
        assert_eq!(placed.ehk, Some(hash_key("h1")));
        assert_eq!(placed.key, "k");
        // `hash:` as the explicit hash key is the same digest as the `hash:` partition key.
        let p = partitioner("hash:a,b", None, None, Some("hash:a,b"));
        let placed = place_json(&p, r#"{"a":1,"b":[2]}"#).unwrap();
        assert_eq!(format!("{:032x}", placed.ehk.unwrap()), placed.key);
    }

    #[test]
    fn explicit_hash_key_from_the_record() {
        let p = partitioner("record", Some("dead_letter"), None, Some("record"));
        let mut rng = StdRng::seed_from_u64(0);
        let m = meta(
            Some("pk"),
            Some("340282366920938463463374607431768211455"),
            &[],
        );
        let placed = place(&p, b"", Some(&m), &mut rng).unwrap();
        assert_eq!(placed.ehk, Some(u128::MAX));
        // None given: none sent, Kinesis uses the partition key; not a fallback.
        for m in [meta(Some("pk"), None, &[]), meta(Some("pk"), Some(""), &[])] {
            let placed = place(&p, b"", Some(&m), &mut rng).unwrap();
            assert_eq!(placed.ehk, None);
            assert!(!placed.used_fallback);
        }
        let m = meta(Some("pk"), Some("12a"), &[]);
        let error = place(&p, b"", Some(&m), &mut rng).unwrap_err();
        assert!(matches!(error, PartitionError::BadHashKey { .. }));
        assert!(
            error
                .to_string()
                .starts_with("the record's explicit hash key \"12a\" is invalid: hash key has 'a'"),
            "{error}"
        );
        let m = meta(
            Some("pk"),
            Some("340282366920938463463374607431768211456"),
            &[],
        );
        assert!(place(&p, b"", Some(&m), &mut rng).is_err());
    }

    #[test]
    fn explicit_hash_key_random_is_seeded() {
        let p = partitioner("constant:k", None, None, Some("random"));
        let run = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..20)
                .map(|_| place(&p, b"{}", None, &mut rng).unwrap().ehk.unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn explicit_hash_key_fallbacks() {
        let doc = r#"{"device_id":"d1"}"#;
        let random = partitioner("field:device_id", None, None, Some("field:site"));
        let placed = place_json(&random, doc).unwrap();
        assert_eq!(placed.key, "d1");
        assert!(placed.ehk.is_some() && placed.used_fallback);
        let constant = partitioner(
            "field:device_id",
            Some("constant:nowhere"),
            None,
            Some("field:site"),
        );
        let placed = place_json(&constant, doc).unwrap();
        assert_eq!(placed.ehk, Some(hash_key("nowhere")));
        assert!(placed.used_fallback);
        let dead = partitioner(
            "field:device_id",
            Some("dead_letter"),
            None,
            Some("hash:device_id,site"),
        );
        let error = place_json(&dead, doc).unwrap_err();
        assert_eq!(
            error.to_string(),
            "no explicit hash key: field `site` (of `hash:device_id,site`) is missing, null or \
             empty, and fallback = \"dead_letter\""
        );
        let dead = partitioner("random", Some("dead_letter"), None, Some("attribute:zone"));
        let error = place_json(&dead, doc).unwrap_err();
        assert!(error.to_string().contains("attribute `zone`"), "{error}");
    }

    proptest! {
        #[test]
        fn explicit_hash_key_is_the_md5_of_the_value(value in "\\PC{1,80}", seed: u64) {
            let p = partitioner("random", None, None, Some("field:v"));
            let doc = serde_json::json!({ "v": value, "w": 1 }).to_string();
            let mut rng = StdRng::seed_from_u64(seed);
            let placed = place(&p, doc.as_bytes(), None, &mut rng).unwrap();
            prop_assert_eq!(placed.ehk, Some(hash_key(value.as_bytes())));
            // Stable: another record with the same value, any other content, same key.
            let other = serde_json::json!({ "a": [seed], "v": value }).to_string();
            let again = place(&p, other.as_bytes(), None, &mut rng).unwrap();
            prop_assert_eq!(again.ehk, placed.ehk);
        }

        #[test]
        fn hash_of_distinct_field_pairs_differs(
            a in "\\PC{1,8}", b in "\\PC{1,8}", c in "\\PC{1,8}", d in "\\PC{1,8}",
        ) {
            prop_assume!((&a, &b) != (&c, &d));
            let p = partitioner("hash:x,y", None, None, Some("hash:x,y"));
            let one = place_json(&p, &serde_json::json!({ "x": a, "y": b }).to_string()).unwrap();
            let two = place_json(&p, &serde_json::json!({ "x": c, "y": d }).to_string()).unwrap();
            prop_assert_ne!(&one.key, &two.key);
            prop_assert_ne!(one.ehk, two.ehk);
        }
    }

    // ---- evenness over shards ----

    /// Counts hash keys per range when the key space is cut into `2^bits` equal ranges.
    fn histogram(keys: impl Iterator<Item = u128>, bits: u32) -> Vec<u32> {
        let mut counts = vec![0u32; 1 << bits];
        for key in keys {
            counts[usize::try_from(key >> (128 - bits)).unwrap()] += 1;
        }
        counts
    }

    fn max_over_min(counts: &[u32]) -> f64 {
        let max = *counts.iter().max().unwrap();
        let min = *counts.iter().min().unwrap();
        assert!(min > 0, "{counts:?}");
        f64::from(max) / f64::from(min)
    }

    #[test]
    fn explicit_hash_keys_of_field_values_spread_evenly() {
        // 100,000 values over 4 shards: 25,000 expected each, standard deviation ~137, so a 5%
        // bound is about 9 standard deviations; over 16 shards, 6,250 each (sd ~77), 10%.
        let n = 100_000u32;
        let p = partitioner("random", None, None, Some("field:device_id"));
        let ehk = |doc: String| place_json(&p, &doc).unwrap().ehk.unwrap();
        let names: Vec<u128> = (0..n)
            .map(|i| ehk(format!(r#"{{"device_id":"device-{i}"}}"#)))
            .collect();
        let numbers: Vec<u128> = (0..n)
            .map(|i| ehk(format!(r#"{{"device_id":{i}}}"#)))
            .collect();
        for keys in [&names, &numbers] {
            let four = histogram(keys.iter().copied(), 2);
            assert!(max_over_min(&four) < 1.05, "{four:?}");
            let sixteen = histogram(keys.iter().copied(), 4);
            assert!(max_over_min(&sixteen) < 1.10, "{sixteen:?}");
        }
    }

    #[test]
    fn random_keys_spread_evenly_over_four_shards() {
        let n = 100_000;
        let mut rng = StdRng::seed_from_u64(20_240_601);
        let p = partitioner("random", None, None, None);
        let keys: Vec<u128> = (0..n)
            .map(|_| hash_key(place(&p, b"{}", None, &mut rng).unwrap().key))
            .collect();
        let four = histogram(keys.into_iter(), 2);
        assert_eq!(four.iter().sum::<u32>(), n);
        assert!(max_over_min(&four) < 1.05, "{four:?}");

        let p = partitioner("constant:k", None, None, Some("random"));
        let ehks = (0..n).map(|_| place(&p, b"{}", None, &mut rng).unwrap().ehk.unwrap());
        let four = histogram(ehks, 2);
        assert!(max_over_min(&four) < 1.05, "{four:?}");
    }
}
