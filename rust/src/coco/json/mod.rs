//! COCO ground-truth and result files, parsed into columns.
//!
//! Only what bbox evaluation needs is kept (image ids, categories, and per
//! annotation id, image, category, box, area, crowd flag, score); every other
//! field (segmentation, captions, licenses, ...) is skipped while parsing.

use std::fmt;
use std::path::Path;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::error::{Error, Result};

/// Annotation columns. `bbox` is `[x, y, w, h]` flattened.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Annotations {
    pub id: Vec<i64>,
    pub image_id: Vec<i64>,
    pub category_id: Vec<i64>,
    pub bbox: Vec<f64>,
    pub area: Vec<f64>,
    pub iscrowd: Vec<u8>,
    pub score: Vec<f64>,
}

impl Annotations {
    pub fn len(&self) -> usize {
        self.image_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.image_id.is_empty()
    }
}

/// A category entry of a ground-truth file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Category {
    pub id: i64,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub supercategory: Option<String>,
}

/// A parsed ground-truth file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroundTruthFile {
    pub image_ids: Vec<i64>,
    pub categories: Vec<Category>,
    pub annotations: Annotations,
}

/// `iscrowd` as written in the wild: 0/1, true/false, occasionally a float.
struct Flag(u8);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Flag;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("0, 1, true or false")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Flag, E> {
                Ok(Flag(v as u8))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Flag, E> {
                Ok(Flag((v != 0) as u8))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Flag, E> {
                Ok(Flag((v != 0) as u8))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Flag, E> {
                Ok(Flag((v != 0.0) as u8))
            }
            fn visit_unit<E: de::Error>(self) -> std::result::Result<Flag, E> {
                Ok(Flag(0))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
struct RawImage {
    id: i64,
}

#[derive(Deserialize)]
struct RawGt {
    #[serde(default)]
    id: Option<i64>,
    image_id: i64,
    category_id: i64,
    #[serde(default)]
    bbox: Option<[f64; 4]>,
    #[serde(default)]
    area: Option<f64>,
    #[serde(default)]
    iscrowd: Option<Flag>,
}

#[derive(Deserialize)]
struct RawDt {
    image_id: i64,
    category_id: i64,
    #[serde(default)]
    bbox: Option<[f64; 4]>,
    score: f64,
}

struct GtAnnotations(Annotations);

impl<'de> Deserialize<'de> for GtAnnotations {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = GtAnnotations;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of annotations")
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut c = Annotations::default();
                while let Some(a) = seq.next_element::<RawGt>()? {
                    let n = c.image_id.len();
                    let bbox = a.bbox.ok_or_else(|| {
                        de::Error::custom(format!("annotation {n} has no \"bbox\""))
                    })?;
                    c.id.push(a.id.unwrap_or(n as i64 + 1));
                    c.image_id.push(a.image_id);
                    c.category_id.push(a.category_id);
                    c.bbox.extend_from_slice(&bbox);
                    c.area.push(a.area.unwrap_or(bbox[2] * bbox[3]));
                    c.iscrowd.push(a.iscrowd.map_or(0, |f| f.0));
                }
                Ok(GtAnnotations(c))
            }
        }
        d.deserialize_seq(V)
    }
}

struct DtAnnotations(Annotations);

impl<'de> Deserialize<'de> for DtAnnotations {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DtAnnotations;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a list of results ({\"image_id\", \"category_id\", \"bbox\", \"score\"})",
                )
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut c = Annotations::default();
                if let Some(n) = seq.size_hint() {
                    c.image_id.reserve(n);
                }
                while let Some(a) = seq.next_element::<RawDt>()? {
                    let n = c.image_id.len();
                    let bbox = a
                        .bbox
                        .ok_or_else(|| de::Error::custom(format!("result {n} has no \"bbox\"")))?;
                    // loadRes: id from 1, area = w * h, iscrowd 0.
                    c.id.push(n as i64 + 1);
                    c.image_id.push(a.image_id);
                    c.category_id.push(a.category_id);
                    c.bbox.extend_from_slice(&bbox);
                    c.area.push(bbox[2] * bbox[3]);
                    c.iscrowd.push(0);
                    c.score.push(a.score);
                }
                Ok(DtAnnotations(c))
            }
        }
        d.deserialize_seq(V)
    }
}

impl<'de> Deserialize<'de> for GroundTruthFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = GroundTruthFile;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a COCO object with \"images\", \"annotations\" and \"categories\"")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut out = GroundTruthFile::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        "images" => {
                            let imgs: Vec<RawImage> = map.next_value()?;
                            out.image_ids = imgs.into_iter().map(|i| i.id).collect();
                        }
                        "annotations" => out.annotations = map.next_value::<GtAnnotations>()?.0,
                        "categories" => out.categories = map.next_value()?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        msg: e.to_string(),
    })
}

fn parse_error(source: &str, e: serde_json::Error) -> Error {
    Error::Parse {
        source: source.to_string(),
        msg: format!("not a valid COCO file: {e}"),
    }
}

/// Parses a ground-truth document; `source` names it in errors.
pub fn parse_ground_truth(bytes: &[u8], source: &str) -> Result<GroundTruthFile> {
    serde_json::from_slice(bytes).map_err(|e| parse_error(source, e))
}

/// Parses a result document (a list of detections), with `loadRes`' fields.
///
/// A direct scanner handles the usual layout (an array of flat objects with
/// integer ids, a numeric `bbox` and `score`; other keys skipped); anything
/// else goes through serde, which also produces the error messages.
pub fn parse_results(bytes: &[u8], source: &str) -> Result<Annotations> {
    if let Some(a) = fast::results(bytes) {
        return Ok(a);
    }
    serde_json::from_slice::<DtAnnotations>(bytes)
        .map(|d| d.0)
        .map_err(|e| parse_error(source, e))
}

/// A scanner for well-formed result files. Returns `None` on anything it
/// does not handle (the caller then parses with serde). Numbers are parsed
/// with `str::parse`, which rounds correctly, like Python's `json`.
mod fast {
    use super::Annotations;

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

        fn f64(&mut self) -> Option<f64> {
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

    pub(super) fn results(b: &[u8]) -> Option<Annotations> {
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
                rayon::current_num_threads().clamp(1, 8)
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
                (0..n)
                    .into_par_iter()
                    .map(|k| objects(b, bounds[k], bounds[k + 1], k + 1 < n))
                    .collect()
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
}

/// Reads and parses a ground-truth file.
pub fn load_ground_truth(path: &Path) -> Result<GroundTruthFile> {
    let bytes = read(path)?;
    parse_ground_truth(&bytes, &path.display().to_string())
}

/// Reads and parses a result file.
pub fn load_results(path: &Path) -> Result<Annotations> {
    let bytes = read(path)?;
    parse_results(&bytes, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ground_truth_and_skips_other_fields() {
        let doc = br#"{"info": {"year": 2017}, "images": [{"id": 3, "file_name": "a.jpg"}],
            "annotations": [{"id": 9, "image_id": 3, "category_id": 1, "bbox": [1, 2, 3.5, 4],
            "area": 12.5, "iscrowd": 1, "segmentation": [[1, 2, 3, 4]]},
            {"id": 10, "image_id": 3, "category_id": 1, "bbox": [0, 0, 2, 2], "iscrowd": false}],
            "categories": [{"id": 1, "name": "cat", "supercategory": "animal"}]}"#;
        let gt = parse_ground_truth(doc, "gt.json").unwrap();
        assert_eq!(gt.image_ids, vec![3]);
        assert_eq!(gt.annotations.id, vec![9, 10]);
        assert_eq!(gt.annotations.bbox[..4], [1.0, 2.0, 3.5, 4.0]);
        assert_eq!(gt.annotations.area, vec![12.5, 4.0]);
        assert_eq!(gt.annotations.iscrowd, vec![1, 0]);
        assert_eq!(gt.categories[0].name, "cat");
    }

    #[test]
    fn parses_results_like_load_res() {
        let doc = br#"[{"image_id": 3, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.30000000000000004},
            {"image_id": 3, "category_id": 2, "bbox": [0, 0, 2, 0.5], "score": 0.5}]"#;
        let dt = parse_results(doc, "dt.json").unwrap();
        assert_eq!(dt.id, vec![1, 2]);
        assert_eq!(dt.area, vec![12.0, 1.0]);
        assert_eq!(dt.score[0], 0.1 + 0.2);
    }

    #[test]
    fn scanner_equals_serde() {
        let docs: [&[u8]; 6] = [
            br#"[]"#,
            br#" [ {"image_id": 3, "category_id": 1, "bbox": [1, 2.5e1, 3, 4], "score": 0.30000000000000004,
                "segmentation": {"size": [2, 2], "counts": "a\"b]"}, "extra": [true, null, {"x": [1]}]} ] "#,
            br#"[{"score": 1e-7, "bbox": [-0.0, 0.1, 1E2, 7], "category_id": -2, "image_id": 0}]"#,
            br#"[{"image_id": 1.0, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 1}]"#,
            br#"[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3], "score": 1}]"#,
            br#"[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 1},]"#,
        ];
        for doc in docs {
            let slow = serde_json::from_slice::<DtAnnotations>(doc)
                .map(|d| d.0)
                .ok();
            let quick = fast::results(doc);
            if quick.is_some() {
                assert_eq!(quick, slow, "{}", String::from_utf8_lossy(doc));
            } else {
                // the scanner declines; serde decides (and reports errors)
                assert!(parse_results(doc, "x").is_ok() == slow.is_some());
            }
        }
        assert!(fast::results(docs[1]).is_some());
        // chunked parsing of a large document equals serde's
        let mut big = String::from("[");
        for i in 0..120_000 {
            if i > 0 {
                big.push_str(if i % 3 == 0 { ",\n " } else { "," });
            }
            big.push_str(&format!(
                "{{\"image_id\": {}, \"category_id\": {}, \"bbox\": [{}.25, 1e-3, {}.5, 7], \"score\": 0.{}}}",
                i % 97,
                i % 7,
                i,
                i % 13,
                i
            ));
        }
        big.push(']');
        let quick = fast::results(big.as_bytes()).unwrap();
        let slow = serde_json::from_slice::<DtAnnotations>(big.as_bytes())
            .unwrap()
            .0;
        assert_eq!(quick, slow);
        assert!(fast::results(docs[2]).is_some());
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let err = parse_results(b"[{\"image_id\": 1}]", "dt.json").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("dt.json: "), "{msg}");
        assert!(msg.contains("category_id"), "{msg}");
        let err = parse_ground_truth(b"{\"images\": [", "gt.json").unwrap_err();
        assert!(err.to_string().contains("gt.json"));
        let err = load_results(Path::new("/nonexistent/x.json")).unwrap_err();
        assert!(matches!(err, Error::Io { .. }));
    }
}
