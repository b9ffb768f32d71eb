//! The COCO results reader on arbitrary bytes: an error or columns of
//! consistent lengths, never a panic; the fast scanner and serde agree.
#![no_main]

use _native::coco::json;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(dt) = json::parse_results(data, "fuzz.json") {
        let n = dt.len();
        assert_eq!(dt.id, (1..=n as i64).collect::<Vec<_>>());
        assert_eq!(dt.category_id.len(), n);
        assert_eq!(dt.bbox.len(), 4 * n);
        assert_eq!(dt.area.len(), n);
        assert_eq!(dt.iscrowd.len(), n);
        assert_eq!(dt.score.len(), n);
    }
});
