//! Layer-wise sparsity distributions: how many weights each layer keeps.
//!
//! * **Uniform**: every layer at the target density (optionally the first layer dense).
//! * **ER** (Mocanu et al. 2018) and **ERK** (Evci et al. 2020, RigL): layer `l` gets
//!   density `ε·r_l` with `r_l = (Σ_i dim_i / Π_i dim_i)^p` (ERK, all dims including the
//!   kernel; `p` = power scale) or `r_l = (n_in + n_out)/(n_in·n_out)` (ER). `ε` solves
//!   `Σ_l ε·r_l·N_l = d·N`; a layer with `ε·r_l > 1` is made dense and `ε` is solved again
//!   over the rest (rigl `sparse_utils.get_sparsities_erdos_renyi`).
//! * **Global**: one magnitude (or score) ranking over all layers; the per-layer counts
//!   come out of the selection.
//! * **Explicit**: a density per layer, given by path patterns.
//!
//! # Rounding rule
//! The target total is `T = round(d·N)` nonzeros over the distributed layers. Real-valued
//! per-layer counts `d_l·N_l` are turned into integers by the largest-remainder method
//! (floor every layer, then give one more weight to the layers with the largest fractional
//! parts, ties to the earlier layer), so `Σ_l n_l = T` exactly and `|n_l − d_l·N_l| < 1`.
//! RigL's reference floors the zeros per layer instead, which can miss the total by up to
//! one weight per layer. Patterns may round a layer's count further down to their grid
//! (see [`crate::pattern`]).

use crate::discovery::{glob_match, known_paths};
use crate::error::{Result, SparseError, check_density, check_sparsity};
use crate::layer::SparseLayer;

/// How the target sparsity is spread over layers. Written as text on the
/// command line and in config files: `erk` (or `erk:P` for power scale P), `er`,
/// `uniform`, `uniform-dense-first`, `global`, `explicit:GLOB=D,GLOB=D,...`.
#[derive(Clone, Debug, PartialEq)]
pub enum Distribution {
    /// The same density in every layer.
    Uniform {
        /// Keep the model's first layer dense (RigL's "uniform" baseline). The other
        /// layers keep the target density, so the global density is then above target.
        dense_first_layer: bool,
    },
    /// Erdős–Rényi: `r_l = (n_in + n_out)/(n_in·n_out)` (kernel ignored).
    Er,
    /// Erdős–Rényi-Kernel with power scale `p` (1.0 in RigL; 0.0 gives uniform).
    Erk {
        /// Exponent applied to the raw ERK score.
        power_scale: f64,
    },
    /// One ranking across all layers (global magnitude/score pruning).
    Global,
    /// A density per layer: `(path pattern, density)`; the first matching pattern wins.
    Explicit {
        /// Ordered pattern → density pairs.
        densities: Vec<(String, f64)>,
    },
}

impl Default for Distribution {
    fn default() -> Self {
        Self::Erk { power_scale: 1.0 }
    }
}

impl std::fmt::Display for Distribution {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Uniform {
                dense_first_layer: false,
            } => f.write_str("uniform"),
            Self::Uniform {
                dense_first_layer: true,
            } => f.write_str("uniform-dense-first"),
            Self::Er => f.write_str("er"),
            Self::Erk { power_scale } if *power_scale == 1.0 => f.write_str("erk"),
            Self::Erk { power_scale } => write!(f, "erk:{power_scale}"),
            Self::Global => f.write_str("global"),
            Self::Explicit { densities } => {
                let pairs: Vec<String> = densities.iter().map(|(p, d)| format!("{p}={d}")).collect();
                write!(f, "explicit:{}", pairs.join(","))
            }
        }
    }
}

impl std::str::FromStr for Distribution {
    type Err = SparseError;

    /// Parses `erk`, `erk:P`, `er`, `uniform`, `uniform-dense-first`, `global` or
    /// `explicit:GLOB=D,GLOB=D,...`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| {
            SparseError::InvalidConfig(format!(
                "distribution `{s}`{why}; use erk, erk:P (power scale P, e.g. erk:0.5), er, uniform, uniform-dense-first, global or explicit:GLOB=DENSITY,..."
            ))
        };
        let s = s.trim();
        Ok(match s {
            "erk" => Self::Erk { power_scale: 1.0 },
            "er" => Self::Er,
            "uniform" => Self::Uniform {
                dense_first_layer: false,
            },
            "uniform-dense-first" => Self::Uniform {
                dense_first_layer: true,
            },
            "global" => Self::Global,
            _ => {
                if let Some(p) = s.strip_prefix("erk:") {
                    let power_scale: f64 = p.trim().parse().map_err(|_| bad(": the power scale is not a number"))?;
                    Self::Erk { power_scale }
                } else if let Some(list) = s.strip_prefix("explicit:") {
                    let densities = list
                        .split(',')
                        .map(|pair| {
                            let (glob, d) = pair
                                .split_once('=')
                                .ok_or_else(|| bad(": expected GLOB=DENSITY pairs"))?;
                            let d: f64 = d.trim().parse().map_err(|_| bad(": a density is not a number"))?;
                            Ok((glob.trim().to_string(), d))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    Self::Explicit { densities }
                } else {
                    return Err(bad(" is unknown"));
                }
            }
        })
    }
}

crate::config_text::text_config!(Distribution);

/// What a distribution decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allocation {
    /// Exact nonzeros per layer.
    PerLayer(Vec<usize>),
    /// A total, distributed by a global ranking at selection time.
    Global(usize),
}

/// Raw ERK scores `(Σ dims / Π dims)^power` per layer.
pub fn erk_scores(layers: &[SparseLayer], power_scale: f64) -> Vec<f64> {
    layers
        .iter()
        .map(|l| {
            let dims = l.erk_dims();
            let sum: f64 = dims.iter().map(|d| *d as f64).sum();
            let prod: f64 = dims.iter().map(|d| *d as f64).product();
            (sum / prod).powf(power_scale)
        })
        .collect()
}

/// Raw ER scores `(n_in + n_out)/(n_in·n_out)` per layer.
pub fn er_scores(layers: &[SparseLayer]) -> Vec<f64> {
    layers
        .iter()
        .map(|l| {
            let [i, o] = l.er_dims().map(|d| d as f64);
            (i + o) / (i * o)
        })
        .collect()
}

/// Densities `min(1, ε·r_l)` solving `Σ_l d_l·N_l = density·Σ_l N_l`, by RigL's
/// iteration: while some `ε·r_l > 1`, make the layers with the largest score dense and
/// solve again over the rest.
pub fn scaled_densities(numels: &[usize], raw: &[f64], density: f64) -> Vec<f64> {
    let total: f64 = numels.iter().map(|n| *n as f64).sum();
    let mut dense = vec![false; numels.len()];
    loop {
        let dense_sum: f64 = (0..numels.len()).filter(|&l| dense[l]).map(|l| numels[l] as f64).sum();
        let divisor: f64 = (0..numels.len())
            .filter(|&l| !dense[l])
            .map(|l| raw[l] * numels[l] as f64)
            .sum();
        if divisor <= 0.0 {
            return vec![1.0; numels.len()];
        }
        let eps = (density * total - dense_sum) / divisor;
        let max_raw = (0..numels.len())
            .filter(|&l| !dense[l])
            .map(|l| raw[l])
            .fold(f64::NEG_INFINITY, f64::max);
        if eps * max_raw > 1.0 {
            for l in 0..numels.len() {
                if !dense[l] && raw[l] == max_raw {
                    tracing::debug!(layer = l, "ERK: layer becomes dense");
                    dense[l] = true;
                }
            }
            continue;
        }
        return (0..numels.len())
            .map(|l| if dense[l] { 1.0 } else { eps * raw[l] })
            .collect();
    }
}

/// Largest-remainder apportionment of `total` nonzeros over layers with real-valued
/// shares `densities[l]·numels[l]` (see the module docs).
pub fn apportion(numels: &[usize], densities: &[f64], total: usize) -> Vec<usize> {
    let exact: Vec<f64> = numels
        .iter()
        .zip(densities)
        .map(|(n, d)| (d * *n as f64).clamp(0.0, *n as f64))
        .collect();
    let mut counts: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut order: Vec<usize> = (0..numels.len()).collect();
    order.sort_by(|&a, &b| {
        let (fa, fb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
        fb.total_cmp(&fa).then(a.cmp(&b))
    });
    let mut missing = total.saturating_sub(counts.iter().sum());
    while missing > 0 {
        let before = missing;
        for &l in &order {
            if missing == 0 {
                break;
            }
            if counts[l] < numels[l] {
                counts[l] += 1;
                missing -= 1;
            }
        }
        if before == missing {
            break; // every layer is full
        }
    }
    counts
}

fn round_total(numels: &[usize], density: f64) -> usize {
    (density * numels.iter().sum::<usize>() as f64).round() as usize
}

impl Distribution {
    /// Nonzero counts for `layers` at `sparsity`.
    pub fn allocate(&self, layers: &[SparseLayer], sparsity: f64) -> Result<Allocation> {
        check_sparsity(sparsity)?;
        let density = 1.0 - sparsity;
        let numels: Vec<usize> = layers.iter().map(SparseLayer::numel).collect();
        let counts = match self {
            Self::Uniform { dense_first_layer } => {
                let dense: Vec<bool> = layers.iter().map(|l| *dense_first_layer && l.roles.first).collect();
                let rest: Vec<usize> = numels
                    .iter()
                    .zip(&dense)
                    .filter(|(_, d)| !**d)
                    .map(|(n, _)| *n)
                    .collect();
                let densities: Vec<f64> = dense.iter().map(|d| if *d { 1.0 } else { density }).collect();
                let total = round_total(&rest, density)
                    + numels
                        .iter()
                        .zip(&dense)
                        .filter(|(_, d)| **d)
                        .map(|(n, _)| n)
                        .sum::<usize>();
                apportion(&numels, &densities, total)
            }
            Self::Er => apportion(
                &numels,
                &scaled_densities(&numels, &er_scores(layers), density),
                round_total(&numels, density),
            ),
            Self::Erk { power_scale } => {
                if !power_scale.is_finite() || *power_scale < 0.0 {
                    return Err(SparseError::InvalidConfig(format!(
                        "ERK power scale {power_scale} must be a finite number >= 0 (1.0 is RigL's default)"
                    )));
                }
                let raw = erk_scores(layers, *power_scale);
                apportion(
                    &numels,
                    &scaled_densities(&numels, &raw, density),
                    round_total(&numels, density),
                )
            }
            Self::Global => return Ok(Allocation::Global(round_total(&numels, density))),
            Self::Explicit { densities } => explicit_counts(layers, densities)?,
        };
        Ok(Allocation::PerLayer(counts))
    }
}

fn explicit_counts(layers: &[SparseLayer], densities: &[(String, f64)]) -> Result<Vec<usize>> {
    for (pattern, d) in densities {
        check_density(pattern, *d)?;
        if !layers.iter().any(|l| glob_match(pattern, &l.path)) {
            return Err(SparseError::UnknownLayer {
                path: pattern.clone(),
                known: known_paths(layers),
            });
        }
    }
    layers
        .iter()
        .map(|l| {
            let d = densities
                .iter()
                .find(|(p, _)| glob_match(p, &l.path))
                .map(|(_, d)| *d)
                .ok_or_else(|| {
                    SparseError::InvalidConfig(format!(
                        "explicit distribution gives no density for layer `{}`; add a pattern that matches it",
                        l.path
                    ))
                })?;
            Ok(((d * l.numel() as f64).round() as usize).clamp(1, l.numel()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apportion_hits_the_total_and_stays_within_one() {
        let numels = [10, 33, 7, 100];
        let d = [0.25, 0.5, 1.0, 0.123];
        let total = 2 + 16 + 7 + 12 + 3; // 40
        let c = apportion(&numels, &d, total);
        assert_eq!(c.iter().sum::<usize>(), total);
        for l in 0..4 {
            assert!((c[l] as f64 - d[l] * numels[l] as f64).abs() < 1.0 + 1e-9 || c[l] == numels[l]);
            assert!(c[l] <= numels[l]);
        }
    }

    #[test]
    fn scaled_densities_with_equal_scores_is_uniform() {
        let d = scaled_densities(&[100, 200, 300], &[1.0, 1.0, 1.0], 0.2);
        for x in d {
            assert!((x - 0.2).abs() < 1e-12);
        }
    }

    #[test]
    fn scaled_densities_caps_at_one() {
        // the small layer has a huge score: it becomes dense, the rest absorbs the budget
        let d = scaled_densities(&[10, 1000], &[100.0, 1.0], 0.5);
        assert_eq!(d[0], 1.0);
        assert!((d[1] - (505.0 - 10.0) / 1000.0).abs() < 1e-12);
    }
}
