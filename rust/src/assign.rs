//! FCOS point-to-box target assignment (pure Rust).
