//! One pass over a delivery body that does everything the intake needs of it: checks the JSON,
//! keeps the few top levels the payload fields live in (objects up to `data.status`; arrays and
//! anything deeper are only checked), and, when asked, writes the canonical JSON (keys sorted,
//! compact) that the body's idempotency key hashes. Input that is already canonical is copied
//! in long runs; only whitespace, escapes and numbers written otherwise, and objects whose keys
//! are out of order, are rewritten.
//!
//! It handles what senders write (plain and escaped strings, integers, decimals in their
//! shortest form, keys in any order) and gives up on the rest, for which the caller falls back to
//! the serde_json tree: so every body it accepts is one serde_json accepts, and its canonical
//! text is byte for byte what serde_json prints for the body as a `Value`.

use std::borrow::Cow;

use super::Json;

/// Nesting beyond this is left to serde_json (which refuses beyond 128); also bounds recursion.
const MAX_DEPTH: usize = 100;
/// Objects at this depth or shallower are kept (root 0, `data` 1, `data.status` 2).
const KEEP_DEPTH: usize = 2;

/// Bytes that end a run of plain string text: the quote, a backslash, control characters.
static STOPS_PLAIN_STRING: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        t[b] = true;
        b += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// The scan met something it leaves to serde_json: possibly an error, possibly just unusual.
#[derive(Debug)]
pub(super) struct GiveUp;

type Scanned<T> = Result<T, GiveUp>;

/// Scans `text`; returns the kept top of the tree and, if `canonical`, the canonical JSON.
pub(super) fn scan(text: &str, canonical: bool) -> Scanned<(Json<'_>, Option<Vec<u8>>)> {
    let mut s = Scanner {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        out: canonical.then(|| Vec::with_capacity(text.len())),
        copied_to: 0,
        entries: Vec::new(),
        scratch: Vec::new(),
    };
    let root = s.value(0)?;
    s.skip_ws();
    if s.pos != s.bytes.len() {
        return Err(GiveUp);
    }
    s.flush(s.pos);
    Ok((root, s.out))
}

/// An object entry already written to the output: its key and where `"key":value` lies.
struct Entry<'a> {
    key: Cow<'a, str>,
    start: usize,
    end: usize,
}

struct Scanner<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    /// The canonical text so far, then `bytes[copied_to..pos]`: input that is already in
    /// canonical form is not copied token by token but in one piece when something differs
    /// (whitespace, an escape or number written otherwise, keys to reorder) or at the end.
    out: Option<Vec<u8>>,
    copied_to: usize,
    /// Entries of every open object, innermost last (one stack: no allocation per object).
    entries: Vec<Entry<'a>>,
    scratch: Vec<u8>,
}

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    #[inline(always)]
    fn skip_ws(&mut self) {
        // Compact bodies have no whitespace: one comparison in the common case.
        if let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.skip_ws_run();
        }
    }

    #[cold]
    fn skip_ws_run(&mut self) {
        let start = self.pos;
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.pos += 1;
        }
        self.replace(start, self.pos, b"");
    }

    /// Copies the pending input up to `upto` into the output.
    fn flush(&mut self, upto: usize) {
        if let Some(out) = self.out.as_mut() {
            out.extend_from_slice(&self.bytes[self.copied_to..upto]);
            self.copied_to = upto;
        }
    }

    /// Writes `bytes` in place of the input `from..to`.
    fn replace(&mut self, from: usize, to: usize, bytes: &[u8]) {
        if self.out.is_some() {
            self.flush(from);
            if let Some(out) = self.out.as_mut() {
                out.extend_from_slice(bytes);
            }
            self.copied_to = to;
        }
    }

    /// Where the input at `pos` lands in the output.
    fn out_pos(&self) -> usize {
        self.out
            .as_ref()
            .map_or(0, |out| out.len() + self.pos - self.copied_to)
    }

    /// A value at `depth` that the tree keeps.
    fn value(&mut self, depth: usize) -> Scanned<Json<'a>> {
        self.skip_ws();
        match self.peek().ok_or(GiveUp)? {
            b'{' => Ok(self
                .object(depth, true)?
                .map_or(Json::Skipped, Json::Object)),
            b'"' => Ok(self.string(true)?.map_or(Json::Skipped, Json::String)),
            b't' => self.literal(b"true").map(|()| Json::Bool(true)),
            b'f' => self.literal(b"false").map(|()| Json::Bool(false)),
            b'n' => self.literal(b"null").map(|()| Json::Null),
            _ => self.skip(depth).map(|()| Json::Skipped),
        }
    }

    /// A value at `depth` that is only checked (and written): nothing is built for it.
    fn skip(&mut self, depth: usize) -> Scanned<()> {
        self.skip_ws();
        match self.peek().ok_or(GiveUp)? {
            b'{' => self.object(depth, false).map(drop),
            b'[' => self.array(depth),
            b'"' => self.string(false).map(drop),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(GiveUp),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Scanned<()> {
        if !self.bytes[self.pos..].starts_with(word) {
            return Err(GiveUp);
        }
        self.pos += word.len();
        Ok(())
    }

    /// An object; its entries (sorted by key) when the tree keeps it.
    #[allow(clippy::type_complexity)]
    fn object(
        &mut self,
        depth: usize,
        keep: bool,
    ) -> Scanned<Option<Vec<(Cow<'a, str>, Json<'a>)>>> {
        if depth > MAX_DEPTH {
            return Err(GiveUp);
        }
        let expand = keep && depth <= KEEP_DEPTH;
        let mut kept = Vec::new();
        self.pos += 1;
        let base = self.entries.len();
        self.skip_ws();
        let body_start = self.out_pos();
        if self.peek() == Some(b'}') {
            self.pos += 1;
        } else {
            loop {
                self.skip_ws();
                if self.peek() != Some(b'"') {
                    return Err(GiveUp);
                }
                let start = self.out_pos();
                // The key is needed to keep the entry or to put it in order.
                let key = self.string(expand || self.out.is_some())?;
                self.skip_ws();
                if self.peek() != Some(b':') {
                    return Err(GiveUp);
                }
                self.pos += 1;
                if expand {
                    let value = self.value(depth + 1)?;
                    self.record(key.clone(), start);
                    kept.push((key.ok_or(GiveUp)?, value));
                } else {
                    self.skip(depth + 1)?;
                    self.record(key, start);
                }
                if self.closed_after_member(b'}')? {
                    break;
                }
            }
        }
        self.sort_entries(base, body_start);
        self.entries.truncate(base);
        if !expand {
            return Ok(None);
        }
        if !kept.is_sorted_by(|a, b| a.0 <= b.0) {
            kept.sort_by(|a, b| a.0.cmp(&b.0));
        }
        Ok(Some(kept))
    }

    /// Notes an entry written from `start` up to here, to put the object in order later.
    fn record(&mut self, key: Option<Cow<'a, str>>, start: usize) {
        if let Some(key) = key
            && self.out.is_some()
        {
            let end = self.out_pos();
            self.entries.push(Entry { key, start, end });
        }
    }

    /// Rewrites the object's entries (from `base` on the stack, written from `body_start`) in
    /// key order, keeping only the last of a repeated key, as a serde_json map does.
    fn sort_entries(&mut self, base: usize, body_start: usize) {
        if self.out.is_none() || self.entries[base..].windows(2).all(|w| w[0].key < w[1].key) {
            return;
        }
        // Everything up to the closing brace (which stays pending) is needed in the output.
        self.flush(self.pos - 1);
        let Some(out) = self.out.as_mut() else {
            return;
        };
        let entries = &mut self.entries[base..];
        // Stable: of equal keys the last written stays last.
        entries.sort_by(|a, b| a.key.cmp(&b.key));
        self.scratch.clear();
        self.scratch.extend_from_slice(&out[body_start..]);
        out.truncate(body_start);
        let mut first = true;
        for (i, e) in entries.iter().enumerate() {
            if entries.get(i + 1).is_some_and(|next| next.key == e.key) {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(&self.scratch[e.start - body_start..e.end - body_start]);
        }
    }

    /// After an object's or array's member: a comma (more follow) or `close` (the end).
    #[inline(always)]
    fn closed_after_member(&mut self, close: u8) -> Scanned<bool> {
        self.skip_ws();
        match self.peek() {
            Some(b',') => {
                self.pos += 1;
                Ok(false)
            }
            Some(b) if b == close => {
                self.pos += 1;
                Ok(true)
            }
            _ => Err(GiveUp),
        }
    }

    fn array(&mut self, depth: usize) -> Scanned<()> {
        if depth > MAX_DEPTH {
            return Err(GiveUp);
        }
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
        } else {
            loop {
                self.skip(depth + 1)?;
                if self.closed_after_member(b']')? {
                    break;
                }
            }
        }
        Ok(())
    }

    /// A string at `pos` (the opening quote), left in the output as written where that is
    /// serde_json's escaping; its text is returned when `want` (borrowed unless it had escapes).
    fn string(&mut self, want: bool) -> Scanned<Option<Cow<'a, str>>> {
        let start = self.pos + 1;
        // The common case: no escapes.
        let len = self.bytes[start..]
            .iter()
            .position(|&b| STOPS_PLAIN_STRING[usize::from(b)])
            .ok_or(GiveUp)?;
        let mut i = start + len;
        if self.bytes[i] == b'"' {
            self.pos = i + 1;
            return Ok(want.then(|| Cow::Borrowed(&self.text[start..i])));
        }
        let mut decoded = String::new();
        let mut run = start;
        loop {
            match *self.bytes.get(i).ok_or(GiveUp)? {
                b'"' => {
                    if want {
                        decoded.push_str(&self.text[run..i]);
                    }
                    self.pos = i + 1;
                    return Ok(want.then_some(Cow::Owned(decoded)));
                }
                b'\\' => {
                    if want {
                        decoded.push_str(&self.text[run..i]);
                    }
                    let (c, len) = self.escape(i)?;
                    if want {
                        decoded.push(c);
                    }
                    self.canonical_escape(i, len, c);
                    i += len;
                    run = i;
                }
                0..=0x1f => return Err(GiveUp),
                _ => i += 1,
            }
        }
    }

    /// The char of the escape at `at` (the backslash) and the escape's length in bytes.
    fn escape(&self, at: usize) -> Scanned<(char, usize)> {
        let c = match self.bytes.get(at + 1).ok_or(GiveUp)? {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = self.hex4(at + 2)?;
                return match hi {
                    0xD800..=0xDBFF => {
                        // A surrogate pair; a lone half is left to serde_json.
                        if self.bytes.get(at + 6..at + 8) != Some(b"\\u") {
                            return Err(GiveUp);
                        }
                        let lo = self.hex4(at + 8)?;
                        if !(0xDC00..=0xDFFF).contains(&lo) {
                            return Err(GiveUp);
                        }
                        let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                        Ok((char::from_u32(cp).ok_or(GiveUp)?, 12))
                    }
                    _ => Ok((char::from_u32(hi).ok_or(GiveUp)?, 6)),
                };
            }
            _ => return Err(GiveUp),
        };
        Ok((c, 2))
    }

    fn hex4(&self, at: usize) -> Scanned<u32> {
        let digits = self.bytes.get(at..at + 4).ok_or(GiveUp)?;
        digits.iter().try_fold(0u32, |acc, &d| {
            let v = (d as char).to_digit(16).ok_or(GiveUp)?;
            Ok(acc * 16 + v)
        })
    }

    /// Leaves the escape at `at` (`len` bytes, decoding to `c`) as it is if serde_json writes
    /// `c` that way, else writes it the way serde_json does.
    fn canonical_escape(&mut self, at: usize, len: usize, c: char) {
        if self.out.is_none() {
            return;
        }
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; 6];
        let canonical: &[u8] = match c {
            '"' => b"\\\"",
            '\\' => b"\\\\",
            '\u{8}' => b"\\b",
            '\t' => b"\\t",
            '\n' => b"\\n",
            '\u{c}' => b"\\f",
            '\r' => b"\\r",
            c if (c as u32) < 0x20 => {
                let b = c as usize;
                buf = [b'\\', b'u', b'0', b'0', HEX[b >> 4], HEX[b & 0xf]];
                &buf
            }
            c => c.encode_utf8(&mut buf[..4]).as_bytes(),
        };
        if &self.bytes[at..at + len] != canonical {
            self.replace(at, at + len, canonical);
        }
    }

    /// A number. Integers and decimals already in their shortest form are copied; anything
    /// else (exponents, long or negative-zero numbers, trailing zeros) is read and written by
    /// serde_json itself, so it comes out exactly as a `Value` would print it.
    fn number(&mut self) -> Scanned<()> {
        let start = self.pos;
        let b = self.bytes;
        let mut i = start;
        let negative = b[i] == b'-';
        if negative {
            i += 1;
        }
        let int_start = i;
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while b.get(i).is_some_and(u8::is_ascii_digit) {
                    i += 1;
                }
            }
            _ => return Err(GiveUp),
        }
        let int = &b[int_start..i];
        let mut frac: &[u8] = &[];
        if b.get(i) == Some(&b'.') {
            let frac_start = i + 1;
            i = frac_start;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == frac_start {
                return Err(GiveUp);
            }
            frac = &b[frac_start..i];
        }
        let mut exponent = false;
        if let Some(b'e' | b'E') = b.get(i) {
            exponent = true;
            i += 1;
            if let Some(b'+' | b'-') = b.get(i) {
                i += 1;
            }
            let exp_start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == exp_start {
                return Err(GiveUp);
            }
        }
        self.pos = i;
        if !exponent && is_shortest(negative, int, frac) {
            return Ok(());
        }
        let n: serde_json::Number =
            serde_json::from_str(&self.text[start..i]).map_err(|_| GiveUp)?;
        if self.out.is_some() {
            let printed = n.to_string();
            self.replace(start, i, printed.as_bytes());
        }
        Ok(())
    }
}

/// Whether serde_json prints this number (no exponent) exactly as written.
///
/// An integer of up to 18 digits is an `i64`/`u64` and printed as is. A decimal with at most 15
/// significant digits is parsed exactly (its digits and power of ten are exact doubles, so
/// serde_json's one division is correctly rounded), and 15 digits always survive the round trip,
/// so its shortest form (ryu) has those digits; ryu prints plain notation for 1e-5 ≤ |x| < 1e16
/// and ends an integral value with `.0`. Negative zero is left to serde_json.
fn is_shortest(negative: bool, int: &[u8], frac: &[u8]) -> bool {
    let zero_int = int == b"0";
    if frac.is_empty() {
        return int.len() <= 18 && !(negative && zero_int);
    }
    if frac == b"0" {
        return (!zero_int && int.len() <= 15) || (zero_int && !negative);
    }
    if frac.last() == Some(&b'0') {
        return false;
    }
    if zero_int {
        let leading_zeros = frac.iter().take_while(|&&d| d == b'0').count();
        leading_zeros < 5 && frac.len() - leading_zeros <= 15
    } else {
        int.len() + frac.len() <= 15
    }
}
