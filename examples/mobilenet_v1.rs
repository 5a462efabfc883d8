//! Sparse MobileNetV1 with RigL on CIFAR-10-format or image-folder data,
//! following the RigL reference policy: pointwise convolutions and the
//! classifier sparse (ERK), the first conv and the depthwise convs dense.
//!
//! ```text
//! cargo run --release --example mobilenet_v1 -- --data-dir data/cifar10 --width 0.5
//! cargo run --release --features wgpu --example mobilenet_v1 -- --device wgpu --data-dir data/cifar10
//! cargo run --release --example mobilenet_v1 -- --dataset folder --data-dir my-images --image-size 128
//! ```
//!
//! Inputs up to 64 px use the small-image stem (stride 1).

#![allow(clippy::field_reassign_with_default)] // the settings read best one per line

#[path = "resnet50.rs"]
#[allow(dead_code)]
mod shared;

use sparseburn::run::RunConfig;

fn main() -> anyhow::Result<()> {
    let mut cfg = RunConfig::default();
    cfg.model.name = "mobilenet-v1".into();
    cfg.model.width = 1.0;
    cfg.data.dataset = sparseburn::data::DatasetKind::Cifar10;
    cfg.method.name = "rigl".into();
    cfg.sparsity.sparsity = 0.75;
    cfg.training.epochs = 30;
    cfg.training.lr = 0.1;
    cfg.training.weight_decay = 4e-5;
    cfg.training.label_smoothing = 0.1;
    cfg.training.warmup_epochs = 1.0;
    shared::apply_args(&mut cfg, std::env::args().skip(1).collect())?;
    shared::run(&cfg)
}
