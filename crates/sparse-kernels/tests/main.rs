//! The integration tests, one module per file, built as one test binary:
//! one link instead of one per file keeps the debug build small on disk and
//! quicker to link (`cargo test --test integration <module>::` runs one file).

mod autodiff;
mod batch_norm;
mod common;
mod conv;
mod formats;
mod linear;
mod sparse_training;
