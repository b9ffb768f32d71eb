//! The COCO ground-truth reader on arbitrary bytes: an error or columns of
//! consistent lengths, never a panic.
#![no_main]

use _native::coco::json;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(gt) = json::parse_ground_truth(data, "fuzz.json") {
        let a = &gt.annotations;
        let n = a.len();
        assert_eq!(a.id.len(), n);
        assert_eq!(a.category_id.len(), n);
        assert_eq!(a.bbox.len(), 4 * n);
        assert_eq!(a.area.len(), n);
        assert_eq!(a.iscrowd.len(), n);
    }
});
