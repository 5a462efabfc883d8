//! Importing PyTorch (torchvision) weights from safetensors.
//!
//! Every float parameter of the model is looked up by its path with Burn's
//! names translated to PyTorch's: BatchNorm `gamma`/`beta` are `weight`/`bias`,
//! running statistics keep their names, and `Linear` weights are transposed
//! (`[out, in]` in PyTorch, `[in, out]` in Burn). Extra keys in the file (e.g.
//! `num_batches_tracked`) are ignored. A missing key or a shape that does not fit
//! is an error naming the key; nothing is changed unless every parameter fits.
//!
//! Export a torchvision model with
//! `safetensors.torch.save_file(torchvision.models.resnet50(weights="DEFAULT").state_dict(), "resnet50.safetensors")`.

use std::collections::HashMap;
use std::path::Path;

use burn::module::{Module, Param};
use burn::tensor::{Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};
use sparse_core::walk::{self, ParamPath, PathMapper, PathVisitor};

use crate::error::ModelError;

struct Target {
    key: String,
    torch_shape: Vec<usize>,
    transpose: bool,
}

#[derive(Default)]
struct Planner {
    targets: Vec<(String, Target)>,
}

impl PathVisitor for Planner {
    fn visit<const D: usize>(&mut self, path: &ParamPath, param: &Param<Tensor<D>>) {
        let (leaf, container) = (path.leaf(), path.container());
        let mut names: Vec<String> = path.names().to_vec();
        if container == "Struct:BatchNorm" {
            let renamed = match leaf {
                "gamma" => "weight",
                "beta" => "bias",
                other => other,
            };
            if let Some(last) = names.last_mut() {
                *last = renamed.to_string();
            }
        }
        let mut shape = param.lazy_shape().to_vec();
        let transpose = container == "Struct:Linear" && leaf == "weight";
        if transpose {
            shape.reverse();
        }
        self.targets.push((
            path.dotted(),
            Target {
                key: names.join("."),
                torch_shape: shape,
                transpose,
            },
        ));
    }
}

struct Loader {
    values: HashMap<String, (Vec<f32>, Vec<usize>)>,
}

impl PathMapper for Loader {
    fn map<const D: usize>(&mut self, path: &ParamPath, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some((values, shape)) = self.values.remove(&path.dotted()) else {
            return param;
        };
        param.map(|t| {
            let device = t.device();
            let require_grad = t.is_require_grad();
            let dims: [usize; D] = t.dims();
            debug_assert_eq!(shape, dims.to_vec());
            let mut fresh = Tensor::<D>::from_data(TensorData::new(values, dims), &device);
            if require_grad {
                fresh = fresh.require_grad();
            }
            fresh
        })
    }
}

fn read_f32(path: &Path, key: &str, dtype: Dtype, bytes: &[u8]) -> Result<Vec<f32>, ModelError> {
    match dtype {
        Dtype::F32 => Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()),
        Dtype::F64 => Ok(bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32)
            .collect()),
        other => Err(ModelError::File {
            path: path.to_path_buf(),
            detail: format!("tensor `{key}` is {other:?}; save the checkpoint as float32"),
        }),
    }
}

fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

/// Loads torchvision-format weights from a safetensors file into `model`.
pub fn load_torchvision<M: Module>(model: M, path: impl AsRef<Path>) -> Result<M, ModelError> {
    let path = path.as_ref();
    let file_err = |detail: String| ModelError::File {
        path: path.to_path_buf(),
        detail,
    };
    let bytes = std::fs::read(path).map_err(|e| file_err(e.to_string()))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| file_err(format!("not a safetensors file ({e:?})")))?;
    let mut planner = Planner::default();
    walk::visit(&model, &mut planner);
    let mut values = HashMap::new();
    for (param, target) in planner.targets {
        let tensor = st.tensor(&target.key).map_err(|_| ModelError::MissingKey {
            path: path.to_path_buf(),
            key: target.key.clone(),
            param: param.clone(),
        })?;
        if tensor.shape() != target.torch_shape.as_slice() {
            return Err(ModelError::ShapeMismatch {
                path: path.to_path_buf(),
                key: target.key,
                param,
                found: tensor.shape().to_vec(),
                expected: target.torch_shape,
            });
        }
        let mut v = read_f32(path, &target.key, tensor.dtype(), tensor.data())?;
        let mut shape = target.torch_shape;
        if target.transpose {
            v = transpose(&v, shape[0], shape[1]);
            shape.reverse();
        }
        values.insert(param, (v, shape));
    }
    tracing::info!(path = %path.display(), tensors = values.len(), "imported torchvision weights");
    Ok(walk::map(model, &mut Loader { values }))
}
