//! JSON number text to `f64`, fast for the common short forms (`72`, `-3.25`).

/// Exact powers of ten as f64 (all up to 1e22 are exact).
const POW10: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// The value of JSON number text (as checked by the SDK's scanner), correctly rounded; numbers
/// beyond the f64 range become ±infinity. `None` only for text that is not a number.
///
/// Text of the form `-?digits(.digits)?` with at most 15 digits takes a fast path: the digits
/// form an integer below 2^53, exactly representable, and dividing it by an exact power of ten is
/// one correctly rounded operation (Clinger's fast path), so the result equals the correctly
/// rounded value of the text. Everything else goes through `str::parse`. Allocates nothing.
#[must_use]
#[inline]
pub fn parse(text: &[u8]) -> Option<f64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    if digits.len() > 16 {
        // More than 15 digits (plus a point).
        return slow(text);
    }
    let mut mantissa: u64 = 0;
    let mut count = 0usize;
    // Digits before the point; `usize::MAX` while no point was seen.
    let mut point = usize::MAX;
    for &b in digits {
        let digit = b.wrapping_sub(b'0');
        if digit < 10 {
            mantissa = mantissa * 10 + u64::from(digit);
            count += 1;
        } else if b == b'.' && point == usize::MAX {
            point = count;
        } else {
            return slow(text);
        }
    }
    let scale = if point == usize::MAX {
        0
    } else {
        count - point
    };
    if count == 0 || count > 15 || (point != usize::MAX && scale == 0) {
        return slow(text);
    }
    // mantissa < 10^15 < 2^53: exact as i64 and as f64 (a signed conversion is one instruction
    // in WebAssembly and on x86-64, an unsigned one is not).
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_wrap)]
    let magnitude = mantissa as i64 as f64 / *POW10.get(scale)?;
    Some(if negative { -magnitude } else { magnitude })
}

#[inline(never)]
fn slow(text: &[u8]) -> Option<f64> {
    std::str::from_utf8(text).ok()?.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::parse;

    fn check(text: &str) {
        let expected: f64 = text.parse().unwrap();
        let got = parse(text.as_bytes()).unwrap();
        assert_eq!(got.to_bits(), expected.to_bits(), "{text}");
    }

    #[test]
    fn agrees_with_std_on_many_numbers() {
        for text in [
            "0",
            "-0",
            "1",
            "-1",
            "72",
            "72.5",
            "0.1",
            "0.3",
            "-3.25",
            "123456789012345",
            "1234567890123456",
            "12345678901234567890",
            "0.000001",
            "99999999999999.9",
            "9007199254740993",
            "1e3",
            "1E-3",
            "-2.5e+10",
            "1e400",
            "-1e400",
            "1e-400",
            "0.30000000000000004",
            "3.141592653589793",
            "2.2250738585072014e-308",
        ] {
            check(text);
        }
        // Deterministic pseudo-random decimals of every short shape.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let int_digits = (state % 9) as usize;
            let frac_digits = ((state >> 8) % 12) as usize;
            let digits = format!("{:020}", state >> 4);
            let mut text = String::new();
            if state & 1 == 1 {
                text.push('-');
            }
            if int_digits == 0 {
                text.push('0');
            } else {
                text.push_str(digits[..int_digits].trim_start_matches('0'));
                if text.is_empty() || text == "-" {
                    text.push('1');
                }
            }
            if frac_digits > 0 {
                text.push('.');
                text.push_str(&digits[int_digits..int_digits + frac_digits]);
            }
            check(&text);
        }
    }

    #[test]
    fn infinities_and_junk() {
        assert_eq!(parse(b"1e400"), Some(f64::INFINITY));
        assert_eq!(parse(b"-1e400"), Some(f64::NEG_INFINITY));
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"-"), None);
        assert_eq!(parse(b"1.2.3"), None);
        assert_eq!(parse(b"\xff"), None);
    }
}
