//! A scanner for well-formed result files. Returns `None` on anything it
//! does not handle (the caller then parses with serde). Numbers are parsed
//! with `str::parse`, which rounds correctly, like Python's `json`.

use super::Annotations;
use crate::parallel;

struct Scan<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Scan<'a> {
    #[inline]
    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if c == b' ' || c == b'\n' || c == b'\r' || c == b'\t' {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    #[inline]
    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    #[inline]
    fn eat(&mut self, c: u8) -> Option<()> {
        if self.peek()? == c {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    /// A string without escapes (keys); `None` if it has any.
    fn key(&mut self) -> Option<&'a [u8]> {
        self.eat(b'"')?;
        let start = self.i;
        loop {
            match *self.b.get(self.i)? {
                b'"' => break,
                b'\\' => return None,
                _ => self.i += 1,
            }
        }
        let k = &self.b[start..self.i];
        self.i += 1;
        Some(k)
    }

    fn number_token(&mut self) -> Option<&'a str> {
        self.ws();
        let start = self.i;
        while let Some(&c) = self.b.get(self.i) {
            if c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E') {
                self.i += 1;
            } else {
                break;
            }
        }
        let tok = &self.b[start..self.i];
        // JSON numbers start with '-' or a digit
        match tok.first() {
            Some(c) if *c == b'-' || c.is_ascii_digit() => std::str::from_utf8(tok).ok(),
            _ => None,
        }
    }

    /// A number, or Python's `NaN`, `Infinity`, `-Infinity`.
    fn f64(&mut self) -> Option<f64> {
        self.ws();
        let rest = &self.b[self.i..];
        for (token, value) in [
            (&b"NaN"[..], f64::NAN),
            (b"Infinity", f64::INFINITY),
            (b"-Infinity", f64::NEG_INFINITY),
        ] {
            if rest.starts_with(token) {
                self.i += token.len();
                return Some(value);
            }
        }
        self.number_token()?.parse().ok()
    }

    fn i64(&mut self) -> Option<i64> {
        self.number_token()?.parse().ok()
    }

    /// Skips any JSON value.
    fn skip(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => {
                self.i += 1;
                loop {
                    match *self.b.get(self.i)? {
                        b'"' => {
                            self.i += 1;
                            return Some(());
                        }
                        b'\\' => self.i += 2,
                        _ => self.i += 1,
                    }
                }
            }
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match *self.b.get(self.i)? {
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return Some(());
                            }
                        }
                        b'"' => {
                            self.skip()?;
                            continue;
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
            }
            b't' | b'f' | b'n' => {
                for word in [&b"true"[..], b"false", b"null"] {
                    if self.b[self.i..].starts_with(word) {
                        self.i += word.len();
                        return Some(());
                    }
                }
                None
            }
            _ => self.number_token().map(|_| ()),
        }
    }
}

#[inline]
fn is_ws(c: u8) -> bool {
    c == b' ' || c == b'\n' || c == b'\r' || c == b'\t'
}

/// Parses `{...}` objects separated by commas in `b[start..stop]`; a
/// trailing comma is accepted only when `more` (another chunk follows).
fn objects(b: &[u8], start: usize, stop: usize, more: bool) -> Option<Annotations> {
    let mut s = Scan {
        b: &b[..stop],
        i: start,
    };
    let mut c = Annotations::default();
    let cap = (stop - start) / 64;
    c.image_id.reserve(cap);
    c.category_id.reserve(cap);
    c.bbox.reserve(4 * cap);
    c.area.reserve(cap);
    c.score.reserve(cap);
    loop {
        s.eat(b'{')?;
        let (mut img, mut cat, mut bbox, mut score) = (None, None, None, None);
        if s.peek()? != b'}' {
            loop {
                let key = s.key()?;
                s.eat(b':')?;
                match key {
                    b"image_id" => img = Some(s.i64()?),
                    b"category_id" => cat = Some(s.i64()?),
                    b"score" => score = Some(s.f64()?),
                    b"bbox" => {
                        s.eat(b'[')?;
                        let mut v = [0.0f64; 4];
                        for (j, slot) in v.iter_mut().enumerate() {
                            if j > 0 {
                                s.eat(b',')?;
                            }
                            *slot = s.f64()?;
                        }
                        s.eat(b']')?;
                        bbox = Some(v);
                    }
                    _ => s.skip()?,
                }
                match s.peek()? {
                    b',' => s.i += 1,
                    b'}' => break,
                    _ => return None,
                }
            }
        }
        s.i += 1; // '}'
        let (img, cat, bbox, score) = (img?, cat?, bbox?, score?);
        c.image_id.push(img);
        c.category_id.push(cat);
        c.bbox.extend_from_slice(&bbox);
        c.area.push(bbox[2] * bbox[3]);
        c.score.push(score);
        match s.peek() {
            Some(b',') => {
                s.i += 1;
                if s.peek().is_none() {
                    return more.then_some(c);
                }
            }
            None => return (!more).then_some(c),
            _ => return None,
        }
    }
}

/// Start of the object after the first `}` `,` `{` at or after `from`.
fn split_after(b: &[u8], from: usize, stop: usize) -> Option<usize> {
    let mut i = from;
    while i < stop {
        if b[i] == b'}' {
            let mut j = i + 1;
            while j < stop && is_ws(b[j]) {
                j += 1;
            }
            if j < stop && b[j] == b',' {
                j += 1;
                while j < stop && is_ws(b[j]) {
                    j += 1;
                }
                if j < stop && b[j] == b'{' {
                    return Some(j);
                }
            }
        }
        i += 1;
    }
    None
}

/// The results in `b`, parsed in up to 8 chunks on `num_threads` workers
/// (see [`parallel::resolve`]) when the document is large.
pub(super) fn results(b: &[u8], num_threads: usize) -> Option<Annotations> {
    let mut s = Scan { b, i: 0 };
    s.eat(b'[')?;
    let open = s.i;
    let mut end = b.len();
    while end > open && is_ws(b[end - 1]) {
        end -= 1;
    }
    if end <= open || b[end - 1] != b']' {
        return None;
    }
    let close = end - 1;
    let mut c = if b[open..close].iter().all(|&x| is_ws(x)) {
        Annotations::default()
    } else {
        // Large files: parse chunks split at object boundaries in
        // parallel. A split inside a string makes a chunk fail, and the
        // caller then falls back to serde.
        let chunks = if close - open > 1 << 22 {
            parallel::resolve(num_threads).clamp(1, 8)
        } else {
            1
        };
        let mut bounds = vec![open];
        for t in 1..chunks {
            let target = open + (close - open) * t / chunks;
            match split_after(b, target.max(*bounds.last()?), close) {
                Some(p) => bounds.push(p),
                None => break,
            }
        }
        bounds.push(close);
        let n = bounds.len() - 1;
        let parts: Vec<Option<Annotations>> = if n > 1 {
            use rayon::prelude::*;
            parallel::with_threads(num_threads, || {
                (0..n)
                    .into_par_iter()
                    .map(|k| objects(b, bounds[k], bounds[k + 1], k + 1 < n))
                    .collect()
            })
            .ok()?
        } else {
            vec![objects(b, open, close, false)]
        };
        let mut all = Annotations::default();
        for part in parts {
            let part = part?;
            all.image_id.extend(part.image_id);
            all.category_id.extend(part.category_id);
            all.bbox.extend(part.bbox);
            all.area.extend(part.area);
            all.score.extend(part.score);
        }
        all
    };
    let n = c.image_id.len();
    c.id = (1..=n as i64).collect();
    c.iscrowd = vec![0; n];
    Some(c)
}
