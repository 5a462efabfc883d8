//! The integration tests, one module per file, built as one test binary:
//! one link instead of one per file keeps the debug build small on disk and
//! quicker to link (`cargo test --test integration <module>::` runs one file).

mod capture;
mod char_transformer;
mod compact_training;
mod exported;
#[path = "common/fixed_init.rs"]
mod fixed_init;
mod import;
#[path = "common/masking.rs"]
mod masking;
mod models;
mod sparse_char_transformer;
mod sparse_twins;
#[path = "common/torchvision.rs"]
mod torchvision;
