//! The JSON values of COCO records as pycocotools (Python's `json`) reads
//! them: ids that are integers, integral floats or strings; numbers that may
//! be `NaN`, `Infinity` or `-Infinity`; crowd flags as 0/1, booleans or
//! floats; boxes as lists of at least four numbers.

use std::collections::HashMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};

/// Python's `json` writes non-finite floats as these bare tokens; before
/// serde sees a document they become strings holding a NUL and the token
/// ([`rewrite_non_finite`]), which [`Number`] reads back.
const NON_FINITE: [(&[u8], f64); 3] = [
    (b"-Infinity", f64::NEG_INFINITY),
    (b"Infinity", f64::INFINITY),
    (b"NaN", f64::NAN),
];

/// The string a non-finite token is rewritten to (without quotes).
fn sentinel(token: &[u8]) -> Vec<u8> {
    let mut s = b"\\u0000".to_vec();
    s.extend_from_slice(token);
    s
}

/// `bytes` with every bare `NaN`, `Infinity` and `-Infinity` outside strings,
/// and every number beyond the range of `f64` (`1e400`, which Python reads as
/// `inf`), replaced by a sentinel string, or `None` if there is none.
pub fn rewrite_non_finite(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out: Vec<u8> = Vec::new();
    let mut changed = false;
    let mut copied = 0;
    let mut i = 0;
    let mut in_string = false;
    while i < bytes.len() {
        let c = bytes[i];
        if in_string {
            match c {
                b'\\' => i += 1,
                b'"' => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if c == b'"' {
            in_string = true;
            i += 1;
            continue;
        }
        // (token to write as a sentinel, bytes it replaces)
        let mut found: Option<(&[u8], usize)> = None;
        if matches!(c, b'N' | b'I' | b'-') {
            found = NON_FINITE
                .iter()
                .find(|(t, _)| bytes[i..].starts_with(t))
                .map(|(t, _)| (*t, t.len()));
        }
        if found.is_none() && (c == b'-' || c.is_ascii_digit()) {
            let len = bytes[i..]
                .iter()
                .take_while(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
                .count();
            let value = std::str::from_utf8(&bytes[i..i + len])
                .ok()
                .and_then(|t| t.parse::<f64>().ok());
            match value {
                Some(v) if v.is_infinite() => {
                    let token: &[u8] = if v < 0.0 { b"-Infinity" } else { b"Infinity" };
                    found = Some((token, len));
                }
                _ => {
                    i += len.max(1);
                    continue;
                }
            }
        }
        match found {
            Some((token, len)) => {
                out.extend_from_slice(&bytes[copied..i]);
                out.push(b'"');
                out.extend_from_slice(&sentinel(token));
                out.push(b'"');
                i += len;
                copied = i;
                changed = true;
            }
            None => i += 1,
        }
    }
    changed.then(|| {
        out.extend_from_slice(&bytes[copied..]);
        out
    })
}

/// The message of a serde error without serde_json's ` at line L column C`
/// (the outermost error gets the position once).
pub fn bare(e: &impl fmt::Display) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) if s[i..].contains(" column ") => s[..i].to_owned(),
        _ => s,
    }
}

/// A number: integer, float or a non-finite sentinel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Number(pub f64);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Number;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Number, E> {
                Ok(Number(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Number, E> {
                Ok(Number(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Number, E> {
                Ok(Number(v as f64))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Number, E> {
                NON_FINITE
                    .iter()
                    .find(|(t, _)| v.strip_prefix('\0').is_some_and(|s| s.as_bytes() == *t))
                    .map(|&(_, x)| Number(x))
                    .ok_or_else(|| de::Error::invalid_type(de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_any(V)
    }
}

/// An id as pycocotools keys it: an integer (an integral float is the same
/// Python dict key), or a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Id {
    Int(i64),
    Str(String),
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer or a string id")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
                Ok(Id::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
                i64::try_from(v)
                    .map(Id::Int)
                    .map_err(|_| E::custom(format!("id {v} is out of the int64 range")))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Id, E> {
                // 2^63 is the first float above i64::MAX.
                if v.fract() == 0.0 && v >= -(2f64.powi(63)) && v < 2f64.powi(63) {
                    Ok(Id::Int(v as i64))
                } else {
                    Err(E::custom(format!(
                        "expected an integer or a string id, got {v}"
                    )))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                if let Some(token) = v.strip_prefix('\0') {
                    return Err(E::custom(format!(
                        "expected an integer or a string id, got {token}"
                    )));
                }
                Ok(Id::Str(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

/// An integer id (annotation and category ids): a string is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntId(pub i64);

impl<'de> Deserialize<'de> for IntId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Id::deserialize(d)? {
            Id::Int(v) => Ok(IntId(v)),
            Id::Str(s) => Err(de::Error::custom(format!(
                "expected an integer id, got the string {s:?}"
            ))),
        }
    }
}

/// `iscrowd` as written in the wild: 0/1, true/false, occasionally a float.
pub struct Flag(pub u8);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Flag;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("0, 1, true or false")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Flag, E> {
                Ok(Flag(v as u8))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Flag, E> {
                Ok(Flag((v != 0) as u8))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Flag, E> {
                Ok(Flag((v != 0) as u8))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Flag, E> {
                Ok(Flag((v != 0.0) as u8))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Flag, E> {
                Ok(Flag(0))
            }
        }
        d.deserialize_any(V)
    }
}

/// A box `[x, y, w, h, ...]`: the first four numbers (pycocotools keeps any
/// extra numbers and reads the first four).
pub struct BBox(pub [f64; 4]);

impl<'de> Deserialize<'de> for BBox {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BBox;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of at least 4 numbers [x, y, w, h]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<BBox, A::Error> {
                let mut v = [0.0; 4];
                let mut n = 0usize;
                while let Some(Number(x)) = seq.next_element::<Number>()? {
                    if n < 4 {
                        v[n] = x;
                    }
                    n += 1;
                }
                if n < 4 {
                    return Err(de::Error::invalid_length(n, &self));
                }
                Ok(BBox(v))
            }
        }
        d.deserialize_seq(V)
    }
}

/// Image ids of one document: all integers, or all strings. Strings get
/// provisional codes in first-seen order; [`ImageIds::finish`] turns them
/// into ranks in sorted order, the order of `np.unique` on the strings.
#[derive(Default)]
pub struct ImageIds {
    codes: HashMap<String, i64>,
    first_int: Option<String>,
    first_str: Option<String>,
}

impl ImageIds {
    /// The code of `id`; `at` names the record for the mixed-kind message.
    pub fn code(&mut self, id: Id, at: impl Fn() -> String) -> Result<i64, String> {
        match id {
            Id::Int(v) => {
                if let Some(first) = &self.first_str {
                    return Err(format!(
                        "image id {v} is an integer but {first} is a string; \
                         image ids must be all integers or all strings"
                    ));
                }
                self.first_int.get_or_insert_with(at);
                Ok(v)
            }
            Id::Str(s) => {
                if let Some(first) = &self.first_int {
                    return Err(format!(
                        "image id {s:?} is a string but {first} is an integer; \
                         image ids must be all integers or all strings"
                    ));
                }
                self.first_str.get_or_insert_with(at);
                let next = self.codes.len() as i64;
                Ok(*self.codes.entry(s).or_insert(next))
            }
        }
    }

    /// The sorted names (empty for integer ids) and, for string ids, the
    /// map from provisional codes to final ones.
    pub fn finish(self) -> (Vec<String>, Option<Vec<i64>>) {
        if self.codes.is_empty() {
            return (Vec::new(), None);
        }
        let mut names: Vec<(String, i64)> = self.codes.into_iter().collect();
        names.sort_unstable();
        let mut remap = vec![0i64; names.len()];
        for (rank, (_, provisional)) in names.iter().enumerate() {
            remap[*provisional as usize] = rank as i64;
        }
        (names.into_iter().map(|(s, _)| s).collect(), Some(remap))
    }
}

/// Applies [`ImageIds::finish`]'s map to a column of codes.
pub fn remap(column: &mut [i64], map: &[i64]) {
    for c in column {
        *c = map[*c as usize];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_only_bare_non_finite_tokens() {
        let doc = br#"[NaN, "NaN", -Infinity, {"a": Infinity}, "x\"NaN"]"#;
        let out = rewrite_non_finite(doc).unwrap();
        let v: Vec<serde_json::Value> = serde_json::from_slice(&out).unwrap();
        assert_eq!(v[1], "NaN");
        assert_eq!(v[4], "x\"NaN");
        let nums: Vec<Number> = serde_json::from_slice(b"[1, 2.5]").unwrap();
        assert_eq!(nums, vec![Number(1.0), Number(2.5)]);
        let nums: Vec<Number> =
            serde_json::from_slice(&rewrite_non_finite(b"[NaN,Infinity,-Infinity]").unwrap())
                .unwrap();
        assert!(nums[0].0.is_nan());
        assert_eq!(nums[1].0, f64::INFINITY);
        assert_eq!(nums[2].0, f64::NEG_INFINITY);
        assert!(rewrite_non_finite(br#"{"name": "NaN"}"#).is_none());
        assert!(rewrite_non_finite(br#"{"a": [1e300, -2.5, 17]}"#).is_none());
        let big: Vec<Number> =
            serde_json::from_slice(&rewrite_non_finite(b"[1e400, -1E+999, 5]").unwrap()).unwrap();
        assert_eq!(
            big,
            vec![
                Number(f64::INFINITY),
                Number(f64::NEG_INFINITY),
                Number(5.0)
            ]
        );
        assert!(serde_json::from_slice::<Number>(br#""NaN""#).is_err());
    }

    #[test]
    fn reads_ids_as_python_keys_them() {
        let ids: Vec<Id> = serde_json::from_slice(br#"[3, 4.0, "a", -2]"#).unwrap();
        assert_eq!(
            ids,
            vec![Id::Int(3), Id::Int(4), Id::Str("a".into()), Id::Int(-2)]
        );
        assert!(serde_json::from_slice::<Id>(b"1.5").is_err());
        assert!(serde_json::from_slice::<Id>(b"18446744073709551615").is_err());
        assert!(serde_json::from_slice::<IntId>(br#""7""#).is_err());
        let b: BBox = serde_json::from_slice(b"[1, 2, 3, 4, 5, 6]").unwrap();
        assert_eq!(b.0, [1.0, 2.0, 3.0, 4.0]);
        assert!(serde_json::from_slice::<BBox>(b"[1, 2, 3]").is_err());
    }

    #[test]
    fn string_image_ids_get_sorted_codes() {
        let mut ids = ImageIds::default();
        let at = || "images[0].id".to_owned();
        assert_eq!(ids.code(Id::Str("b".into()), at), Ok(0));
        assert_eq!(ids.code(Id::Str("a".into()), at), Ok(1));
        assert_eq!(ids.code(Id::Str("b".into()), at), Ok(0));
        assert!(ids
            .code(Id::Int(1), at)
            .unwrap_err()
            .contains("all integers or all strings"));
        let (names, map) = ids.finish();
        assert_eq!(names, vec!["a", "b"]);
        let mut col = vec![0, 1, 0];
        remap(&mut col, &map.unwrap());
        assert_eq!(col, vec![1, 0, 1]);
    }
}
