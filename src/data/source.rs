//! Choosing and loading a dataset: `fashion-mnist`, `mnist`, `cifar10`,
//! `folder` (image folders) or `synthetic` (clearly labelled, for offline tests).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{DataError, ImageSet, cifar, download, folder, idx, synthetic, validate};

/// Where Debian's `dataset-fashion-mnist` package installs Fashion-MNIST.
pub const DEBIAN_FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

/// A dataset format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetKind {
    /// Fashion-MNIST (IDX).
    FashionMnist,
    /// MNIST (IDX).
    Mnist,
    /// CIFAR-10 binary batches.
    Cifar10,
    /// `root/{train,test}/<class>/*.png|jpg`.
    Folder,
    /// Synthetic prototypes + noise (not real data).
    Synthetic,
}

impl std::str::FromStr for DatasetKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "fashion-mnist" | "fashion_mnist" | "fashionmnist" => Ok(Self::FashionMnist),
            "mnist" => Ok(Self::Mnist),
            "cifar10" | "cifar-10" => Ok(Self::Cifar10),
            "folder" | "image-folder" => Ok(Self::Folder),
            "synthetic" => Ok(Self::Synthetic),
            _ => Err(format!(
                "unknown dataset `{s}`; expected fashion-mnist, mnist, cifar10, folder or synthetic"
            )),
        }
    }
}

/// Dataset settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Format.
    pub dataset: DatasetKind,
    /// Folder with the files (default: the dataset's usual place).
    pub data_dir: Option<PathBuf>,
    /// Download the dataset if it is missing (needs internet, curl or wget).
    pub download: bool,
    /// Image folders: side of the resized square images.
    pub image_size: usize,
    /// Image folders: 1 (grayscale) or 3 (RGB).
    pub channels: usize,
    /// Image folders: stop at an unreadable image instead of skipping it.
    pub strict_images: bool,
    /// Use only the first N training images (0 = all); image folders take
    /// them from every class in turn.
    pub train_limit: usize,
    /// Use only the first N test images (0 = all); image folders take them
    /// from every class in turn.
    pub test_limit: usize,
    /// Random crop (4 px padding) and horizontal flip (default on for CIFAR-10).
    pub augment: Option<bool>,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            dataset: DatasetKind::FashionMnist,
            data_dir: None,
            download: false,
            image_size: 32,
            channels: 3,
            strict_images: false,
            train_limit: 0,
            test_limit: 0,
            augment: None,
        }
    }
}

const FASHION_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];
const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

fn default_dir(kind: DatasetKind) -> PathBuf {
    match kind {
        DatasetKind::FashionMnist if Path::new(DEBIAN_FASHION_MNIST).is_dir() => PathBuf::from(DEBIAN_FASHION_MNIST),
        DatasetKind::FashionMnist => PathBuf::from("data/fashion-mnist"),
        DatasetKind::Mnist => PathBuf::from("data/mnist"),
        DatasetKind::Cifar10 => PathBuf::from("data/cifar10"),
        DatasetKind::Folder | DatasetKind::Synthetic => PathBuf::from("data"),
    }
}

fn how_to_get(kind: DatasetKind, dir: &Path) -> String {
    let d = dir.display();
    match kind {
        DatasetKind::FashionMnist => format!(
            "get Fashion-MNIST with `sudo apt-get install dataset-fashion-mnist` (installs {DEBIAN_FASHION_MNIST}), or pass --download to fetch it into {d}, or put the four IDX files there and pass --data-dir"
        ),
        DatasetKind::Mnist => {
            format!("pass --download to fetch MNIST into {d}, or put the four IDX files there and pass --data-dir")
        }
        DatasetKind::Cifar10 => format!(
            "pass --download to fetch CIFAR-10 (binary version) into {d}, or unpack cifar-10-binary.tar.gz there and pass --data-dir"
        ),
        DatasetKind::Folder => format!(
            "pass --data-dir pointing to a folder with train/<class>/ and test/<class>/ subfolders (looked in {d})"
        ),
        DatasetKind::Synthetic => String::new(),
    }
}

impl DataConfig {
    /// The data folder in use.
    pub fn dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| default_dir(self.dataset))
    }

    /// Whether training batches are augmented.
    pub fn augments(&self) -> bool {
        self.augment.unwrap_or(self.dataset == DatasetKind::Cifar10)
    }

    /// Checks the settings that size memory, before anything is read: for
    /// image folders the side (1 to 1024) and the channels (1 or 3).
    pub fn check(&self) -> Result<(), DataError> {
        if self.dataset == DatasetKind::Folder {
            folder::check_settings(self.image_size, self.channels)?;
        }
        Ok(())
    }

    /// Loads `(train, test)`: checks the settings first, and the pair after
    /// loading (images in both, one shape, one class list, at least 2 classes).
    pub fn load(&self) -> Result<(ImageSet, ImageSet), DataError> {
        self.check()?;
        let dir = self.dir();
        if self.download {
            match self.dataset {
                DatasetKind::FashionMnist => download::idx(download::FASHION_MNIST, &dir)?,
                DatasetKind::Mnist => download::idx(download::MNIST, &dir)?,
                DatasetKind::Cifar10 => download::cifar10(&dir)?,
                _ => {}
            }
        }
        let sets = match self.dataset {
            DatasetKind::Synthetic => Ok((
                synthetic::synthetic(6000, [1, 28, 28], 10, 1, "train"),
                synthetic::synthetic(1000, [1, 28, 28], 10, 1, "test"),
            )),
            _ if !dir.is_dir() => Err(DataError::Missing(format!(
                "data folder {} does not exist",
                dir.display()
            ))),
            DatasetKind::FashionMnist => {
                idx::load_split(&dir, "train", "fashion-mnist/train", &FASHION_CLASSES, 0.2860, 0.3530).and_then(|t| {
                    Ok((
                        t,
                        idx::load_split(&dir, "t10k", "fashion-mnist/test", &FASHION_CLASSES, 0.2860, 0.3530)?,
                    ))
                })
            }
            DatasetKind::Mnist => idx::load_split(&dir, "train", "mnist/train", &DIGITS, 0.1307, 0.3081)
                .and_then(|t| Ok((t, idx::load_split(&dir, "t10k", "mnist/test", &DIGITS, 0.1307, 0.3081)?))),
            DatasetKind::Cifar10 => cifar::load(&dir, true).and_then(|t| Ok((t, cifar::load(&dir, false)?))),
            DatasetKind::Folder => self.load_folder(&dir),
        };
        let (train, test) = sets.map_err(|e| match e {
            DataError::Missing(m) => DataError::Missing(format!("{m}; {}", how_to_get(self.dataset, &dir))),
            other => other,
        })?;
        let (train, test) = if self.dataset == DatasetKind::Folder {
            (train, test) // limited while loading, from every class in turn
        } else {
            let limit = |set: ImageSet, n: usize| if n == 0 { set } else { set.take(n) };
            (limit(train, self.train_limit), limit(test, self.test_limit))
        };
        validate::check_pair(&train, &test, &dir)?;
        Ok((train, test))
    }

    /// Image folders, with the limits applied while loading and the test set
    /// normalised with the train set's statistics.
    fn load_folder(&self, dir: &Path) -> Result<(ImageSet, ImageSet), DataError> {
        let (size, channels, strict) = (self.image_size, self.channels, self.strict_images);
        let train = folder::load_limited(dir, true, size, channels, strict, None, self.train_limit)?;
        let mut test = folder::load_limited(
            dir,
            false,
            size,
            channels,
            strict,
            Some(&train.classes),
            self.test_limit,
        )?;
        test.mean = train.mean.clone();
        test.std = train.std.clone();
        Ok((train, test))
    }
}
