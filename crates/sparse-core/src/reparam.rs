//! The opt-in extension for methods that change the model itself.
//!
//! Most methods only choose masks. A few also rewrite the weights in the
//! forward pass (AutoSparse's learnable threshold, SR-STE's N:M mask), add
//! learnable parameters with their own weight decay, add a term to the
//! gradients, or keep soft masks that only report. Such a method returns a
//! [`Reparameterize`] from [`crate::Method::reparameterization`]; the
//! [`crate::Sparsifier`] then attaches the [`ForwardRule`] to every sparse weight
//! itself (in [`crate::Sparsifier::init`], or [`crate::Sparsifier::attach`]
//! before loading saved weights), so the model and the hook can never disagree.
//!
//! The rule lives in a Burn [`Reparameterization`] owned by sparse-core
//! ([`MethodReparam`]): its extra parameters are ordinary Burn parameters,
//! stored under `<weight path>.sparse.extra.<i>`, trained, saved and moved
//! with the model.

use std::collections::HashMap;
use std::sync::Arc;

use burn::module::{Module, Param, Reparameterization, Reparameterizer};
use burn::tensor::{Tensor, TensorData};

use crate::error::Result;
use crate::grad_term::GradTerm;
use crate::layer::SparseLayer;
use crate::plan::Plan;
use crate::walk::{self, ParamPath, PathVisitor};

/// The path component of the reparameterization (`<weight path>.sparse.extra.<i>`).
pub const NAME: &str = "sparse";

/// Glob matching every extra parameter of every sparse weight.
pub const EXTRA_GLOB: &str = "*.sparse.extra.*";

/// How a method rewrites a sparse weight in the forward pass.
pub trait ForwardRule: Send + Sync + std::fmt::Debug {
    /// Initial values of the extra learnable parameters of one weight (each flat).
    fn extra_params(&self, layer: &SparseLayer) -> Vec<Vec<f32>> {
        let _ = layer;
        Vec::new()
    }

    /// The weight the forward pass uses, from the stored weight and the extra
    /// parameters, all flat (row-major, as [`SparseLayer::flat`] indexes them).
    fn forward(&self, layer: &SparseLayer, weight: Tensor<1>, extra: &[Tensor<1>]) -> Tensor<1>;
}

/// What a reparameterising method adds to the model and to the step.
pub trait Reparameterize: Send + Sync {
    /// The rule attached to every sparse weight (`None`: the forward pass is unchanged).
    fn forward_rule(&self, plan: &Plan) -> Result<Option<Arc<dyn ForwardRule>>>;

    /// Terms added to the sparse weights' gradients before every optimizer step.
    fn grad_terms(&self, plan: &Plan) -> Result<Vec<Arc<dyn GradTerm>>> {
        let _ = plan;
        Ok(Vec::new())
    }

    /// Weight decay of the extra parameters (`None`: the optimizer's).
    fn extra_decay(&self) -> Option<f64> {
        None
    }

    /// Whether the masks are imposed now: gradients of pruned weights zeroed and
    /// pruned weights kept at 0. False while the forward rule does the masking
    /// and the masks only report (may turn true during training).
    fn hard_masks(&self) -> bool {
        true
    }
}

/// The Burn reparameterization of one sparse weight: the method's rule and its
/// extra parameters.
#[derive(Module, Debug)]
pub struct MethodReparam {
    /// The method's learnable parameters of this weight (e.g. AutoSparse's threshold logit).
    pub extra: Vec<Param<Tensor<1>>>,
    #[module(skip)]
    layer: SparseLayer,
    #[module(skip)]
    rule: Arc<dyn ForwardRule>,
}

impl Reparameterization for MethodReparam {
    const NAME: &'static str = NAME;

    fn apply<const D: usize>(&self, base: Tensor<D>) -> Tensor<D> {
        let dims = base.dims();
        let extra: Vec<Tensor<1>> = self.extra.iter().map(|p| p.val()).collect();
        self.rule
            .forward(&self.layer, base.reshape([self.layer.numel()]), &extra)
            .reshape(dims)
    }
}

struct Attach<'a> {
    layers: HashMap<&'a str, &'a SparseLayer>,
    rule: Arc<dyn ForwardRule>,
}

impl Reparameterizer for Attach<'_> {
    type Reparam = MethodReparam;

    fn reparameterize<const D: usize>(
        &mut self,
        path: &str,
        param: Param<Tensor<D>>,
    ) -> (Param<Tensor<D>>, Option<MethodReparam>) {
        let Some(layer) = self.layers.get(path) else {
            return (param, None);
        };
        let device = param.lazy_device();
        let extra = self
            .rule
            .extra_params(layer)
            .into_iter()
            .map(|v| {
                let n = v.len();
                Param::from_tensor(Tensor::<1>::from_data(TensorData::new(v, [n]), &device))
            })
            .collect();
        let reparam = MethodReparam {
            extra,
            layer: (*layer).clone(),
            rule: self.rule.clone(),
        };
        (param, Some(reparam))
    }
}

/// Attaches `rule` to every weight of `layers` in `model`.
pub(crate) fn attach<M: Module>(model: M, layers: &[SparseLayer], rule: Arc<dyn ForwardRule>) -> M {
    model.apply_reparameterization(Attach {
        layers: layers.iter().map(|l| (l.path.as_str(), l)).collect(),
        rule,
    })
}

struct Attached<'a> {
    paths: &'a [&'a str],
    found: usize,
}

impl PathVisitor for Attached<'_> {
    fn visit<const D: usize>(&mut self, _: &ParamPath, _: &Param<Tensor<D>>) {}

    fn enter(&mut self, path: &ParamPath) {
        if path.leaf() == NAME && path.container() == "Reparameterization" {
            let names = path.names();
            let weight = names[..names.len() - 1].join(".");
            if self.paths.contains(&weight.as_str()) {
                self.found += 1;
            }
        }
    }
}

/// How many weights of `layers` carry the method's reparameterization in `model`.
pub(crate) fn attached_count<M: Module>(model: &M, layers: &[SparseLayer]) -> usize {
    let paths: Vec<&str> = layers.iter().map(|l| l.path.as_str()).collect();
    let mut v = Attached {
        paths: &paths,
        found: 0,
    };
    walk::visit(model, &mut v);
    v.found
}
