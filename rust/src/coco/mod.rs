//! COCO bbox evaluation with pycocotools semantics (pure Rust).
