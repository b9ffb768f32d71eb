//! COCO ground-truth and result files, parsed into columns.
//!
//! Only what bbox evaluation needs is kept (image ids, categories, and per
//! annotation id, image, category, box, area, crowd flag, score); every other
//! field (segmentation, captions, licenses, ...) is skipped while parsing.
//!
//! What pycocotools reads is read ([`values`]): `NaN`/`Infinity`/`-Infinity`
//! numbers (Python's `json.dump` output), integral float ids, string image
//! ids (all of a document's image ids are strings, or none), boxes with more
//! than four numbers (the first four are the box). A refused document gets a
//! message naming the record (`annotations[12]`), the key and what was
//! expected, then serde's line and column.

mod fast;
mod values;

use std::fmt;
use std::path::Path;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use crate::error::{Error, Result};
use values::{bare, remap, BBox, Flag, Id, ImageIds, IntId, Number};

/// Annotation columns. `bbox` is `[x, y, w, h]` flattened.
///
/// When a document's image ids are strings, `image_names` holds them sorted
/// and every image id (here and in [`GroundTruthFile::image_ids`]) is an
/// index into it; `image_names` is empty for integer ids.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Annotations {
    pub id: Vec<i64>,
    pub image_id: Vec<i64>,
    pub category_id: Vec<i64>,
    pub bbox: Vec<f64>,
    pub area: Vec<f64>,
    pub iscrowd: Vec<u8>,
    pub score: Vec<f64>,
    pub image_names: Vec<String>,
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
#[derive(Debug, Clone, PartialEq)]
pub struct Category {
    pub id: i64,
    pub name: String,
    pub supercategory: Option<String>,
}

#[derive(Deserialize)]
struct RawCategory {
    id: IntId,
    #[serde(default)]
    name: String,
    #[serde(default)]
    supercategory: Option<String>,
}

/// A parsed ground-truth file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroundTruthFile {
    pub image_ids: Vec<i64>,
    pub categories: Vec<Category>,
    pub annotations: Annotations,
}

/// The message for a refused value: record, key, what went wrong.
fn at_key<E: de::Error>(section: &str, index: usize, key: &str, e: &impl fmt::Display) -> E {
    E::custom(format!("{section}[{index}], key \"{key}\": {}", bare(e)))
}

/// Prefixes `section[index]: ` unless the message already names the record.
fn at_record<E: de::Error>(section: &str, index: usize, e: &impl fmt::Display) -> E {
    let msg = bare(e);
    if msg.starts_with(&format!("{section}[")) {
        E::custom(msg)
    } else {
        E::custom(format!("{section}[{index}]: {msg}"))
    }
}

/// Parses the value of `key` in record `section[index]`.
fn field<'de, T: Deserialize<'de>, A: MapAccess<'de>>(
    map: &mut A,
    section: &str,
    index: usize,
    key: &str,
) -> std::result::Result<T, A::Error> {
    map.next_value::<T>()
        .map_err(|e| at_key(section, index, key, &e))
}

fn missing<E: de::Error>(section: &str, index: usize, key: &str, expected: &str) -> E {
    E::custom(format!(
        "{section}[{index}]: missing key \"{key}\" (expected {expected})"
    ))
}

/// Which kind of record a list holds (ground-truth annotations or results).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    GroundTruth,
    Results,
}

impl Kind {
    fn section(self) -> &'static str {
        match self {
            Kind::GroundTruth => "annotations",
            Kind::Results => "results",
        }
    }
}

/// One annotation or result, appended to the columns.
struct RecordSeed<'a> {
    kind: Kind,
    index: usize,
    out: &'a mut Annotations,
    images: &'a mut ImageIds,
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.kind {
            Kind::GroundTruth => f.write_str("an annotation object"),
            Kind::Results => {
                f.write_str("a result object {\"image_id\", \"category_id\", \"bbox\", \"score\"}")
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        let (section, i) = (self.kind.section(), self.index);
        let (mut id, mut image, mut cat, mut bbox) = (None, None, None, None);
        let (mut area, mut crowd, mut score) = (None, None, None);
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "id" if self.kind == Kind::GroundTruth => {
                    id = Some(field::<IntId, _>(&mut map, section, i, "id")?.0)
                }
                "image_id" => image = Some(field::<Id, _>(&mut map, section, i, "image_id")?),
                "category_id" => {
                    cat = Some(field::<IntId, _>(&mut map, section, i, "category_id")?.0)
                }
                "bbox" => bbox = Some(field::<BBox, _>(&mut map, section, i, "bbox")?.0),
                "area" if self.kind == Kind::GroundTruth => {
                    area = Some(field::<Number, _>(&mut map, section, i, "area")?.0)
                }
                "iscrowd" if self.kind == Kind::GroundTruth => {
                    crowd = Some(field::<Flag, _>(&mut map, section, i, "iscrowd")?.0)
                }
                "score" if self.kind == Kind::Results => {
                    score = Some(field::<Number, _>(&mut map, section, i, "score")?.0)
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let image = image.ok_or_else(|| missing(section, i, "image_id", "an image id"))?;
        let cat = cat.ok_or_else(|| missing(section, i, "category_id", "an integer id"))?;
        let bbox = bbox.ok_or_else(|| {
            missing(
                section,
                i,
                "bbox",
                "[x, y, w, h]; only bbox results are supported",
            )
        })?;
        let image = self
            .images
            .code(image, || format!("{section}[{i}].image_id"))
            .map_err(|m| de::Error::custom(format!("{section}[{i}], key \"image_id\": {m}")))?;
        let c = self.out;
        match self.kind {
            Kind::GroundTruth => {
                c.id.push(id.unwrap_or(i as i64 + 1));
                c.area.push(area.unwrap_or(bbox[2] * bbox[3]));
                c.iscrowd.push(crowd.unwrap_or(0));
            }
            Kind::Results => {
                // loadRes: id from 1, area = w * h, iscrowd 0.
                let score = score.ok_or_else(|| missing(section, i, "score", "a number"))?;
                c.id.push(i as i64 + 1);
                c.area.push(bbox[2] * bbox[3]);
                c.iscrowd.push(0);
                c.score.push(score);
            }
        }
        c.image_id.push(image);
        c.category_id.push(cat);
        c.bbox.extend_from_slice(&bbox);
        Ok(())
    }
}

/// A list of annotations or results.
struct RecordsSeed<'a> {
    kind: Kind,
    out: &'a mut Annotations,
    images: &'a mut ImageIds,
}

impl<'de> DeserializeSeed<'de> for RecordsSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.kind {
            Kind::GroundTruth => f.write_str("a list of annotations"),
            Kind::Results => f.write_str(
                "a list of results ({\"image_id\", \"category_id\", \"bbox\", \"score\"})",
            ),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        let section = self.kind.section();
        for index in 0.. {
            let record = RecordSeed {
                kind: self.kind,
                index,
                out: &mut *self.out,
                images: &mut *self.images,
            };
            match seq.next_element_seed(record) {
                Ok(Some(())) => {}
                Ok(None) => break,
                Err(e) => return Err(at_record(section, index, &e)),
            }
        }
        Ok(())
    }
}

/// The `images` list: ids only.
struct ImagesSeed<'a> {
    out: &'a mut Vec<i64>,
    images: &'a mut ImageIds,
}

impl<'de> DeserializeSeed<'de> for ImagesSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for ImagesSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of images ({\"id\", ...})")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        #[derive(Deserialize)]
        struct RawImage {
            id: Id,
        }
        for index in 0.. {
            match seq.next_element::<RawImage>() {
                Ok(Some(img)) => {
                    let code = self
                        .images
                        .code(img.id, || format!("images[{index}].id"))
                        .map_err(|m| {
                            de::Error::custom(format!("images[{index}], key \"id\": {m}"))
                        })?;
                    self.out.push(code);
                }
                Ok(None) => break,
                Err(e) => return Err(at_record("images", index, &e)),
            }
        }
        Ok(())
    }
}

/// The `categories` list.
struct Categories(Vec<Category>);

impl<'de> Deserialize<'de> for Categories {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Categories;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of categories ({\"id\", \"name\", ...})")
            }
            fn visit_seq<A: SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> std::result::Result<Categories, A::Error> {
                let mut out = Vec::new();
                for index in 0.. {
                    match seq.next_element::<RawCategory>() {
                        Ok(Some(c)) => out.push(Category {
                            id: c.id.0,
                            name: c.name,
                            supercategory: c.supercategory,
                        }),
                        Ok(None) => break,
                        Err(e) => return Err(at_record("categories", index, &e)),
                    }
                }
                Ok(Categories(out))
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
                let mut images = ImageIds::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        "images" => map.next_value_seed(ImagesSeed {
                            out: &mut out.image_ids,
                            images: &mut images,
                        })?,
                        "annotations" => map.next_value_seed(RecordsSeed {
                            kind: Kind::GroundTruth,
                            out: &mut out.annotations,
                            images: &mut images,
                        })?,
                        "categories" => out.categories = map.next_value::<Categories>()?.0,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                let (names, codes) = images.finish();
                if let Some(codes) = codes {
                    remap(&mut out.image_ids, &codes);
                    remap(&mut out.annotations.image_id, &codes);
                }
                out.annotations.image_names = names;
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

/// A results document: the list of [`RecordsSeed`] with its own image ids.
struct ResultsFile(Annotations);

impl<'de> Deserialize<'de> for ResultsFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let mut out = Annotations::default();
        let mut images = ImageIds::default();
        RecordsSeed {
            kind: Kind::Results,
            out: &mut out,
            images: &mut images,
        }
        .deserialize(d)?;
        let (names, codes) = images.finish();
        if let Some(codes) = codes {
            remap(&mut out.image_id, &codes);
        }
        out.image_names = names;
        Ok(ResultsFile(out))
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

/// Parses with serde; a document with Python's non-finite tokens is parsed
/// again with them rewritten ([`values::rewrite_non_finite`]).
fn parse_with_non_finite<T: for<'de> Deserialize<'de>>(bytes: &[u8], source: &str) -> Result<T> {
    match serde_json::from_slice::<T>(bytes) {
        Ok(v) => Ok(v),
        Err(first) => match values::rewrite_non_finite(bytes) {
            Some(rewritten) => {
                serde_json::from_slice::<T>(&rewritten).map_err(|e| parse_error(source, e))
            }
            None => Err(parse_error(source, first)),
        },
    }
}

/// Parses a ground-truth document; `source` names it in errors.
pub fn parse_ground_truth(bytes: &[u8], source: &str) -> Result<GroundTruthFile> {
    parse_with_non_finite(bytes, source)
}

/// Parses a result document (a list of detections), with `loadRes`' fields.
pub fn parse_results(bytes: &[u8], source: &str) -> Result<Annotations> {
    parse_results_with(bytes, source, 1)
}

/// As [`parse_results`], on up to `num_threads` workers (see
/// [`crate::parallel::resolve`]).
///
/// A direct scanner handles the usual layout (an array of flat objects with
/// integer ids, a numeric `bbox` of four numbers and `score`; other keys
/// skipped); anything else goes through serde, which also produces the error
/// messages.
pub fn parse_results_with(bytes: &[u8], source: &str, num_threads: usize) -> Result<Annotations> {
    if let Some(a) = fast::results(bytes, num_threads) {
        return Ok(a);
    }
    parse_with_non_finite::<ResultsFile>(bytes, source).map(|r| r.0)
}

/// Reads and parses a ground-truth file.
pub fn load_ground_truth(path: &Path) -> Result<GroundTruthFile> {
    let bytes = read(path)?;
    parse_ground_truth(&bytes, &path.display().to_string())
}

/// Reads and parses a result file on up to `num_threads` workers.
pub fn load_results(path: &Path, num_threads: usize) -> Result<Annotations> {
    let bytes = read(path)?;
    parse_results_with(&bytes, &path.display().to_string(), num_threads)
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
            let slow = serde_json::from_slice::<ResultsFile>(doc).map(|d| d.0).ok();
            let quick = fast::results(doc, 1);
            if quick.is_some() {
                assert_eq!(quick, slow, "{}", String::from_utf8_lossy(doc));
            } else {
                // the scanner declines; serde decides (and reports errors)
                assert!(parse_results(doc, "x").is_ok() == slow.is_some());
            }
        }
        assert!(fast::results(docs[1], 1).is_some());
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
        let quick = fast::results(big.as_bytes(), 2).unwrap();
        let slow = serde_json::from_slice::<ResultsFile>(big.as_bytes())
            .unwrap()
            .0;
        assert_eq!(quick, slow);
        assert!(fast::results(docs[2], 1).is_some());
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let err = parse_results(b"[{\"image_id\": 1}]", "dt.json").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("dt.json: "), "{msg}");
        assert!(msg.contains("category_id"), "{msg}");
        let err = parse_ground_truth(b"{\"images\": [", "gt.json").unwrap_err();
        assert!(err.to_string().contains("gt.json"));
        let err = load_results(Path::new("/nonexistent/x.json"), 1).unwrap_err();
        assert!(matches!(err, Error::Io { .. }));
    }

    #[test]
    fn reads_what_pycocotools_reads() {
        let doc = br#"{"images": [{"id": "b"}, {"id": "a"}], "categories": [{"id": 1.0}],
            "annotations": [{"id": 2.0, "image_id": "a", "category_id": 1,
                             "bbox": [1, 2, 3, 4, 0.9], "area": NaN}]}"#;
        let gt = parse_ground_truth(doc, "gt.json").unwrap();
        assert_eq!(gt.annotations.image_names, vec!["a", "b"]);
        assert_eq!(gt.image_ids, vec![1, 0]);
        assert_eq!(gt.annotations.image_id, vec![0]);
        assert_eq!(gt.annotations.id, vec![2]);
        assert_eq!(gt.categories[0].id, 1);
        assert_eq!(gt.annotations.bbox, vec![1.0, 2.0, 3.0, 4.0]);
        assert!(gt.annotations.area[0].is_nan());
        let doc = br#"[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": NaN},
            {"image_id": 1.0, "category_id": 1, "bbox": [1, 2, 3, 4, 5], "score": -Infinity},
            {"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": Infinity}]"#;
        let dt = parse_results(doc, "dt.json").unwrap();
        assert!(dt.score[0].is_nan());
        assert_eq!(dt.score[1..], [f64::NEG_INFINITY, f64::INFINITY]);
        assert_eq!(dt.image_id, vec![1, 1, 1]);
        let doc = br#"[{"image_id": "x", "category_id": 1, "bbox": [1, 2, 3, 4], "score": NaN}]"#;
        let dt = parse_results(doc, "dt.json").unwrap();
        assert_eq!(
            (dt.image_names.clone(), dt.image_id.clone()),
            (vec!["x".to_owned()], vec![0])
        );
    }

    #[test]
    fn refusals_name_the_record_and_the_key() {
        let cases: [(&[u8], &str); 6] = [
            (
                br#"[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 1},
                   {"image_id": 1, "category_id": 1, "bbox": "x", "score": 1}]"#,
                "results[1], key \"bbox\": invalid type: string \"x\", expected a list of at least 4 numbers",
            ),
            (
                br#"[{"image_id": 1, "category_id": 1, "score": 1}]"#,
                "results[0]: missing key \"bbox\"",
            ),
            (
                br#"[{"image_id": 1.5, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 1}]"#,
                "results[0], key \"image_id\": expected an integer or a string id, got 1.5",
            ),
            (
                br#"[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": "0.5"}]"#,
                "results[0], key \"score\": invalid type: string \"0.5\", expected a number",
            ),
            (
                br#"[{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 1},
                   {"image_id": "a", "category_id": 1, "bbox": [1, 2, 3, 4], "score": 1}]"#,
                "results[1], key \"image_id\": image id \"a\" is a string but results[0].image_id is an integer",
            ),
            (br#"[3]"#, "results[0]: invalid type: integer `3`, expected a result object"),
        ];
        for (doc, want) in cases {
            let msg = parse_results(doc, "dt.json").unwrap_err().to_string();
            assert!(msg.starts_with("dt.json: not a valid COCO file: "), "{msg}");
            assert!(msg.contains(want), "{msg}\nwanted: {want}");
            assert!(msg.contains(" at line "), "{msg}");
        }
        let doc = br#"{"images": [{"id": 1}], "annotations": [{"id": 1, "image_id": 1,
            "category_id": "cat", "bbox": [1, 2, 3, 4]}]}"#;
        let msg = parse_ground_truth(doc, "gt.json").unwrap_err().to_string();
        assert!(
            msg.contains("annotations[0], key \"category_id\": expected an integer id"),
            "{msg}"
        );
        let msg = parse_ground_truth(br#"{"categories": [{"name": "x"}]}"#, "gt.json")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("categories[0]: missing field `id`"), "{msg}");
    }
}
