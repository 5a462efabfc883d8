//! The validation split: images held out from the training set, so that the
//! "best" epoch is chosen without looking at the test set.
//!
//! Which images: a fixed pseudo-random subset of the training set, the same for
//! every run and every seed (the shuffle is seeded with a constant, not with the
//! run's seed), so runs differ only in what their seeds choose. The training set
//! keeps its other images in their original order.
//!
//! How many, unless `validation` says otherwise: `min(5 000, ⌊n/10⌋)` images of a
//! training set of `n ≥ 1 000` images, that is 5 000 for (Fashion-)MNIST
//! (60 000) and CIFAR-10 (50 000), 600 for the synthetic set (6 000) and 10% of
//! a smaller image folder; none below 1 000 images (too few to hold any out).

use sparse_core::Rng;

use super::{DataError, ImageSet};

/// The most images held out by default.
pub const DEFAULT_MAX: usize = 5_000;

/// Training sets below this many images hold none out by default.
pub const DEFAULT_MIN_SET: usize = 1_000;

/// Images held out by default from a training set of `n` images.
pub fn default_size(n: usize) -> usize {
    if n < DEFAULT_MIN_SET {
        0
    } else {
        (n / 10).min(DEFAULT_MAX)
    }
}

/// Splits `set` into `(train, validation)` with `size` validation images.
pub fn split(set: ImageSet, size: usize) -> Result<(ImageSet, ImageSet), DataError> {
    let n = set.len();
    if size >= n {
        return Err(DataError::Missing(format!(
            "a validation split of {size} images leaves no training image of the {n} in {}; choose --validation below {n} (0 holds none out)",
            set.name
        )));
    }
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = Rng::for_stream(0x005e_ed0f_5b11, "validation", 0, "split");
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    let mut held = vec![false; n];
    for &i in &order[..size] {
        held[i] = true;
    }
    let valid_indices: Vec<usize> = (0..n).filter(|&i| held[i]).collect();
    let train_indices: Vec<usize> = (0..n).filter(|&i| !held[i]).collect();
    let base = set.name.split('/').next().unwrap_or_default().to_string();
    let validation = subset(&set, &valid_indices, format!("{base}/validation"));
    let train = subset(&set, &train_indices, set.name.clone());
    Ok((train, validation))
}

/// The images `indices` of `set`, in that order, with its classes and normalisation.
fn subset(set: &ImageSet, indices: &[usize], name: String) -> ImageSet {
    let mut pixels = Vec::with_capacity(indices.len() * set.shape.iter().product::<usize>());
    for &i in indices {
        pixels.extend_from_slice(set.image(i));
    }
    ImageSet {
        name,
        shape: set.shape,
        pixels,
        labels: indices.iter().map(|&i| set.labels[i]).collect(),
        classes: set.classes.clone(),
        mean: set.mean.clone(),
        std: set.std.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::synthetic::synthetic;

    #[test]
    fn default_sizes_follow_the_documented_rule() {
        assert_eq!(default_size(60_000), 5_000);
        assert_eq!(default_size(50_000), 5_000);
        assert_eq!(default_size(6_000), 600);
        assert_eq!(default_size(1_000), 100);
        assert_eq!(default_size(999), 0);
    }

    #[test]
    fn the_split_partitions_the_set_the_same_way_every_time() {
        let set = synthetic(1_200, [1, 4, 4], 3, 7, "train");
        let (train, valid) = split(set.clone(), 120).unwrap();
        assert_eq!((train.len(), valid.len()), (1_080, 120));
        // every image lands in exactly one part: compare the multisets of images
        let key = |s: &ImageSet, i: usize| (s.image(i).to_vec(), s.labels[i]);
        let mut all: Vec<_> = (0..set.len()).map(|i| key(&set, i)).collect();
        let mut parts: Vec<_> = (0..train.len())
            .map(|i| key(&train, i))
            .chain((0..valid.len()).map(|i| key(&valid, i)))
            .collect();
        all.sort();
        parts.sort();
        assert_eq!(all, parts);
        // deterministic, and not simply the last images
        let (again, valid_again) = split(set.clone(), 120).unwrap();
        assert_eq!(train.pixels, again.pixels);
        assert_eq!(valid.pixels, valid_again.pixels);
        let tail: Vec<u8> = set.pixels[set.pixels.len() - valid.pixels.len()..].to_vec();
        assert_ne!(valid.pixels, tail);
        assert_eq!(valid.name, "synthetic/validation");
    }

    #[test]
    fn a_split_as_large_as_the_set_is_an_error() {
        let set = synthetic(50, [1, 2, 2], 2, 1, "train");
        let err = split(set, 50).unwrap_err().to_string();
        assert!(err.contains("--validation"), "{err}");
    }
}
