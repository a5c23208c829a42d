//! Hash keys: where a record falls in a stream's 128-bit hash key space.
//!
//! Kinesis places every record by a 128-bit hash key: the MD5 digest of the partition key's UTF-8
//! bytes read as a big-endian integer, or the explicit hash key the producer gives instead. This
//! module owns that arithmetic and the decimal text form the API uses for hash keys
//! (`ExplicitHashKey`, a shard's `HashKeyRange`): `0` or a decimal integer without leading zeros,
//! at most 2^128-1.

use md5::{Digest, Md5};

/// The largest hash key, 2^128-1: the end of the last shard's range.
pub const HASH_KEY_MAX: u128 = u128::MAX;

/// MD5 digest of `bytes` (16 bytes).
pub fn md5(bytes: &[u8]) -> [u8; 16] {
    Md5::digest(bytes).into()
}

/// The hash key of a partition key: MD5 of its UTF-8 bytes as a big-endian 128-bit integer.
///
/// Takes anything byte-like, so a `&str` key and the bytes a key was extracted as give the same
/// answer.
pub fn hash_key(partition_key: impl AsRef<[u8]>) -> u128 {
    u128::from_be_bytes(md5(partition_key.as_ref()))
}

/// Parses a hash key in the API's decimal form: `0` or `[1-9][0-9]*`, at most 2^128-1.
///
/// # Errors
///
/// [`HashKeyError`] says what is wrong: empty text, a leading zero, a character that is not an
/// ASCII digit (signs and spaces included), or a value above 2^128-1.
pub fn parse_hash_key(text: &str) -> Result<u128, HashKeyError> {
    let bytes = text.as_bytes();
    match bytes {
        [] => return Err(HashKeyError::Empty),
        [b'0', _, ..] => return Err(HashKeyError::LeadingZero),
        _ => {}
    }
    let mut value: u128 = 0;
    for (index, found) in text.char_indices() {
        // `to_digit` knows only the ASCII digits.
        let digit = found
            .to_digit(10)
            .ok_or(HashKeyError::NotADigit { index, found })?;
        value = value
            .checked_mul(10)
            .and_then(|v| v.checked_add(u128::from(digit)))
            .ok_or(HashKeyError::TooLarge)?;
    }
    Ok(value)
}

/// Formats a hash key in the API's decimal form (the inverse of [`parse_hash_key`]).
pub fn format_hash_key(key: u128) -> String {
    key.to_string()
}

/// Why a text is not a valid hash key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HashKeyError {
    /// The text is empty.
    #[error("empty hash key; expected a decimal integer from 0 to 2^128-1")]
    Empty,
    /// More than one digit and the first is `0`.
    #[error("hash key has a leading zero; expected a decimal integer from 0 to 2^128-1")]
    LeadingZero,
    /// A character that is not an ASCII digit, at byte `index`.
    #[error(
        "hash key has {found:?} at byte {index}; expected only the digits 0-9 (a decimal integer from 0 to 2^128-1)"
    )]
    NotADigit {
        /// Byte offset of the character.
        index: usize,
        /// The character.
        found: char,
    },
    /// The value is above 2^128-1.
    #[error("hash key is larger than 2^128-1 (340282366920938463463374607431768211455)")]
    TooLarge,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Digests from RFC 1321's test suite and well-known values.
    #[test]
    fn md5_known_values() {
        let hex = |d: [u8; 16]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
        assert_eq!(hex(md5(b"")), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(hex(md5(b"a")), "0cc175b9c0f1b6a831c399e269772661");
        assert_eq!(hex(md5(b"abc")), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            hex(md5(b"message digest")),
            "f96b697d7cb7938d525a2f31aaf161d0"
        );
        assert_eq!(
            hex(md5(b"The quick brown fox jumps over the lazy dog")),
            "9e107d9d372bb6826bd81d3542a419d6"
        );
    }

    /// The decimal hash keys were computed independently with Python:
    /// `int.from_bytes(hashlib.md5(key.encode()).digest(), "big")`.
    #[test]
    fn hash_keys_of_partition_keys() {
        assert_eq!(hash_key(""), 281949768489412648962353822266799178366);
        assert_eq!(hash_key("a"), 16955237001963240173058271559858726497);
        assert_eq!(hash_key("abc"), 191415658344158766168031473277922803570);
        assert_eq!(
            hash_key("device-1"),
            277901890176008628857739572313990950024
        );
        // Non-ASCII keys hash their UTF-8 bytes.
        assert_eq!(hash_key("clé"), 216065962979188862129025276172069957765);
        assert_eq!(hash_key("clé".as_bytes()), hash_key("clé"));
        assert_eq!(hash_key("a"), 0x0cc175b9c0f1b6a831c399e269772661);
    }

    #[test]
    fn parse_accepts_the_api_form() {
        assert_eq!(parse_hash_key("0"), Ok(0));
        assert_eq!(parse_hash_key("7"), Ok(7));
        assert_eq!(
            parse_hash_key("170141183460469231731687303715884105728"),
            Ok(1u128 << 127)
        );
        assert_eq!(
            parse_hash_key("340282366920938463463374607431768211455"),
            Ok(HASH_KEY_MAX)
        );
    }

    #[test]
    fn parse_rejects_with_clear_errors() {
        assert_eq!(parse_hash_key(""), Err(HashKeyError::Empty));
        assert_eq!(parse_hash_key("00"), Err(HashKeyError::LeadingZero));
        assert_eq!(parse_hash_key("012"), Err(HashKeyError::LeadingZero));
        assert_eq!(
            parse_hash_key("12a"),
            Err(HashKeyError::NotADigit {
                index: 2,
                found: 'a'
            })
        );
        assert_eq!(
            parse_hash_key("+1"),
            Err(HashKeyError::NotADigit {
                index: 0,
                found: '+'
            })
        );
        assert_eq!(
            parse_hash_key(" 1"),
            Err(HashKeyError::NotADigit {
                index: 0,
                found: ' '
            })
        );
        // Non-ASCII digits are not digits here.
        assert_eq!(
            parse_hash_key("1٣"),
            Err(HashKeyError::NotADigit {
                index: 1,
                found: '٣'
            })
        );
        assert_eq!(
            parse_hash_key("340282366920938463463374607431768211456"),
            Err(HashKeyError::TooLarge)
        );
        assert_eq!(
            parse_hash_key("9999999999999999999999999999999999999999"),
            Err(HashKeyError::TooLarge)
        );
        let msg = parse_hash_key("12a").unwrap_err().to_string();
        assert!(msg.contains("'a' at byte 2"), "{msg}");
    }

    proptest! {
        #[test]
        fn format_then_parse_is_identity(key: u128) {
            let text = format_hash_key(key);
            prop_assert!(text.len() <= 39);
            prop_assert_eq!(parse_hash_key(&text), Ok(key));
        }

        #[test]
        fn parse_agrees_with_the_api_pattern(text in "[0-9+ a-]{0,41}") {
            // The API pattern: 0|([1-9]\d{0,38}), and at most 2^128-1.
            let pattern_ok = text == "0"
                || (!text.is_empty()
                    && text.len() <= 39
                    && !text.starts_with('0')
                    && text.bytes().all(|b| b.is_ascii_digit()));
            match parse_hash_key(&text) {
                Ok(v) => {
                    prop_assert!(pattern_ok);
                    prop_assert_eq!(format_hash_key(v), text);
                }
                Err(HashKeyError::TooLarge) => {
                    prop_assert!(text.len() >= 39);
                }
                Err(_) => prop_assert!(!pattern_ok),
            }
        }
    }
}
