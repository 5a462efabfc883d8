//! Streaming calibration statistics of layer inputs.
//!
//! For each wanted layer and each group of its fan-in features (see
//! [`sparse_core::capture`]), the sink keeps, over all calibration tokens seen so far,
//!
//! * `feature_sq[j] = Σ_t X_tj²`, Wanda's squared feature norms, and
//! * optionally `gram = Σ_t x_t x_tᵀ` (`fan-in × fan-in`), from which SparseGPT's Hessian
//!   `H = 2·gram/N` and every reconstruction error follow.
//!
//! Each batch's sums are computed on the model's device in `f32` and added on the host
//! in `f64`; activations are never kept. Running sums instead of the paper's running
//! means change nothing: Wanda ranks within a row, SparseGPT's dampening is relative.

use std::collections::{BTreeMap, HashSet};

use burn::tensor::Tensor;
use sparse_core::capture::{Capture, CaptureInputs, CaptureStop, InputSink, LayerFeatures};
use sparse_core::{Result, SparseError, host};

use super::matrix::Matrix;

/// Accumulated statistics of one layer's inputs.
#[derive(Clone, Debug)]
pub struct LayerStats {
    /// Groups of the layer (1 unless a grouped conv).
    pub groups: usize,
    /// Fan-in features per group.
    pub fan_in: usize,
    /// Tokens seen (per group).
    pub tokens: u64,
    /// `Σ_t X_tj²` per group and feature.
    pub feature_sq: Vec<Vec<f64>>,
    /// `Σ_t x_t x_tᵀ` per group, when requested.
    pub gram: Option<Vec<Matrix>>,
}

impl LayerStats {
    fn new(groups: usize, fan_in: usize, with_gram: bool) -> Self {
        Self {
            groups,
            fan_in,
            tokens: 0,
            feature_sq: vec![vec![0.0; fan_in]; groups],
            gram: with_gram.then(|| vec![Matrix::zeros(fan_in, fan_in); groups]),
        }
    }

    fn add(&mut self, path: &str, f: &LayerFeatures) -> Result<()> {
        if f.groups() != self.groups || f.fan_in() != self.fan_in {
            return Err(SparseError::InvalidConfig(format!(
                "layer `{path}`: captured inputs changed shape between batches ({} groups x {} features, then {} x {})",
                self.groups,
                self.fan_in,
                f.groups(),
                f.fan_in()
            )));
        }
        let (g, c) = (self.groups, self.fan_in);
        let x: Tensor<3> = f.x.clone();
        let sq = host::to_vec((x.clone() * x.clone()).sum_dim(1).reshape([g * c]))?;
        for (acc, v) in self.feature_sq.iter_mut().flatten().zip(sq) {
            *acc += f64::from(v);
        }
        if let Some(gram) = &mut self.gram {
            let xtx = host::to_vec(x.clone().swap_dims(1, 2).matmul(x).reshape([g * c * c]))?;
            for (acc, v) in gram.iter_mut().flat_map(|m| m.data_mut().iter_mut()).zip(xtx) {
                *acc += f64::from(v);
            }
        }
        self.tokens += f.tokens() as u64;
        Ok(())
    }
}

/// An [`InputSink`] that accumulates [`LayerStats`] for a set of layers and records
/// the forward order of every captured layer.
pub(crate) struct StatsSink {
    wanted: HashSet<String>,
    with_gram: bool,
    stop_early: bool,
    seen_this_pass: HashSet<String>,
    stats: BTreeMap<String, LayerStats>,
    order: Vec<String>,
}

impl StatsSink {
    pub(crate) fn new(wanted: impl IntoIterator<Item = String>, with_gram: bool, stop_early: bool) -> Self {
        Self {
            wanted: wanted.into_iter().collect(),
            with_gram,
            stop_early,
            seen_this_pass: HashSet::new(),
            stats: BTreeMap::new(),
            order: Vec::new(),
        }
    }

    /// Runs one capturing forward pass on `batch`.
    pub(crate) fn run<M: CaptureInputs>(&mut self, model: &M, batch: M::Batch) -> Result<()> {
        self.seen_this_pass.clear();
        match model.forward_capture(batch, &mut Capture::new(self)) {
            Ok(_) | Err(CaptureStop::Done) => {}
            Err(CaptureStop::Error(e)) => return Err(e),
        }
        Ok(())
    }

    /// Every captured layer path, in first-seen forward order.
    pub(crate) fn order(&self) -> &[String] {
        &self.order
    }

    pub(crate) fn into_stats(self) -> BTreeMap<String, LayerStats> {
        self.stats
    }
}

impl InputSink for StatsSink {
    fn wants(&mut self, path: &str) -> bool {
        if !self.order.iter().any(|p| p == path) {
            self.order.push(path.to_string());
        }
        let wanted = self.wanted.contains(path);
        if wanted {
            self.seen_this_pass.insert(path.to_string());
        }
        wanted
    }

    fn record(&mut self, path: &str, features: LayerFeatures) -> Result<()> {
        let with_gram = self.with_gram;
        let stats = self
            .stats
            .entry(path.to_string())
            .or_insert_with(|| LayerStats::new(features.groups(), features.fan_in(), with_gram));
        stats.add(path, &features)
    }

    fn is_done(&self) -> bool {
        self.stop_early && self.seen_this_pass.len() == self.wanted.len()
    }
}

/// Statistics of the inputs of the layers at `paths` over every calibration batch,
/// with the Gram matrices when `with_gram`. Each forward pass stops once every wanted
/// layer has been seen. Errors if a path is never captured.
pub fn calibration_stats<M: CaptureInputs>(
    model: &M,
    batches: &[M::Batch],
    paths: &[String],
    with_gram: bool,
) -> Result<BTreeMap<String, LayerStats>> {
    let mut sink = StatsSink::new(paths.iter().cloned(), with_gram, true);
    for batch in batches {
        sink.run(model, batch.clone())?;
    }
    let stats = sink.into_stats();
    if let Some(missing) = paths.iter().find(|p| !stats.contains_key(*p)) {
        return Err(SparseError::InvalidConfig(format!(
            "layer `{missing}` was never captured: the model's `CaptureInputs::forward_capture` must run it through `Capture` under that weight path{}",
            if batches.is_empty() {
                " (and at least one calibration batch is needed)"
            } else {
                ""
            }
        )));
    }
    Ok(stats)
}
