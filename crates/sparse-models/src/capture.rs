//! [`CaptureInputs`] for the reference models: the same forward pass as
//! [`Classifier::forward`](crate::Classifier::forward), with every conv and linear
//! layer run through a [`Capture`] under its weight path (`layer1.0.conv1.weight`,
//! `layer2.0.downsample.0.weight`, `fc.weight`, ...), so one-shot pruning can see each
//! layer's input. The tests check that the outputs equal the models' own forward pass
//! and that every conv/linear weight is reported.

use burn::nn::pool::AdaptiveAvgPool2dConfig;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use sparse_core::capture::{Capture, CaptureInputs, CaptureStop};

use crate::mobilenet::MobileNetV1;
use crate::resnet::{Block, ResNet};
use crate::{Mlp, SmallCnn};

type Step<T> = Result<T, CaptureStop>;

impl CaptureInputs for Mlp {
    type Batch = Tensor<4>;
    type Output = Tensor<2>;

    fn forward_capture(&self, images: Tensor<4>, cap: &mut Capture<'_>) -> Step<Tensor<2>> {
        let mut x = images.flatten::<2>(1, 3);
        let last = self.layers.len().saturating_sub(1);
        for (i, layer) in self.layers.iter().enumerate() {
            x = cap.linear(&format!("layers.{i}.weight"), layer, x)?;
            if i < last {
                x = relu(x);
            }
        }
        Ok(x)
    }
}

impl CaptureInputs for SmallCnn {
    type Batch = Tensor<4>;
    type Output = Tensor<2>;

    fn forward_capture(&self, images: Tensor<4>, cap: &mut Capture<'_>) -> Step<Tensor<2>> {
        let x = cap.conv2d("conv1.weight", &self.conv1, images)?;
        let x = self.pool.forward(relu(self.bn1.forward(x)));
        let x = cap.conv2d("conv2.weight", &self.conv2, x)?;
        let x = self.pool.forward(relu(self.bn2.forward(x)));
        let x = relu(cap.linear("fc1.weight", &self.fc1, x.flatten::<2>(1, 3))?);
        cap.linear("fc2.weight", &self.fc2, x)
    }
}

fn block_capture(block: &Block, prefix: &str, x: Tensor<4>, cap: &mut Capture<'_>) -> Step<Tensor<4>> {
    let identity = match &block.downsample {
        Some((conv, norm)) => norm.forward(cap.conv2d(&format!("{prefix}.downsample.0.weight"), conv, x.clone())?),
        None => x.clone(),
    };
    let out = relu(
        block
            .bn1
            .forward(cap.conv2d(&format!("{prefix}.conv1.weight"), &block.conv1, x)?),
    );
    let out = block
        .bn2
        .forward(cap.conv2d(&format!("{prefix}.conv2.weight"), &block.conv2, out)?);
    let out = match (&block.conv3, &block.bn3) {
        (Some(conv), Some(norm)) => norm.forward(cap.conv2d(&format!("{prefix}.conv3.weight"), conv, relu(out))?),
        _ => out,
    };
    Ok(relu(out + identity))
}

impl CaptureInputs for ResNet {
    type Batch = Tensor<4>;
    type Output = Tensor<2>;

    fn forward_capture(&self, images: Tensor<4>, cap: &mut Capture<'_>) -> Step<Tensor<2>> {
        let mut x = relu(self.bn1.forward(cap.conv2d("conv1.weight", &self.conv1, images)?));
        if let Some(pool) = &self.maxpool {
            x = pool.forward(x);
        }
        let stages = [
            ("layer1", &self.layer1),
            ("layer2", &self.layer2),
            ("layer3", &self.layer3),
            ("layer4", &self.layer4),
        ];
        for (name, stage) in stages {
            for (b, block) in stage.iter().enumerate() {
                x = block_capture(block, &format!("{name}.{b}"), x, cap)?;
            }
        }
        let x = AdaptiveAvgPool2dConfig::new([1, 1])
            .init()
            .forward(x)
            .flatten::<2>(1, 3);
        cap.linear("fc.weight", &self.fc, x)
    }
}

impl CaptureInputs for MobileNetV1 {
    type Batch = Tensor<4>;
    type Output = Tensor<2>;

    fn forward_capture(&self, images: Tensor<4>, cap: &mut Capture<'_>) -> Step<Tensor<2>> {
        let mut x = relu(self.stem.1.forward(cap.conv2d("stem.0.weight", &self.stem.0, images)?));
        for (i, b) in self.blocks.iter().enumerate() {
            x = relu(b.dw_bn.forward(cap.conv2d(&format!("blocks.{i}.dw.weight"), &b.dw, x)?));
            x = relu(b.pw_bn.forward(cap.conv2d(&format!("blocks.{i}.pw.weight"), &b.pw, x)?));
        }
        let x = AdaptiveAvgPool2dConfig::new([1, 1])
            .init()
            .forward(x)
            .flatten::<2>(1, 3);
        cap.linear("fc.weight", &self.fc, x)
    }
}
