//! Datasets shared by the CLI and the examples.
//!
//! Every format loads into an [`ImageSet`]: images as `u8` pixels `[C, H, W]`
//! with a class label, plus the per-channel normalisation of the dataset.
//! [`ImageSet`] implements Burn's `Dataset`, and [`ImageBatcher`] Burn's
//! `Batcher`, so they work with burn-train's data loaders as well as with
//! sparseburn's own deterministic [`loader`].

pub mod batch;
pub mod cifar;
pub mod download;
pub mod error;
pub mod folder;
pub mod idx;
pub mod input;
pub mod limits;
pub mod loader;
pub mod source;
pub mod split;
pub mod synthetic;
pub mod text;
pub mod validate;

pub use batch::{ImageBatch, ImageBatcher};
pub use error::DataError;
pub use loader::BatchOrder;
pub use source::{DataConfig, DatasetKind};

use burn::data::dataset::{Dataset, DatasetError};

/// One image and its label.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageItem {
    /// Pixels, `[C, H, W]` row-major.
    pub pixels: Vec<u8>,
    /// Class index.
    pub label: usize,
}

/// An in-memory image classification set.
#[derive(Clone, Debug)]
pub struct ImageSet {
    /// Name for messages and reports (e.g. `fashion-mnist/train`).
    pub name: String,
    /// `[C, H, W]`.
    pub shape: [usize; 3],
    /// All pixels, image after image.
    pub pixels: Vec<u8>,
    /// One label per image.
    pub labels: Vec<u16>,
    /// Class names.
    pub classes: Vec<String>,
    /// Per-channel mean of the pixels scaled to `[0, 1]`.
    pub mean: Vec<f32>,
    /// Per-channel standard deviation of the pixels scaled to `[0, 1]`.
    pub std: Vec<f32>,
}

impl ImageSet {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Pixels of one image.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.shape.iter().product::<usize>();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// The first `n` images (for quick runs and tests).
    pub fn take(mut self, n: usize) -> Self {
        let n = n.min(self.len());
        self.pixels.truncate(n * self.shape.iter().product::<usize>());
        self.labels.truncate(n);
        self
    }
}

impl Dataset<ImageItem> for ImageSet {
    fn get(&self, index: usize) -> Result<ImageItem, DatasetError> {
        if index >= self.len() {
            return Err(DatasetError::new(DataError::OutOfBounds { index, len: self.len() }));
        }
        Ok(ImageItem {
            pixels: self.image(index).to_vec(),
            label: usize::from(self.labels[index]),
        })
    }

    fn len(&self) -> usize {
        self.labels.len()
    }
}
