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

#[path = "resnet50.rs"]
#[allow(dead_code)]
mod shared;

use sparseburn::run::RunConfig;

const CONFIG: &str = r#"
[model]
name = "mobilenet-v1"
width = 1.0

[data]
dataset = "cifar10"

[sparsity]
sparsity = 0.75

[method]
name = "rigl"

[optimizer]
name = "sgd"
momentum = 0.9
weight_decay = 4e-5

[training]
epochs = 30
lr = 0.1
label_smoothing = 0.1
warmup_epochs = 1.0
"#;

fn main() -> anyhow::Result<()> {
    let mut table: toml::Table = toml::from_str(CONFIG)?;
    shared::apply_args(&mut table, std::env::args().skip(1).collect())?;
    shared::run(&RunConfig::from_table(table)?)
}
