//! The integration tests, one module per file, built as one test binary:
//! one link instead of one per file keeps the debug build small on disk and
//! quicker to link (`cargo test --test integration <module>::` runs one file).

mod burn_train;
mod burn_train_ddp;
mod burn_train_multi;
mod cli;
mod common;
mod config;
mod execution;
mod export;
mod hardening;
mod method_defaults;
mod methods_e2e;
mod prune;
mod recipes;
mod tasks;
