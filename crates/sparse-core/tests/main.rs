//! The integration tests, one module per file, built as one test binary:
//! one link instead of one per file keeps the debug build small on disk and
//! quicker to link (`cargo test --test integration <module>::` runs one file).

mod any_optimizer;
mod capture;
mod common;
mod erk;
mod errors;
mod invariants;
mod optimizer_parity;
mod resume;
mod schedules;
mod sparse_init;
