//! A synthetic, learnable image set for offline tests and examples.
//!
//! **Not real data.** Each class has a random prototype image; a sample is the
//! prototype blended with four times as much uniform noise. A linear classifier
//! separates the classes well, a constant one does not.

use sparse_core::Rng;

use super::ImageSet;

/// `n` synthetic images of `shape` in `classes` classes (labels cycle through the
/// classes), deterministic for a `seed`. Train and test sets of the same seed share
/// prototypes; use different `split` values for them.
pub fn synthetic(n: usize, shape: [usize; 3], classes: usize, seed: u64, split: &str) -> ImageSet {
    let size: usize = shape.iter().product();
    let prototypes: Vec<Vec<f32>> = (0..classes)
        .map(|c| {
            let mut rng = Rng::for_stream(seed, "synthetic-prototype", c as u64, "");
            (0..size).map(|_| rng.next_f32()).collect()
        })
        .collect();
    let mut rng = Rng::for_stream(seed, "synthetic-samples", 0, split);
    let mut pixels = Vec::with_capacity(n * size);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let c = i % classes;
        pixels.extend(
            prototypes[c]
                .iter()
                .map(|p| ((0.2 * p + 0.8 * rng.next_f32()) * 255.0) as u8),
        );
        labels.push(c as u16);
    }
    ImageSet {
        name: format!("synthetic/{split}"),
        shape,
        pixels,
        labels,
        classes: (0..classes).map(|c| format!("class {c}")).collect(),
        mean: vec![0.5; shape[0]],
        std: vec![0.2; shape[0]],
    }
}
