//! The integration tests, one module per file, built as one test binary:
//! one link instead of one per file keeps the debug build small on disk and
//! quicker to link (`cargo test --test integration <module>::` runs one file).

mod autosparse_channels;
mod common;
mod dynamic;
mod grasp_reinit;
mod learnable;
mod lth_open_lth;
mod mest_reference;
mod oneshot;
mod oneshot_resnet18;
mod pruning;
mod rigl_noise;
mod sparse_execution;
mod srigl_reference;
mod structured;
#[path = "../../sparse-models/tests/common/torchvision.rs"]
mod torchvision;
