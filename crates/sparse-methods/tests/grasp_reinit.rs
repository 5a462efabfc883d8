//! GraSP's scoring copy (issue 13): the reference (`GraSP.py`, `reinit=True`)
//! redraws every Linear weight Xavier-normal in a copy and scores that copy; the
//! model keeps its weights. A quadratic loss `L = ½ θᵀAθ` (so `g = Aθ`,
//! `Hg = A²θ`, keep score `θ ⊙ Hg = a_i² θ_i²`) makes the scores exact.

use sparse_core::method::{GradRequest, GradientOracle, InitContext, Method};
use sparse_core::{Distribution, Mask, Plan, Result, SparseLayer, SparsityConfig};
use sparse_methods::grasp::{ReinitLinear, scoring_weights};
use sparse_methods::{Grasp, GraspConfig};

/// `g = Aθ` with `A = diag(a)`; remembers the weights of its first call.
struct Quadratic {
    a: Vec<f32>,
    model: Vec<f32>,
    first: Option<Vec<f32>>,
}

impl GradientOracle for Quadratic {
    fn gradients(&mut self, weights: Option<&[Vec<f32>]>, _: &GradRequest) -> Result<Vec<Vec<f32>>> {
        let w = weights.map_or(self.model.clone(), |w| w[0].clone());
        self.first.get_or_insert_with(|| w.clone());
        Ok(vec![w.iter().zip(&self.a).map(|(w, a)| w * a).collect()])
    }
}

fn plan() -> Plan {
    let config = SparsityConfig::new()
        .with_sparsity(0.5)
        .with_distribution(Distribution::Global);
    Plan::new(vec![SparseLayer::linear("w", 2, 2)], config).unwrap()
}

/// GraSP's mask and the weights the oracle saw first.
fn grasp(reinit: ReinitLinear) -> (Vec<usize>, Vec<f32>, Vec<f32>, bool) {
    let theta = vec![1.0f32, -2.0, 0.5, 3.0];
    let plan = plan();
    let mut oracle = Quadratic {
        a: vec![1.0, 2.0, 3.0, 4.0],
        model: theta.clone(),
        first: None,
    };
    let mut weights = vec![theta.clone()];
    let mut masks = vec![Mask::ones(4)];
    let mut method = Grasp::new(GraspConfig::new().with_reinit_linear(reinit), 2).unwrap();
    let changed = {
        let mut ctx = InitContext::new(&plan, &mut weights, 7).with_oracle(&mut oracle);
        method.init(&mut ctx, &mut masks).unwrap();
        ctx.weights_changed()
    };
    assert_eq!(weights[0], theta, "the model's weights are never replaced");
    (masks[0].iter_ones().collect(), oracle.first.unwrap(), theta, changed)
}

#[test]
fn without_reinit_the_lowest_grasp_scores_are_kept() {
    // g = [1, −4, 1.5, 12], Hg = [1, −8, 4.5, 48], S = −θ⊙Hg = [−1, −16, −2.25, −144]
    let (mask, seen, theta, changed) = grasp(ReinitLinear::None);
    assert_eq!(seen, theta);
    assert_eq!(mask, vec![1, 3]);
    assert!(!changed);
}

#[test]
fn the_default_scores_a_redrawn_copy_of_the_linear_weights() {
    assert_eq!(GraspConfig::new().reinit_linear, ReinitLinear::All);
    let (mask, seen, theta, changed) = grasp(ReinitLinear::All);
    assert_ne!(seen, theta);
    assert!(!changed);
    // keep the two largest a_i²·θ_s,i²
    let a = [1.0f32, 2.0, 3.0, 4.0];
    let mut order: Vec<usize> = (0..4).collect();
    order.sort_by(|&i, &j| (a[j] * seen[j]).powi(2).total_cmp(&(a[i] * seen[i]).powi(2)));
    let mut want = order[..2].to_vec();
    want.sort();
    assert_eq!(mask, want);
}

#[test]
fn the_redrawn_weights_are_xavier_normal() {
    let layers = vec![SparseLayer::linear("w", 300, 100)];
    let copy = scoring_weights(&layers, &[vec![0.0; 30000]], ReinitLinear::All, 1).unwrap();
    let n = copy[0].len() as f64;
    let mean = copy[0].iter().map(|&x| x as f64).sum::<f64>() / n;
    let std = (copy[0].iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let want = (2.0f64 / 400.0).sqrt();
    assert!((std / want - 1.0).abs() < 0.05, "std {std}, want {want}");
    // `last` redraws only the last Linear layer
    let two = vec![SparseLayer::linear("a", 4, 4), SparseLayer::linear("b", 4, 2)];
    let w = vec![vec![0.5; 16], vec![0.5; 8]];
    let copy = scoring_weights(&two, &w, ReinitLinear::Last, 1).unwrap();
    assert_eq!(copy[0], w[0]);
    assert_ne!(copy[1], w[1]);
    assert!(scoring_weights(&two, &w, ReinitLinear::None, 1).is_none());
}
