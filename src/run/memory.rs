//! A run whose model cannot fit in this machine's memory is refused before
//! anything of it is allocated.
//!
//! Burn initialises parameters lazily, so a model of any width costs nothing
//! until its weights are touched; the first dense tensor of a model too large
//! for the machine would otherwise end the process in the allocator's abort
//! or the kernel's OOM killer, with no word on why. [`check_fits`] compares
//! the least memory the run must hold at once ([`least_bytes`]) with the
//! memory this machine (or its cgroup) has available, and names the fix.
//! The bound counts only tensors that certainly coexist, so a refused run
//! could never have trained; a run it lets through may still need more
//! (activations, the batch, the data).

use anyhow::bail;
use burn::module::Module;
use sparse_core::{LayerFilter, discover};

use super::config::RunConfig;
use super::execution::{Execution, config_obstacle};
use crate::data::limits::human_bytes;

/// Bytes of one f32.
const F32: u64 = 4;

/// The least memory, in bytes, a run holds at once: `params` weights of which
/// `sparse_params` are in sparse layers, with `slots` optimizer moments per
/// weight (SGD with momentum 1, Adam 2).
///
/// - Masked-dense: the weights, their gradients and moments at the optimizer
///   step, and the sparse layers' float masks on the device.
/// - Sparse execution: the dense model while it is set up, beside its float
///   masks (so that both executions start from the same weights; its
///   checkpoints are compact). A resume also holds the moments densely
///   while it reads a checkpoint: the bound is a fresh run's, the lower one.
pub fn least_bytes(params: u64, sparse_params: u64, slots: u64, sparse_execution: bool) -> u64 {
    let words = if sparse_execution {
        params.saturating_add(sparse_params)
    } else {
        params.saturating_mul(2 + slots).saturating_add(sparse_params)
    };
    words.saturating_mul(F32)
}

/// The memory available to this process, bytes: `MemAvailable` and
/// `SwapFree` of `/proc/meminfo`, capped by the room under its cgroups'
/// limits ([`super::cgroup::room`], v1 and v2) where one is set; `None` off
/// Linux.
pub fn available_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = meminfo.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    };
    let swap = field("SwapFree:").unwrap_or(0);
    let machine = field("MemAvailable:")?.saturating_add(swap);
    Some(match super::cgroup::room(swap) {
        Some(room) => machine.min(room),
        None => machine,
    })
}

/// Refuses a run of `cfg` on `model` (its sparse layers chosen by `filter`)
/// that needs more memory than this machine has available, with the sizes
/// and the fix; lets everything through where the memory is unknown.
///
/// Under `--execution auto` the sparse-execution bound is used (the lower
/// one): a run whose every layer stays above its crossover density trains
/// masked-dense and may need the dense bound; the check only refuses what
/// cannot train either way.
pub fn check_fits<M: Module>(cfg: &RunConfig, model: &M, filter: &LayerFilter) -> anyhow::Result<()> {
    let Some(available) = available_bytes() else {
        return Ok(());
    };
    let params = model.num_params() as u64;
    let sparse_params: u64 = match cfg.target_sparsity() > 0.0 {
        true => discover(model, filter)?.iter().map(|l| l.numel() as u64).sum(),
        false => 0,
    };
    let can_run_sparse = sparse_params > 0 && config_obstacle(cfg).is_none();
    let need = Need {
        params,
        sparse_params,
        slots: cfg.optimizer.slots() as u64,
        // the smaller bound of the two wherever the run may end up sparse
        sparse: cfg.training.execution != Execution::Dense && can_run_sparse,
        can_run_sparse,
    };
    match need.refusal(available) {
        Some(message) => bail!(message),
        None => Ok(()),
    }
}

/// What a run must hold at once, for [`check_fits`].
struct Need {
    params: u64,
    sparse_params: u64,
    slots: u64,
    /// Whether the sparse-execution bound applies.
    sparse: bool,
    /// Whether the run could train in sparse execution.
    can_run_sparse: bool,
}

impl Need {
    /// The error for a machine with `available` bytes, `None` when it fits.
    fn refusal(&self, available: u64) -> Option<String> {
        let (params, sparse_params) = (self.params, self.sparse_params);
        let need = least_bytes(params, sparse_params, self.slots, self.sparse);
        if need <= available {
            return None;
        }
        let held = match (self.sparse, sparse_params > 0) {
            (true, _) => "the dense model and its masks while it is set up",
            (false, true) => "its weights, gradients and optimizer moments, and the masks",
            (false, false) => "its weights, gradients and optimizer moments",
        };
        let sparse_need = least_bytes(params, sparse_params, self.slots, true);
        let fix = match !self.sparse && self.can_run_sparse && sparse_need <= available {
            true => format!(
                "train it in sparse execution, which needs at least {} here: `--execution sparse`; or ",
                human_bytes(sparse_need as u128)
            ),
            false => String::new(),
        };
        let truly_sparse = match sparse_params > 0 {
            true => {
                ", or, for a network whose dense twin does not fit in memory, start it sparse without any dense \
                 tensor with the example in the source tree: \
                 `cargo run --release --example truly_sparse -- --hidden WIDTH --sparsity S` \
                 (docs/sparse-execution.md, \"Networks whose dense twin does not fit\")"
            }
            false => "",
        };
        Some(format!(
            "the model has {params} weights ({sparse_params} of them in sparse layers) and needs at least {} at once \
             ({held}), but this machine has {} available; {fix}train a smaller model (a narrower `--mlp-hidden` or \
             `--width`){truly_sparse}",
            human_bytes(need as u128),
            human_bytes(available as u128),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bounds from their tensors, counted one by one: 1000 weights, 800
    /// of them sparse, SGD with momentum (one moment).
    #[test]
    fn the_bound_counts_the_tensors_that_coexist() {
        let (weights, grads, moments, masks) = (1000, 1000, 1000, 800);
        assert_eq!(
            least_bytes(1000, 800, 1, false),
            4 * (weights + grads + moments + masks)
        );
        // sparse execution: the setup's dense model and masks, whatever the optimizer
        for moments in 0..3 {
            assert_eq!(least_bytes(1000, 800, moments, true), 4 * (1000 + 800));
        }
        assert_eq!(least_bytes(1000, 0, 0, false), 4 * 2000);
    }

    #[test]
    fn a_bound_past_u64_saturates_instead_of_wrapping() {
        assert_eq!(least_bytes(u64::MAX / 2, u64::MAX / 2, 2, false), u64::MAX);
    }

    #[test]
    fn linux_reports_some_memory_available() {
        if cfg!(target_os = "linux") {
            let bytes = available_bytes().expect("/proc/meminfo is readable on Linux");
            assert!(bytes > 0);
        }
    }

    fn need(sparse_params: u64, sparse: bool, can_run_sparse: bool) -> Need {
        Need {
            params: 1000,
            sparse_params,
            slots: 1,
            sparse,
            can_run_sparse,
        }
    }

    /// Masked-dense needs 4·(3·1000 + 800) = 15 200 bytes, sparse execution
    /// 4·1800 = 7 200: between the two, the refusal names `--execution
    /// sparse` first; below both, it does not; a run that cannot train
    /// sparse is not sent there.
    #[test]
    fn a_masked_dense_refusal_names_sparse_execution_where_that_fits() {
        assert!(need(800, false, true).refusal(15_200).is_none());
        let between = need(800, false, true).refusal(10_000).expect("refused");
        assert!(
            between.contains("`--execution sparse`") && between.contains("7.0 KiB"),
            "{between}"
        );
        assert!(between.contains("truly_sparse"), "{between}");
        let below = need(800, false, true).refusal(5_000).expect("refused");
        assert!(!below.contains("--execution sparse"), "{below}");
        let cannot = need(800, false, false).refusal(10_000).expect("refused");
        assert!(!cannot.contains("--execution sparse"), "{cannot}");
        let sparse = need(800, true, true).refusal(5_000).expect("refused");
        assert!(
            sparse.contains("while it is set up") && !sparse.contains("`--execution sparse`"),
            "{sparse}"
        );
    }

    /// A dense model (no sparse layers) is not told about masks, sparse
    /// execution or the sparse showcase.
    #[test]
    fn a_dense_refusal_names_no_sparse_way_out() {
        let dense = need(0, false, false).refusal(100).expect("refused");
        assert!(
            !dense.contains("mask") && !dense.contains("sparse execution"),
            "{dense}"
        );
        assert!(
            !dense.contains("truly_sparse") && dense.contains("smaller model"),
            "{dense}"
        );
    }
}
