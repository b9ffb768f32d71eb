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
pub fn parse_results(bytes: &[u8], source: &str) -> Result<Annotations> {
    serde_json::from_slice::<DtAnnotations>(bytes)
        .map(|d| d.0)
        .map_err(|e| parse_error(source, e))
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
