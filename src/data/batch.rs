//! Turning images into normalised tensors.

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::{Device, Int, Tensor, TensorData};
use sparse_core::Rng;

use super::{ImageItem, ImageSet};

/// A batch: images `[B, C, H, W]` normalised per channel, and class targets `[B]`.
#[derive(Clone, Debug)]
pub struct ImageBatch {
    /// Normalised images.
    pub images: Tensor<4>,
    /// Class indices.
    pub targets: Tensor<1, Int>,
}

/// Normalises `(x/255 − mean)/std` per channel; optionally applies CIFAR-style
/// augmentation (random crop of the image padded by `pad` pixels, random
/// horizontal flip) from a deterministic generator.
#[derive(Clone, Debug)]
pub struct ImageBatcher {
    shape: [usize; 3],
    mean: Vec<f32>,
    std: Vec<f32>,
}

impl ImageBatcher {
    /// For the images of `set`.
    pub fn new(set: &ImageSet) -> Self {
        Self {
            shape: set.shape,
            mean: set.mean.clone(),
            std: set.std.clone(),
        }
    }

    /// For images of `shape` normalised with these per-channel statistics (an exported model's).
    pub fn with_normalisation(shape: [usize; 3], mean: Vec<f32>, std: Vec<f32>) -> Self {
        Self { shape, mean, std }
    }

    /// A batch from `(pixels, label)` pairs; `augment` = `Some((rng, pad))` crops and flips.
    pub fn batch_of<'a>(
        &self,
        items: impl IntoIterator<Item = (&'a [u8], usize)>,
        device: &Device,
        mut augment: Option<(&mut Rng, usize)>,
    ) -> ImageBatch {
        let [c, h, w] = self.shape;
        let mut values = Vec::new();
        let mut labels = Vec::new();
        for (pixels, label) in items {
            let (dy, dx, flip) = match augment.as_mut() {
                Some((rng, pad)) => {
                    let span = 2 * *pad as u64 + 1;
                    (
                        rng.below(span) as isize - *pad as isize,
                        rng.below(span) as isize - *pad as isize,
                        rng.below(2) == 1,
                    )
                }
                None => (0, 0, false),
            };
            for ch in 0..c {
                let (mean, std) = (self.mean[ch], self.std[ch]);
                for y in 0..h {
                    for x in 0..w {
                        let sx = if flip { w - 1 - x } else { x } as isize + dx;
                        let sy = y as isize + dy;
                        let v = if sy < 0 || sx < 0 || sy >= h as isize || sx >= w as isize {
                            0.0 // zero padding
                        } else {
                            f32::from(pixels[(ch * h + sy as usize) * w + sx as usize]) / 255.0
                        };
                        values.push((v - mean) / std);
                    }
                }
            }
            labels.push(label as i64);
        }
        let b = labels.len();
        ImageBatch {
            images: Tensor::from_data(TensorData::new(values, [b, c, h, w]), device),
            targets: Tensor::from_data(TensorData::new(labels, [b]), device),
        }
    }

    /// The batch of images `indices` of `set`.
    pub fn batch_indices(
        &self,
        set: &ImageSet,
        indices: &[usize],
        device: &Device,
        augment: Option<(&mut Rng, usize)>,
    ) -> ImageBatch {
        self.batch_of(
            indices.iter().map(|&i| (set.image(i), usize::from(set.labels[i]))),
            device,
            augment,
        )
    }
}

impl Batcher<ImageItem, ImageBatch> for ImageBatcher {
    fn batch(&self, items: Vec<ImageItem>, device: &Device) -> ImageBatch {
        self.batch_of(items.iter().map(|i| (i.pixels.as_slice(), i.label)), device, None)
    }
}
