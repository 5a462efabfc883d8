//! `sparseburn info`: per-layer shapes, densities, nonzeros and multiply-adds of
//! a model at a sparsity, without training (the model's weights are never
//! allocated: shapes come from its lazy parameters).

use std::fmt::Write as _;

use anyhow::Context;
use burn::tensor::Device;
use sparse_core::discovery::all_weights;
use sparse_core::{Plan, discover};
use sparse_models::{Classifier, count_params, model_macs};

use super::config::RunConfig;
use super::models::{WithModel, with_model};
use super::report::{SHAPE_LEGEND, human, shape_text};

struct Info<'a> {
    cfg: &'a RunConfig,
    input: [usize; 3],
    classes: usize,
}

impl WithModel for Info<'_> {
    type Output = anyhow::Result<String>;

    fn run<M: Classifier + 'static>(self, make: &dyn Fn() -> M) -> anyhow::Result<String> {
        let model = make();
        // a recipe's model is its last stage's
        let sparsity = self.cfg.final_config().sparsity_config(model.sparsity_filter());
        let layers = discover(&model, &sparsity.filter)?;
        let target = sparsity.sparsity;
        let global = sparsity.distribution == sparse_core::Distribution::Global;
        let (distribution, pattern) = (sparsity.distribution.to_string(), sparsity.pattern.to_string());
        let plan = Plan::new(layers, sparsity)?;
        let counts = plan.counts(target)?;
        let active = plan
            .layers()
            .iter()
            .zip(&counts)
            .map(|(l, c)| (l.path.clone(), *c))
            .collect();
        let positions = model.output_positions(self.input);
        if let Some((path, _)) = positions.iter().find(|(_, p)| **p == 0) {
            anyhow::bail!(
                "the input {}x{}x{} is too small for {}: `{path}` has no output position; use a larger --input",
                self.input[0],
                self.input[1],
                self.input[2],
                self.cfg.model.name.name()
            );
        }
        let macs = model_macs(&model, self.input, &active)?;
        let all = all_weights(&model);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} on {}x{}x{} inputs, {} classes; method {}, sparsity {:.1}% ({distribution}, {pattern})",
            self.cfg.model.name.name(),
            self.input[0],
            self.input[1],
            self.input[2],
            self.classes,
            self.cfg.method_label(),
            100.0 * target,
        );
        let _ = writeln!(out, "shape: {SHAPE_LEGEND}");
        let _ = writeln!(
            out,
            "(dense): kept dense, outside the sparse set, by the model's policy or --dense-first-layer/--dense-last-layer"
        );
        let _ = writeln!(out, "MACs: multiply-adds per input image (dense: every weight)\n");
        let _ = writeln!(
            out,
            "{:<36} {:>16} {:>8} {:>11} {:>11} {:>11}",
            "layer", "shape", "density", "nonzeros", "MACs", "dense MACs"
        );
        for (l, m) in all.iter().zip(&macs) {
            let nnz = active.get(&l.path).copied().unwrap_or(l.numel());
            let mark = if active.contains_key(&l.path) { "" } else { " (dense)" };
            let _ = writeln!(
                out,
                "{:<36} {:>16} {:>7.2}% {:>11} {:>11} {:>11}",
                format!("{}{mark}", l.path),
                shape_text(l.kind, &l.shape),
                100.0 * nnz as f64 / l.numel().max(1) as f64,
                nnz,
                human(m.sparse),
                human(m.dense)
            );
        }
        let params = count_params(&model);
        let sparse_weights: usize = plan.layers().iter().map(|l| l.numel()).sum();
        let kept: usize = counts.iter().sum();
        let nonzeros = params
            .checked_sub(sparse_weights)
            .and_then(|dense| dense.checked_add(kept))
            .context("parameter counts do not add up")?;
        let sum = |f: fn(&sparse_core::stats::LayerMacs) -> u64| -> anyhow::Result<u64> {
            macs.iter()
                .try_fold(0u64, |acc, m| acc.checked_add(f(m)))
                .context("the multiply-adds do not fit in 64 bits; use a smaller input")
        };
        let (dense_macs, sparse_macs) = (sum(|m| m.dense)?, sum(|m| m.sparse)?);
        let _ = writeln!(
            out,
            "\nparameters          {params} ({sparse_weights} in {} sparse layers)",
            plan.layers().len()
        );
        let _ = writeln!(
            out,
            "nonzeros            {nonzeros} ({:.2}% of all parameters)",
            100.0 * nonzeros as f64 / params.max(1) as f64
        );
        let _ = writeln!(
            out,
            "sparse-layer sparsity {:.2}%",
            100.0 * (1.0 - kept as f64 / sparse_weights.max(1) as f64)
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
    with_model(&cfg.model, input, classes, device, Info { cfg, input, classes })?
}
