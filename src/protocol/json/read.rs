//! The readers: serde_json's parser, step for step where it decides what
//! is accepted and what a number is.

use super::{Json, JsonError};

/// A correctly rounded parse of a JSON number's text, if the host has one
/// of its own ([`read_floats_with`]).
static FLOATS: std::sync::OnceLock<fn(&str) -> f64> = std::sync::OnceLock::new();

/// Numbers with a fraction or an exponent are read with `parse`, a
/// correctly rounded parse (the browser's `parseFloat`), from now on.
pub fn read_floats_with(parse: fn(&str) -> f64) {
    let _ = FLOATS.set(parse);
}

/// serde_json's powers of ten for its (not correctly rounded) decimal to
/// binary conversion: 1e0 to 1e308, each the `f64` nearest to it. It
/// keeps them in a table of literals; here the table is computed the first
/// time a number needs it (a few milliseconds, once), which is 2.5 KB less
/// data in the wasm. Built once, not per number: a text of many numbers
/// like `1e300` costs a lookup each, as in serde_json.
pub(super) fn pow10(n: usize) -> Option<f64> {
    static TABLE: std::sync::OnceLock<Vec<f64>> = std::sync::OnceLock::new();
    if n <= 22 {
        // Every power up to 1e22 is exact in an f64, so is each product.
        return Some((0..n).fold(1.0, |f, _| f * 10.0));
    }
    TABLE
        .get_or_init(|| (0..=308).map(nearest_pow10).collect())
        .get(n)
        .copied()
}

/// The `f64` nearest to `10^n`, for `n` at most 308.
fn nearest_pow10(n: usize) -> f64 {
    // 10^n = 5^n * 2^n: 5^n exactly, in 32-bit limbs, least first.
    let mut limbs: Vec<u32> = vec![1];
    for _ in 0..n {
        let mut carry = 0u64;
        for limb in limbs.iter_mut() {
            let v = u64::from(*limb) * 5 + carry;
            *limb = v as u32;
            carry = v >> 32;
        }
        if carry > 0 {
            limbs.push(carry as u32);
        }
    }
    // Its top 64 bits, with a sticky bit for any below them, so the
    // conversion to f64 rounds to nearest (ties to even) as if it saw
    // all of them.
    let top = limbs.len() - 1;
    let bits = top * 32 + (32 - limbs[top].leading_zeros() as usize);
    let shift = bits.saturating_sub(64);
    let bit = |i: usize| (limbs[i / 32] >> (i % 32)) & 1;
    let mut m = 0u64;
    for i in (shift..bits).rev() {
        m = (m << 1) | u64::from(bit(i));
    }
    if (0..shift).any(|i| bit(i) == 1) {
        m |= 1;
    }
    // Times 2^(shift + n), exactly: at most 2^960.
    let scale = f64::from_bits(((1023 + shift + n) as u64) << 52);
    m as f64 * scale
}

pub(super) struct Reader<'a> {
    s: &'a [u8],
    i: usize,
}

type Result<T, E = JsonError> = std::result::Result<T, E>;

/// `a * 10 + b` would exceed `max`.
fn overflows(a: u64, b: u64, max: u64) -> bool {
    a >= max / 10 && (a > max / 10 || b > max % 10)
}

impl<'a> Reader<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Reader {
            s: text.as_bytes(),
            i: 0,
        }
    }

    fn fail<T>(&self, what: &'static str) -> Result<T> {
        // Line and column of the last byte read, counted as serde_json does.
        let upto = &self.s[..self.i.min(self.s.len())];
        let line = 1 + upto.iter().filter(|&&b| b == b'\n').count();
        let column = upto.iter().rev().take_while(|&&b| b != b'\n').count();
        Err(JsonError { what, line, column })
    }

    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    #[inline(always)]
    fn peek_or_null(&self) -> u8 {
        self.peek().unwrap_or(0)
    }

    #[inline(always)]
    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }

    #[inline(always)]
    fn whitespace(&mut self) -> Option<u8> {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.i += 1;
        }
        self.peek()
    }

    pub(super) fn end(&mut self) -> Result<()> {
        match self.whitespace() {
            Some(_) => self.fail("trailing characters"),
            None => Ok(()),
        }
    }

    fn ident(&mut self, rest: &[u8]) -> Result<()> {
        for &expected in rest {
            match self.next() {
                None => return self.fail("EOF while parsing a value"),
                Some(b) if b != expected => return self.fail("expected ident"),
                Some(_) => {}
            }
        }
        Ok(())
    }

    pub(super) fn value(&mut self, depth: u8) -> Result<Json> {
        let Some(peek) = self.whitespace() else {
            return self.fail("EOF while parsing a value");
        };
        Ok(match peek {
            b'n' | b't' | b'f' => {
                self.i += 1;
                let (rest, value): (&[u8], _) = match peek {
                    b'n' => (b"ull", Json::Null),
                    b't' => (b"rue", Json::Bool(true)),
                    _ => (b"alse", Json::Bool(false)),
                };
                self.ident(rest)?;
                value
            }
            b'-' | b'0'..=b'9' => {
                let start = self.i;
                self.i += usize::from(peek == b'-');
                match self.integer(peek != b'-')? {
                    Json::F64(approximate) => Json::F64(self.float(start, approximate)?),
                    exact => exact,
                }
            }
            b'"' => {
                self.i += 1;
                Json::String(self.string()?)
            }
            b'[' | b'{' => {
                let depth = depth - 1;
                if depth == 0 {
                    return self.fail("nested more than 127 arrays or objects deep");
                }
                self.i += 1;
                if peek == b'[' {
                    self.array(depth)?
                } else {
                    self.object(depth)?
                }
            }
            _ => return self.fail("expected value"),
        })
    }

    fn array(&mut self, depth: u8) -> Result<Json> {
        let mut items = Vec::new();
        if self.whitespace() == Some(b']') {
            self.i += 1;
            return Ok(Json::Array(items));
        }
        loop {
            items.push(self.value(depth)?);
            match self.whitespace() {
                Some(b',') => {
                    self.i += 1;
                    if self.whitespace() == Some(b']') {
                        return self.fail("trailing comma");
                    }
                }
                Some(b']') => {
                    self.i += 1;
                    return Ok(Json::Array(items));
                }
                Some(_) => return self.fail("expected `,` or `]`"),
                None => return self.fail("EOF while parsing a list"),
            }
        }
    }

    fn object(&mut self, depth: u8) -> Result<Json> {
        let mut entries = Vec::new();
        if self.whitespace() == Some(b'}') {
            self.i += 1;
            return Ok(Json::Object(entries));
        }
        loop {
            match self.whitespace() {
                Some(b'"') => self.i += 1,
                Some(b'}') => return self.fail("trailing comma"),
                Some(_) => return self.fail("key must be a string"),
                None => return self.fail("EOF while parsing an object"),
            }
            let key = self.string()?;
            match self.whitespace() {
                Some(b':') => self.i += 1,
                Some(_) => return self.fail("expected `:`"),
                None => return self.fail("EOF while parsing an object"),
            }
            entries.push((key, self.value(depth)?));
            match self.whitespace() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Json::object(entries));
                }
                Some(_) => return self.fail("expected `,` or `}`"),
                None => return self.fail("EOF while parsing an object"),
            }
        }
    }

    // Numbers, as serde_json's `parse_integer` and what it calls.

    fn integer(&mut self, positive: bool) -> Result<Json> {
        match self.next() {
            None => self.fail("EOF while parsing a value"),
            Some(b'0') => {
                if self.peek_or_null().is_ascii_digit() {
                    return self.fail("invalid number");
                }
                self.number(positive, 0)
            }
            Some(c @ b'1'..=b'9') => {
                let mut significand = u64::from(c - b'0');
                while let c @ b'0'..=b'9' = self.peek_or_null() {
                    let digit = u64::from(c - b'0');
                    if overflows(significand, digit, u64::MAX) {
                        return Ok(Json::F64(self.long_integer(positive, significand)?));
                    }
                    self.i += 1;
                    significand = significand * 10 + digit;
                }
                self.number(positive, significand)
            }
            Some(_) => self.fail("invalid number"),
        }
    }

    fn number(&mut self, positive: bool, significand: u64) -> Result<Json> {
        Ok(match self.peek_or_null() {
            b'.' => Json::F64(self.decimal(positive, significand, 0)?),
            b'e' | b'E' => Json::F64(self.exponent(positive, significand, 0)?),
            _ if positive => Json::U64(significand),
            _ => {
                let neg = (significand as i64).wrapping_neg();
                // A float on underflow, and for `-0`.
                if neg >= 0 {
                    Json::F64(-(significand as f64))
                } else {
                    Json::I64(neg)
                }
            }
        })
    }

    fn decimal(&mut self, positive: bool, mut significand: u64, before: i32) -> Result<f64> {
        self.i += 1;
        let mut after = 0;
        while let c @ b'0'..=b'9' = self.peek_or_null() {
            let digit = u64::from(c - b'0');
            if overflows(significand, digit, u64::MAX) {
                // Further digits are dropped.
                while self.peek_or_null().is_ascii_digit() {
                    self.i += 1;
                }
                return self.exponent_or_parts(positive, significand, before + after);
            }
            self.i += 1;
            significand = significand * 10 + digit;
            after -= 1;
        }
        if after == 0 {
            return match self.peek() {
                Some(_) => self.fail("invalid number"),
                None => self.fail("EOF while parsing a value"),
            };
        }
        self.exponent_or_parts(positive, significand, before + after)
    }

    fn exponent_or_parts(
        &mut self,
        positive: bool,
        significand: u64,
        exponent: i32,
    ) -> Result<f64> {
        match self.peek_or_null() {
            b'e' | b'E' => self.exponent(positive, significand, exponent),
            _ => self.f64_from_parts(positive, significand, exponent),
        }
    }

    fn exponent(&mut self, positive: bool, significand: u64, starting: i32) -> Result<f64> {
        self.i += 1;
        let positive_exp = match self.peek_or_null() {
            b'+' => {
                self.i += 1;
                true
            }
            b'-' => {
                self.i += 1;
                false
            }
            _ => true,
        };
        let mut exp = match self.next() {
            None => return self.fail("EOF while parsing a value"),
            Some(c @ b'0'..=b'9') => i32::from(c - b'0'),
            Some(_) => return self.fail("invalid number"),
        };
        while let c @ b'0'..=b'9' = self.peek_or_null() {
            self.i += 1;
            let digit = i32::from(c - b'0');
            if overflows(exp as u64, digit as u64, i32::MAX as u64) {
                // Infinity is an error; zero stays zero.
                if significand != 0 && positive_exp {
                    return self.fail("number out of range");
                }
                while self.peek_or_null().is_ascii_digit() {
                    self.i += 1;
                }
                return Ok(if positive { 0.0 } else { -0.0 });
            }
            exp = exp * 10 + digit;
        }
        let exponent = if positive_exp {
            starting.saturating_add(exp)
        } else {
            starting.saturating_sub(exp)
        };
        self.f64_from_parts(positive, significand, exponent)
    }

    fn long_integer(&mut self, positive: bool, significand: u64) -> Result<f64> {
        let mut exponent = 0;
        loop {
            match self.peek_or_null() {
                b'0'..=b'9' => {
                    self.i += 1;
                    exponent += 1;
                }
                b'.' => return self.decimal(positive, significand, exponent),
                b'e' | b'E' => return self.exponent(positive, significand, exponent),
                _ => return self.f64_from_parts(positive, significand, exponent),
            }
        }
    }

    fn f64_from_parts(&self, positive: bool, significand: u64, mut exponent: i32) -> Result<f64> {
        let mut f = significand as f64;
        loop {
            match pow10(exponent.unsigned_abs() as usize) {
                Some(pow) => {
                    if exponent >= 0 {
                        f *= pow;
                        if f.is_infinite() {
                            return self.fail("number out of range");
                        }
                    } else {
                        f /= pow;
                    }
                    break;
                }
                None => {
                    if f == 0.0 {
                        break;
                    }
                    if exponent >= 0 {
                        return self.fail("number out of range");
                    }
                    f /= 1e308;
                    exponent += 308;
                }
            }
        }
        Ok(if positive { f } else { -f })
    }

    /// The number the text from `start` to here (valid JSON) is: by a
    /// correctly rounded parse, where the conversion above (serde_json's
    /// without its `float_roundtrip`) read about one double in ten that
    /// `JSON.stringify` wrote as its neighbour, so an app's
    /// `0.9577971067778701` was stored as `0.95779710677787` (a review).
    /// The wasm asks the browser's (`read_floats_with`): Rust's own
    /// costs it 14.7 KB gzipped; without one it keeps `approximate`.
    fn float(&self, start: usize, approximate: f64) -> Result<f64> {
        let text = std::str::from_utf8(&self.s[start..self.i]).unwrap_or_default();
        // Text that is `approximate`'s shortest form reads as it, as any
        // correct parse would: nine numbers in ten, with no call out of
        // the wasm (a write of 10,000 doubles took 5-10 ms more with a
        // `parseFloat` each).
        if approximate.is_finite() && digits(text) == Some(digits_of(approximate)) {
            return Ok(approximate);
        }
        let parsed = match FLOATS.get() {
            Some(parse) => parse(text),
            #[cfg(not(target_arch = "wasm32"))]
            None => text.parse().unwrap_or(approximate),
            #[cfg(target_arch = "wasm32")]
            None => approximate,
        };
        if parsed.is_finite() {
            Ok(parsed)
        } else {
            self.fail("number out of range")
        }
    }

    // Strings, after the opening quote.

    fn string(&mut self) -> Result<String> {
        let mut out: Vec<u8> = Vec::new();
        let mut start = self.i;
        loop {
            match self.next() {
                None => return self.fail("EOF while parsing a string"),
                Some(b'"') => {
                    out.extend_from_slice(&self.s[start..self.i - 1]);
                    // Whole UTF-8 sequences of valid text, and escapes
                    // that decode to scalar values: still UTF-8.
                    return String::from_utf8(out).or_else(|_| self.fail("invalid unicode"));
                }
                Some(b'\\') => {
                    out.extend_from_slice(&self.s[start..self.i - 1]);
                    self.escape(&mut out)?;
                    start = self.i;
                }
                Some(0x00..=0x1F) => return self.fail("control character while parsing a string"),
                Some(_) => {}
            }
        }
    }

    fn escape(&mut self, out: &mut Vec<u8>) -> Result<()> {
        let c = match self.next() {
            None => return self.fail("EOF while parsing a string"),
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\x08',
            Some(b'f') => '\x0c',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                let n = self.hex4()?;
                let c = match n {
                    0xDC00..=0xDFFF => return self.fail("lone leading surrogate in hex escape"),
                    0xD800..=0xDBFF => {
                        if self.next() != Some(b'\\') || self.next() != Some(b'u') {
                            return self.fail("unexpected end of hex escape");
                        }
                        let n2 = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&n2) {
                            return self.fail("lone leading surrogate in hex escape");
                        }
                        0x1_0000 + ((u32::from(n - 0xD800) << 10) | u32::from(n2 - 0xDC00))
                    }
                    _ => u32::from(n),
                };
                char::from_u32(c).unwrap_or('\u{FFFD}')
            }
            Some(_) => return self.fail("invalid escape"),
        };
        let mut buf = [0; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
        Ok(())
    }

    fn hex4(&mut self) -> Result<u16> {
        if self.s.len() - self.i < 4 {
            self.i = self.s.len();
            return self.fail("EOF while parsing a string");
        }
        let mut n = 0u16;
        for _ in 0..4 {
            let b = self.s[self.i];
            self.i += 1;
            let digit = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                b'A'..=b'F' => b - b'A' + 10,
                _ => return self.fail("invalid escape"),
            };
            n = (n << 4) | u16::from(digit);
        }
        Ok(n)
    }

    // The syntax check, as serde_json's `ignore_value`: iterative, with
    // the open brackets on a stack, so no input is too deep.

    pub(super) fn skip_value(&mut self) -> Result<()> {
        let mut open: Vec<u8> = Vec::new();
        loop {
            // A value.
            let Some(peek) = self.whitespace() else {
                return self.fail("EOF while parsing a value");
            };
            match peek {
                b'n' | b't' | b'f' => {
                    self.i += 1;
                    let rest: &[u8] = match peek {
                        b'n' => b"ull",
                        b't' => b"rue",
                        _ => b"alse",
                    };
                    self.ident(rest)?;
                }
                b'-' => {
                    self.i += 1;
                    self.skip_number()?;
                }
                b'0'..=b'9' => self.skip_number()?,
                b'"' => {
                    self.i += 1;
                    self.skip_string()?;
                }
                b'[' | b'{' => {
                    self.i += 1;
                    let close = if peek == b'[' { b']' } else { b'}' };
                    if self.whitespace() == Some(close) {
                        self.i += 1;
                    } else {
                        open.push(close);
                        if close == b'}' {
                            self.skip_key()?;
                        }
                        continue;
                    }
                }
                _ => return self.fail("expected value"),
            }
            // After a value: a comma and the next, or closing brackets.
            loop {
                let Some(&close) = open.last() else {
                    return Ok(());
                };
                match self.whitespace() {
                    Some(b',') => {
                        self.i += 1;
                        if close == b'}' {
                            self.skip_key()?;
                        }
                        break;
                    }
                    Some(b) if b == close => {
                        self.i += 1;
                        open.pop();
                    }
                    Some(_) if close == b']' => return self.fail("expected `,` or `]`"),
                    Some(_) => return self.fail("expected `,` or `}`"),
                    None if close == b']' => return self.fail("EOF while parsing a list"),
                    None => return self.fail("EOF while parsing an object"),
                }
            }
        }
    }

    fn skip_key(&mut self) -> Result<()> {
        match self.whitespace() {
            Some(b'"') => self.i += 1,
            Some(_) => return self.fail("key must be a string"),
            None => return self.fail("EOF while parsing an object"),
        }
        self.skip_string()?;
        match self.whitespace() {
            Some(b':') => {
                self.i += 1;
                Ok(())
            }
            Some(_) => self.fail("expected `:`"),
            None => self.fail("EOF while parsing an object"),
        }
    }

    fn skip_number(&mut self) -> Result<()> {
        match self.next() {
            Some(b'0') => {
                if self.peek_or_null().is_ascii_digit() {
                    return self.fail("invalid number");
                }
            }
            Some(b'1'..=b'9') => self.skip_digits(),
            _ => return self.fail("invalid number"),
        }
        if self.peek_or_null() == b'.' {
            self.i += 1;
            if !self.peek_or_null().is_ascii_digit() {
                return self.fail("invalid number");
            }
            self.skip_digits();
        }
        if let b'e' | b'E' = self.peek_or_null() {
            self.i += 1;
            if let b'+' | b'-' = self.peek_or_null() {
                self.i += 1;
            }
            if !self.next().is_some_and(|b| b.is_ascii_digit()) {
                return self.fail("invalid number");
            }
            self.skip_digits();
        }
        Ok(())
    }

    fn skip_digits(&mut self) {
        while self.peek_or_null().is_ascii_digit() {
            self.i += 1;
        }
    }

    fn skip_string(&mut self) -> Result<()> {
        loop {
            match self.next() {
                None => return self.fail("EOF while parsing a string"),
                Some(b'"') => return Ok(()),
                Some(b'\\') => match self.next() {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {}
                    Some(b'u') => {
                        self.hex4()?;
                    }
                    None => return self.fail("EOF while parsing a string"),
                    Some(_) => return self.fail("invalid escape"),
                },
                Some(0x00..=0x1F) => return self.fail("control character while parsing a string"),
                Some(_) => {}
            }
        }
    }
}

/// A number's digits as `(significand, power of ten)`, trailing zeros
/// taken into the power; `None` past a `u64`'s digits. The text is a
/// valid JSON number.
fn digits(text: &str) -> Option<(u64, i32)> {
    let (mut significand, mut exponent, mut after_point) = (0u64, 0i32, false);
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        match c {
            b'0'..=b'9' => {
                significand = significand
                    .checked_mul(10)?
                    .checked_add(u64::from(c - b'0'))?;
                exponent -= i32::from(after_point);
            }
            b'.' => after_point = true,
            b'e' | b'E' => break,
            _ => {}
        }
        i += 1;
    }
    if let Some(power) = bytes.get(i + 1..) {
        let (negative, power) = match power.split_first() {
            Some((b'-', rest)) => (true, rest),
            Some((b'+', rest)) => (false, rest),
            _ => (false, power),
        };
        let mut n: i32 = 0;
        for d in power {
            n = n.checked_mul(10)?.checked_add(i32::from(d - b'0'))?;
        }
        exponent = exponent.checked_add(if negative { -n } else { n })?;
    }
    while significand != 0 && significand % 10 == 0 {
        significand /= 10;
        exponent += 1;
    }
    Some((significand, exponent))
}

/// The digits of `f`'s shortest form (as `write_f64` writes it), as
/// [`digits`] reads them.
fn digits_of(f: f64) -> (u64, i32) {
    let mut buffer = zmij::Buffer::new();
    digits(buffer.format_finite(f.abs())).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn powers_of_ten_are_the_nearest_f64s() {
        for n in 0..=308 {
            let nearest: f64 = format!("1e{n}").parse().unwrap();
            assert_eq!(super::pow10(n), Some(nearest), "1e{n}");
        }
        assert_eq!(super::pow10(309), None);
    }
}
