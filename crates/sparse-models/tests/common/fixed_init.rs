//! Initial weights drawn from a seed of their own.
//!
//! `Device::seed` seeds a generator that every test of the binary shares, so
//! a model's initial weights depend on which other tests, running at the same
//! time on other threads, drew from it first. A test that compares two
//! executions to float order, where one rounding tie at a ReLU can part them,
//! needs weights that are the same on every run: [`fixed_init`] gives them.
#![allow(dead_code)]

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Tensor, TensorData};
use sparse_core::Rng;

/// `model` with every weight (a parameter named `weight`, of rank 2 or more)
/// redrawn from U(−b, b), b = 1/√fan_in (Burn's default for linear and
/// convolution layers), and every bias set to 0, from `seed` alone. Norm
/// parameters and running statistics keep their initial values.
pub fn fixed_init<M: Module>(model: M, seed: u64) -> M {
    model.map(&mut FixedInit {
        leaf: String::new(),
        rng: Rng::new(seed),
    })
}

struct FixedInit {
    leaf: String,
    rng: Rng,
}

impl ModuleMapper for FixedInit {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.leaf = name.to_string();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let rng = &mut self.rng;
        let leaf = self.leaf.as_str();
        param.map(|t| {
            let (dims, device, tracked) = (t.dims(), t.device(), t.is_require_grad());
            let n: usize = dims.iter().product();
            let values: Vec<f32> = match leaf {
                "weight" if D >= 2 => {
                    // Burn's linear weights are [in, out], convolutions' [out, in, k…]
                    let fan_in = if D == 2 { dims[0] } else { n / dims[0] };
                    let bound = 1.0 / (fan_in as f32).sqrt();
                    (0..n).map(|_| (rng.next_f32() * 2.0 - 1.0) * bound).collect()
                }
                "bias" => vec![0.0; n],
                _ => return t,
            };
            let fresh = Tensor::<D>::from_data(TensorData::new(values, dims), &device);
            if tracked { fresh.require_grad() } else { fresh }
        })
    }
}
