//! Helpers of the twin and export tests: random unstructured masks, a mapper
//! that applies masks to a model (and, when asked, gives its normalisation
//! layers random statistics, so that folding them wrongly shows), the relative
//! error of two outputs and a tensor's values on the host.
#![allow(dead_code)]

use std::collections::BTreeMap;

use burn::module::{ModuleMapper, Param};
use burn::tensor::{Tensor, TensorData};
use sparse_core::{Mask, Pattern, Rng, SparseLayer};

/// Multiplies the weights named in `masks` by their mask; with `rng`, sets
/// `gamma` and `running_var` to 0.5 + U(0, 1) and `beta` and `running_mean` to
/// U(-0.5, 0.5).
pub struct Prepare<'a> {
    path: Vec<String>,
    masks: &'a BTreeMap<String, Mask>,
    rng: Option<Rng>,
}

impl<'a> Prepare<'a> {
    /// Applies `masks` only.
    pub fn masks(masks: &'a BTreeMap<String, Mask>) -> Self {
        Self {
            path: Vec::new(),
            masks,
            rng: None,
        }
    }

    /// Applies `masks` and randomises the normalisation layers from `seed`.
    pub fn with_norms(masks: &'a BTreeMap<String, Mask>, seed: u64) -> Self {
        Self {
            rng: Some(Rng::new(seed)),
            ..Self::masks(masks)
        }
    }
}

impl ModuleMapper for Prepare<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let path = self.path.join(".");
        let leaf = self.path.last().cloned().unwrap_or_default();
        let (masks, rng) = (self.masks, &mut self.rng);
        param.map(|t| {
            let (dims, device) = (t.dims(), t.device());
            let n: usize = dims.iter().product();
            let set = |v: Vec<f32>| Tensor::<D>::from_data(TensorData::new(v, dims), &device);
            match (leaf.as_str(), rng.as_mut()) {
                ("gamma" | "running_var", Some(rng)) => set((0..n).map(|_| 0.5 + rng.next_f32()).collect()),
                ("beta" | "running_mean", Some(rng)) => set((0..n).map(|_| rng.next_f32() - 0.5).collect()),
                _ => match masks.get(&path) {
                    Some(m) => t * set(m.to_bools().iter().map(|&b| b as u8 as f32).collect()),
                    None => t,
                },
            }
        })
    }
}

/// A random unstructured mask of `density` (at least one weight) per layer, from `seed`.
pub fn random_masks(layers: &[SparseLayer], density: f64, seed: u64) -> BTreeMap<String, Mask> {
    let mut rng = Rng::new(seed);
    layers
        .iter()
        .map(|l| {
            let count = ((density * l.numel() as f64) as usize).max(1);
            (
                l.path.clone(),
                Pattern::Unstructured.select(l, &rng.scores(l.numel()), count),
            )
        })
        .collect()
}

/// `‖a − b‖ / ‖b‖`.
pub fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    (num / den.max(1e-30)).sqrt()
}

/// A tensor's values on the host.
pub fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    sparse_core::host::to_vec(t).expect("read values")
}
