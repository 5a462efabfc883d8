//! Finding the sparsifiable weights of any Burn module.
//!
//! A visitor walks the module and keeps every `weight` of a `Linear`,
//! `Conv1d`, `Conv2d` or `Conv3d` (biases and norms are never sparse). The
//! [`LayerFilter`] then includes or excludes weights by path pattern and by
//! role (first layer, last layer, depthwise conv).

use burn::config::Config;
use burn::module::{Module, Param};
use burn::tensor::Tensor;

use crate::error::{Result, SparseError};
use crate::layer::{LayerKind, Roles, SparseLayer};
use crate::walk::{self, ParamPath, PathVisitor};

/// Which weights are sparse.
#[derive(Config, Debug, PartialEq)]
pub struct LayerFilter {
    /// Glob patterns (`*` matches any run of characters, dots included) of
    /// weights to consider; empty means all.
    #[config(default = "Vec::new()")]
    pub include: Vec<String>,
    /// Glob patterns of weights to leave dense and untracked.
    #[config(default = "Vec::new()")]
    pub exclude: Vec<String>,
    /// Leave the first conv/linear weight dense.
    #[config(default = false)]
    pub skip_first: bool,
    /// Leave the last conv/linear weight (the classifier) dense.
    #[config(default = false)]
    pub skip_last: bool,
    /// Leave depthwise convolutions dense.
    #[config(default = false)]
    pub skip_depthwise: bool,
}

impl Default for LayerFilter {
    fn default() -> Self {
        Self::new()
    }
}

/// `*`-glob match over the whole string.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

#[derive(Default)]
struct Lister {
    found: Vec<SparseLayer>,
}

impl PathVisitor for Lister {
    fn visit<const D: usize>(&mut self, path: &ParamPath, param: &Param<Tensor<D>>) {
        let kind = match (path.leaf(), path.container()) {
            ("weight", "Struct:Linear") if D == 2 => LayerKind::Linear,
            ("weight", "Struct:Conv1d" | "Struct:Conv2d" | "Struct:Conv3d") if D >= 3 => LayerKind::Conv,
            _ => return,
        };
        self.found.push(SparseLayer {
            path: path.dotted(),
            param_id: param.id,
            shape: param.lazy_shape().to_vec(),
            kind,
            roles: Roles::default(),
        });
    }
}

/// Every conv/linear weight of `model`, in declaration order, with roles set.
pub fn all_weights<M: Module>(model: &M) -> Vec<SparseLayer> {
    let mut lister = Lister::default();
    walk::visit(model, &mut lister);
    let mut layers = lister.found;
    let n = layers.len();
    for (i, l) in layers.iter_mut().enumerate() {
        l.roles.first = i == 0;
        l.roles.last = i + 1 == n;
        l.roles.depthwise = l.kind == LayerKind::Conv && l.shape[1] == 1 && l.shape[0] > 1 && i != 0;
    }
    layers
}

/// Comma-separated list of paths for error messages (first 12).
pub(crate) fn known_paths(layers: &[SparseLayer]) -> String {
    let mut s: Vec<&str> = layers.iter().take(12).map(|l| l.path.as_str()).collect();
    if layers.len() > 12 {
        s.push("...");
    }
    s.join(", ")
}

/// The sparse weights of `model` under `filter`.
///
/// Errors if an include or exclude pattern matches no weight (usually a typo),
/// or if nothing is left.
pub fn discover<M: Module>(model: &M, filter: &LayerFilter) -> Result<Vec<SparseLayer>> {
    let all = all_weights(model);
    for pattern in filter.include.iter().chain(&filter.exclude) {
        if !all.iter().any(|l| glob_match(pattern, &l.path)) {
            return Err(SparseError::UnknownLayer {
                path: pattern.clone(),
                known: known_paths(&all),
            });
        }
    }
    let kept: Vec<SparseLayer> = all
        .into_iter()
        .filter(|l| filter.include.is_empty() || filter.include.iter().any(|p| glob_match(p, &l.path)))
        .filter(|l| !filter.exclude.iter().any(|p| glob_match(p, &l.path)))
        .filter(|l| !(filter.skip_first && l.roles.first))
        .filter(|l| !(filter.skip_last && l.roles.last))
        .filter(|l| !(filter.skip_depthwise && l.roles.depthwise))
        .collect();
    if kept.is_empty() {
        return Err(SparseError::NoLayers);
    }
    tracing::debug!(layers = kept.len(), "discovered sparse weights");
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        assert!(glob_match("*", "a.b"));
        assert!(glob_match("layer1.*.weight", "layer1.blocks.0.conv1.weight"));
        assert!(!glob_match("layer1.*.weight", "layer2.blocks.0.conv1.weight"));
        assert!(glob_match("fc", "fc"));
        assert!(!glob_match("fc", "fc2"));
        assert!(glob_match("*conv*", "a.conv1.weight"));
    }
}
