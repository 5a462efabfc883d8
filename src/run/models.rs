//! Choosing a model by name and running generic code with it.

use anyhow::bail;
use burn::tensor::Device;
use sparse_models::{Classifier, MlpConfig, MobileNetV1Config, ResNetConfig, ResNetDepth, SmallCnnConfig, Stem};

use super::config::ModelSettings;

/// The model names the CLI knows.
pub const MODELS: [&str; 6] = ["mlp", "cnn", "resnet18", "resnet34", "resnet50", "mobilenet-v1"];

/// Code to run with a concrete model type; `make()` builds a fresh model.
pub trait WithModel {
    /// What the code returns.
    type Output;
    /// Runs with the model type `M`.
    fn run<M: Classifier + 'static>(self, make: &dyn Fn() -> M) -> Self::Output;
}

/// Builds the model named in `settings` for images `input` and `classes`, and runs `f` with it.
pub fn with_model<F: WithModel>(
    settings: &ModelSettings,
    input: [usize; 3],
    classes: usize,
    device: &Device,
    f: F,
) -> anyhow::Result<F::Output> {
    let [c, h, w] = input;
    let small = h <= 64 && w <= 64;
    let resnet = |depth| {
        ResNetConfig::new(depth)
            .with_classes(classes)
            .with_in_channels(c)
            .with_stem(if small { Stem::Cifar } else { Stem::ImageNet })
            .with_zero_init_residual(settings.zero_init_residual)
    };
    Ok(match settings.name.as_str() {
        "mlp" => {
            let cfg = MlpConfig::new().with_input(c * h * w).with_classes(classes);
            f.run(&|| cfg.init(device))
        }
        "cnn" => {
            if h % 4 != 0 || w % 4 != 0 {
                bail!("the small CNN needs image sides divisible by 4, got {h}x{w}");
            }
            let cfg = SmallCnnConfig::new().with_input(input).with_classes(classes);
            f.run(&|| cfg.init(device))
        }
        "resnet18" => {
            let cfg = resnet(ResNetDepth::R18);
            f.run(&|| cfg.init(device))
        }
        "resnet34" => {
            let cfg = resnet(ResNetDepth::R34);
            f.run(&|| cfg.init(device))
        }
        "resnet50" => {
            let cfg = resnet(ResNetDepth::R50);
            f.run(&|| cfg.init(device))
        }
        "mobilenet-v1" | "mobilenet" => {
            let cfg = MobileNetV1Config::new()
                .with_width(settings.width)
                .with_classes(classes)
                .with_in_channels(c)
                .with_small_input(small);
            cfg.init(device)?; // validates the width
            f.run(&|| cfg.init(device).expect("validated above"))
        }
        other => bail!("unknown model `{other}`; expected one of {}", MODELS.join(", ")),
    })
}
