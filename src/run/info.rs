//! `sparseburn info`: per-layer shapes, densities, nonzeros and multiply-adds of
//! a model at a sparsity, without training.

use std::fmt::Write as _;

use burn::tensor::Device;
use sparse_core::discovery::all_weights;
use sparse_core::{Plan, discover};
use sparse_models::{Classifier, count_params, model_macs};

use super::build;
use super::config::RunConfig;
use super::models::{WithModel, with_model};
use super::report::human;

struct Info<'a> {
    cfg: &'a RunConfig,
    input: [usize; 3],
}

impl WithModel for Info<'_> {
    type Output = anyhow::Result<String>;

    fn run<M: Classifier + 'static>(self, make: &dyn Fn() -> M) -> anyhow::Result<String> {
        let model = make();
        let sparsity = build::sparsity_config(self.cfg, model.sparsity_filter())?;
        let layers = discover(&model, &sparsity.filter)?;
        let target = sparsity.sparsity;
        let global = sparsity.distribution == sparse_core::Distribution::Global;
        let plan = Plan::new(layers, sparsity)?;
        let counts = plan.counts(target)?;
        let active = plan
            .layers()
            .iter()
            .zip(&counts)
            .map(|(l, c)| (l.path.clone(), *c))
            .collect();
        let macs = model_macs(&model, self.input, &active)?;
        let all = all_weights(&model);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} on {}x{}x{}, sparsity {:.1}% ({}, {})",
            self.cfg.model.name,
            self.input[0],
            self.input[1],
            self.input[2],
            100.0 * target,
            self.cfg.sparsity.distribution,
            self.cfg.sparsity.pattern
        );
        let _ = writeln!(
            out,
            "{:<34} {:>18} {:>8} {:>11} {:>11} {:>11}",
            "layer", "shape", "density", "nonzeros", "MACs", "dense MACs"
        );
        for (l, m) in all.iter().zip(&macs) {
            let nnz = active.get(&l.path).copied().unwrap_or(l.numel());
            let mark = if active.contains_key(&l.path) { "" } else { " (dense)" };
            let _ = writeln!(
                out,
                "{:<34} {:>18} {:>8.4} {:>11} {:>11} {:>11}",
                format!("{}{mark}", l.path),
                format!("{:?}", l.shape),
                nnz as f64 / l.numel() as f64,
                nnz,
                human(m.sparse),
                human(m.dense)
            );
        }
        let params = count_params(&model);
        let sparse_weights: usize = plan.layers().iter().map(|l| l.numel()).sum();
        let kept: usize = counts.iter().sum();
        let (dense_macs, sparse_macs): (u64, u64) = macs.iter().fold((0, 0), |(d, s), m| (d + m.dense, s + m.sparse));
        let _ = writeln!(
            out,
            "\nparameters          {params} ({} in {} sparse layers)",
            sparse_weights,
            plan.layers().len()
        );
        let _ = writeln!(
            out,
            "nonzeros            {} ({:.2}% of all parameters)",
            params - sparse_weights + kept,
            100.0 * (params - sparse_weights + kept) as f64 / params as f64
        );
        let _ = writeln!(
            out,
            "sparse-layer sparsity {:.2}%",
            100.0 * (1.0 - kept as f64 / sparse_weights as f64)
        );
        let _ = writeln!(
            out,
            "forward MACs        {} sparse / {} dense ({:.2}x fewer)",
            human(sparse_macs),
            human(dense_macs),
            dense_macs as f64 / sparse_macs.max(1) as f64
        );
        if global {
            let _ = writeln!(
                out,
                "(global distribution: the real per-layer split depends on the weights; shown as uniform)"
            );
        }
        Ok(out)
    }
}

/// The `info` table for `cfg`'s model on images `input` with `classes` classes.
pub fn info(cfg: &RunConfig, input: [usize; 3], classes: usize, device: &Device) -> anyhow::Result<String> {
    sparse_models::flops::check_input(input, classes)?; // before any size is multiplied
    with_model(&cfg.model, input, classes, device, Info { cfg, input })?
}
