//! Choosing a model by name and running generic code with it.

use anyhow::bail;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use sparse_models::{Classifier, MlpConfig, MobileNetV1Config, ResNetConfig, ResNetDepth, SmallCnnConfig, Stem};

use super::config::ModelSection;

/// The models the CLI knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum ModelKind {
    /// LeNet-300-100 MLP (784-300-100-10 on 28×28 images).
    #[serde(rename = "mlp")]
    #[value(name = "mlp")]
    Mlp,
    /// Small CNN: conv32-BN-pool, conv64-BN-pool, fc256, fc10.
    #[serde(rename = "cnn")]
    #[value(name = "cnn")]
    Cnn,
    /// ResNet-18.
    #[serde(rename = "resnet18")]
    #[value(name = "resnet18")]
    Resnet18,
    /// ResNet-34.
    #[serde(rename = "resnet34")]
    #[value(name = "resnet34")]
    Resnet34,
    /// ResNet-50.
    #[serde(rename = "resnet50")]
    #[value(name = "resnet50")]
    Resnet50,
    /// MobileNetV1 with a width multiplier.
    #[serde(rename = "mobilenet-v1", alias = "mobilenet_v1", alias = "mobilenet")]
    #[value(name = "mobilenet-v1", alias = "mobilenet_v1", alias = "mobilenet")]
    MobilenetV1,
}

impl ModelKind {
    /// The name, as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Mlp => "mlp",
            Self::Cnn => "cnn",
            Self::Resnet18 => "resnet18",
            Self::Resnet34 => "resnet34",
            Self::Resnet50 => "resnet50",
            Self::MobilenetV1 => "mobilenet-v1",
        }
    }

    /// A ResNet.
    pub fn is_resnet(self) -> bool {
        matches!(self, Self::Resnet18 | Self::Resnet34 | Self::Resnet50)
    }

    /// The input the model was designed for, `([C, H, W], classes)`: 28×28
    /// grayscale and 10 classes for the MLP and the small CNN, ImageNet's
    /// 3×224×224 and 1000 classes for the ResNets and MobileNetV1.
    pub fn natural_input(self) -> ([usize; 3], usize) {
        match self {
            Self::Mlp | Self::Cnn => ([1, 28, 28], 10),
            _ => ([3, 224, 224], 1000),
        }
    }
}

/// The largest image side (and class count) a model is built for.
pub const MAX_SIDE: usize = 1 << 20;

/// The most values (`C·H·W`) of one input image.
pub const MAX_INPUT: usize = 1 << 40;

/// Code to run with a concrete model type; `make()` builds a fresh model.
pub trait WithModel {
    /// What the code returns.
    type Output;
    /// Runs with the model type `M`.
    fn run<M: Classifier + 'static>(self, make: &dyn Fn() -> M) -> Self::Output;
}

/// Builds the model of `settings` for images `input` and `classes`, and runs `f` with it.
pub fn with_model<F: WithModel>(
    settings: &ModelSection,
    input: [usize; 3],
    classes: usize,
    device: &Device,
    f: F,
) -> anyhow::Result<F::Output> {
    let [c, h, w] = input;
    if c == 0 || h == 0 || w == 0 || classes == 0 {
        bail!("the input {c}x{h}x{w} with {classes} classes is empty");
    }
    let pixels = c.checked_mul(h).and_then(|x| x.checked_mul(w));
    if pixels.is_none_or(|n| n > MAX_INPUT) || h > MAX_SIDE || w > MAX_SIDE || classes > MAX_SIDE {
        bail!(
            "the input {c}x{h}x{w} with {classes} classes is too large: at most {MAX_SIDE} pixels a side, {MAX_SIDE} classes and {MAX_INPUT} values an image"
        );
    }
    let small = h <= 64 && w <= 64;
    let resnet = |depth| {
        let cfg = ResNetConfig::new(depth)
            .with_classes(classes)
            .with_in_channels(c)
            .with_stem(if small { Stem::Cifar } else { Stem::ImageNet });
        match settings.zero_init_residual {
            Some(zero) => cfg.with_zero_init_residual(zero),
            None => cfg,
        }
    };
    Ok(match settings.name {
        ModelKind::Mlp => {
            let mut cfg = MlpConfig::new().with_input(c * h * w).with_classes(classes);
            if let Some(hidden) = &settings.hidden {
                cfg = cfg.with_hidden(hidden.clone());
            }
            f.run(&|| cfg.init(device))
        }
        ModelKind::Cnn => {
            if h % 4 != 0 || w % 4 != 0 {
                bail!("the small CNN needs image sides divisible by 4, got {h}x{w}");
            }
            let cfg = SmallCnnConfig::new().with_input(input).with_classes(classes);
            f.run(&|| cfg.init(device))
        }
        ModelKind::Resnet18 => {
            let cfg = resnet(ResNetDepth::R18);
            f.run(&|| cfg.init(device))
        }
        ModelKind::Resnet34 => {
            let cfg = resnet(ResNetDepth::R34);
            f.run(&|| cfg.init(device))
        }
        ModelKind::Resnet50 => {
            let cfg = resnet(ResNetDepth::R50);
            f.run(&|| cfg.init(device))
        }
        ModelKind::MobilenetV1 => {
            let mut cfg = MobileNetV1Config::new()
                .with_classes(classes)
                .with_in_channels(c)
                .with_small_input(small);
            if let Some(width) = settings.width {
                cfg.width = width;
            }
            cfg.init(device)?; // validates the width
            f.run(&|| cfg.init(device).expect("validated above"))
        }
    })
}
