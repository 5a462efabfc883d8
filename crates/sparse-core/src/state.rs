//! Saving and restoring a [`Sparsifier`]: masks, ITOP record, method state,
//! step counter and optimizer state, keyed by weight path so they survive a
//! rebuilt model. One safetensors file, written atomically (temporary file,
//! fsync, rename): a crash while saving never damages the previous file.
//!
//! Model weights are saved separately with Burn (`model.save_file(..)`).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;

use burn::module::Module;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};

use crate::error::{Result, SparseError};
use crate::mask::Mask;
use crate::method::MethodState;
use crate::optim::SavedParamState;
use crate::sparsifier::Sparsifier;

const FORMAT: &str = "sparseburn-state";
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    step: u64,
    method: String,
    method_values: BTreeMap<String, serde_json::Value>,
    method_arrays: Vec<String>,
    layers: Vec<(String, Vec<usize>)>,
    optimizer: Vec<(String, u64, usize)>,
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn bytes_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Writes `bytes` to `path` atomically.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| SparseError::io(dir, e))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(SparseError::io(path, e));
    }
    Ok(())
}

impl Sparsifier {
    /// Saves the sparse training state to `path` (atomically).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let bytes = self.to_bytes()?;
        write_atomic(path, &bytes)?;
        tracing::info!(path = %path.display(), step = self.step, "saved sparse state");
        Ok(())
    }

    /// The sparse training state as the bytes [`Sparsifier::save`] writes (a
    /// safetensors file), e.g. to embed it in a model checkpoint.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        self.state_bytes(self.optim.export()?)
    }

    /// The state file's bytes with `optim` as the optimizer state.
    pub(crate) fn state_bytes(&self, optim: Vec<SavedParamState>) -> Result<Vec<u8>> {
        let method = self.method.save_state();
        let header = Header {
            format: FORMAT.into(),
            version: VERSION,
            step: self.step,
            method: self.method.name().into(),
            method_values: method.values.clone(),
            method_arrays: method.arrays.keys().cloned().collect(),
            layers: self
                .plan
                .layers()
                .iter()
                .map(|l| (l.path.clone(), l.shape.clone()))
                .collect(),
            optimizer: optim.iter().map(|s| (s.path.clone(), s.time, s.slots.len())).collect(),
        };
        let mut blobs: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
        for (i, (m, e)) in self.masks.iter().zip(&self.explored).enumerate() {
            let b = m.to_bytes();
            blobs.push((format!("mask.{i}"), Dtype::U8, vec![b.len()], b));
            let b = e.to_bytes();
            blobs.push((format!("explored.{i}"), Dtype::U8, vec![b.len()], b));
        }
        for s in &optim {
            for (k, slot) in s.slots.iter().enumerate() {
                blobs.push((
                    format!("optim.{}.{k}", s.path),
                    Dtype::F32,
                    vec![slot.len()],
                    f32_bytes(slot),
                ));
            }
        }
        for (name, values) in &method.arrays {
            blobs.push((
                format!("method.{name}"),
                Dtype::F32,
                vec![values.len()],
                f32_bytes(values),
            ));
        }
        let views: Vec<(String, TensorView<'_>)> = blobs
            .iter()
            .map(|(n, d, s, b)| {
                TensorView::new(*d, s.clone(), b)
                    .map(|v| (n.clone(), v))
                    .map_err(|e| SparseError::TensorRead(format!("{e:?}")))
            })
            .collect::<Result<_>>()?;
        let meta = HashMap::from([(
            FORMAT.to_string(),
            serde_json::to_string(&header).map_err(|e| SparseError::InvalidConfig(e.to_string()))?,
        )]);
        safetensors::serialize(views, Some(meta)).map_err(|e| SparseError::TensorRead(format!("{e:?}")))
    }

    /// Restores state saved by [`Sparsifier::save`] for `model` (the model whose
    /// weights were saved at the same step). Fails with a clear error, changing
    /// nothing, if the file is not a state file or was saved from another model or
    /// method.
    pub fn load<M: Module>(&mut self, path: impl AsRef<Path>, model: &M) -> Result<()> {
        let path = path.as_ref();
        self.check_attached(model)?;
        let bytes = std::fs::read(path).map_err(|e| SparseError::io(path, e))?;
        self.load_bytes(&bytes, path, model)
    }

    /// Restores state from the bytes of [`Sparsifier::to_bytes`]; `source` names
    /// where they come from in errors. Changes nothing on error.
    pub fn load_bytes<M: Module>(&mut self, bytes: &[u8], source: impl AsRef<Path>, model: &M) -> Result<()> {
        self.load_parts(bytes, source.as_ref(), model, true).map(|_| ())
    }

    /// [`Sparsifier::load`] without the optimizer state: the saved state is
    /// returned for the caller to convert and import
    /// ([`MaskedOptimizer::import`](crate::optim::MaskedOptimizer::import));
    /// a checkpoint of a model in sparse execution keeps the moments of its
    /// active values, which the dense `model` has no parameter for. The
    /// optimizer keeps its state until then; the masks, the method's state
    /// and the step are installed, so a caller whose import then fails
    /// must not train with this `Sparsifier`.
    pub fn load_without_optimizer<M: Module>(
        &mut self,
        path: impl AsRef<Path>,
        model: &M,
    ) -> Result<Vec<SavedParamState>> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| SparseError::io(path, e))?;
        self.load_parts(&bytes, path, model, false)
    }

    /// Reads the state in `bytes` and installs it, importing the optimizer
    /// state when `import` (and returning none), else returning it.
    fn load_parts<M: Module>(
        &mut self,
        bytes: &[u8],
        path: &Path,
        model: &M,
        import: bool,
    ) -> Result<Vec<SavedParamState>> {
        self.check_attached(model)?;
        let corrupt = |detail: String| SparseError::CorruptState {
            file: path.to_path_buf(),
            detail,
        };
        let mismatch = |detail: String| SparseError::StateMismatch {
            file: path.to_path_buf(),
            detail,
        };
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| corrupt(format!("{e:?}")))?;
        let st = SafeTensors::deserialize(bytes).map_err(|e| corrupt(format!("{e:?}")))?;
        let header: Header = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get(FORMAT))
            .ok_or_else(|| corrupt("no sparseburn header".into()))
            .and_then(|s| serde_json::from_str(s).map_err(|e| corrupt(e.to_string())))?;
        if header.format != FORMAT || header.version != VERSION {
            return Err(corrupt(format!("format {} version {}", header.format, header.version)));
        }
        if header.method != self.method.name() {
            return Err(mismatch(format!(
                "saved by method `{}`, this run uses `{}`",
                header.method,
                self.method.name()
            )));
        }
        let ours: Vec<(String, Vec<usize>)> = self
            .plan
            .layers()
            .iter()
            .map(|l| (l.path.clone(), l.shape.clone()))
            .collect();
        if header.layers != ours {
            let detail = match header.layers.iter().zip(&ours).find(|(a, b)| a != b) {
                Some((a, b)) => format!("saved layer `{}` {:?}, model layer `{}` {:?}", a.0, a.1, b.0, b.1),
                None => format!("{} sparse layers saved, model has {}", header.layers.len(), ours.len()),
            };
            return Err(mismatch(detail));
        }
        let tensor = |name: &str, dtype: Dtype| -> Result<Vec<u8>> {
            let t = st.tensor(name).map_err(|e| corrupt(format!("{name}: {e:?}")))?;
            if t.dtype() != dtype {
                return Err(corrupt(format!("{name} has dtype {:?}", t.dtype())));
            }
            Ok(t.data().to_vec())
        };
        let mut masks = Vec::new();
        let mut explored = Vec::new();
        for (i, (p, shape)) in ours.iter().enumerate() {
            let n: usize = shape.iter().product();
            let m = Mask::from_bytes(n, &tensor(&format!("mask.{i}"), Dtype::U8)?)
                .ok_or_else(|| corrupt(format!("mask of `{p}` has the wrong size")))?;
            let e = Mask::from_bytes(n, &tensor(&format!("explored.{i}"), Dtype::U8)?)
                .ok_or_else(|| corrupt(format!("ITOP record of `{p}` has the wrong size")))?;
            masks.push(m);
            explored.push(e);
        }
        let mut saved = Vec::new();
        for (p, time, slots) in &header.optimizer {
            let slots = (0..*slots)
                .map(|k| tensor(&format!("optim.{p}.{k}"), Dtype::F32).map(|b| bytes_f32(&b)))
                .collect::<Result<_>>()?;
            saved.push(SavedParamState {
                path: p.clone(),
                time: *time,
                slots,
            });
        }
        let mut method = MethodState {
            values: header.method_values,
            arrays: BTreeMap::new(),
        };
        for name in &header.method_arrays {
            method
                .arrays
                .insert(name.clone(), bytes_f32(&tensor(&format!("method.{name}"), Dtype::F32)?));
        }
        let mut optim = self.optim.clone();
        let saved = match import {
            true => {
                optim
                    .import(saved, &Self::param_numels(model))
                    .map_err(|e| mismatch(e.to_string()))?;
                Vec::new()
            }
            false => saved,
        };
        self.check_masks(&masks)?;
        self.method.load_state(method)?;
        self.optim = optim;
        self.masks = masks;
        self.explored = explored;
        self.step = header.step;
        self.bind(model)?;
        self.method.before_step(self.step);
        tracing::info!(path = %path.display(), step = self.step, "loaded sparse state");
        Ok(saved)
    }
}

/// The masks saved by [`Sparsifier::save`] in `path`, with their weight paths
/// and shapes, read without building a [`Sparsifier`] (for exporting a
/// finished run: no method or optimizer is needed).
pub fn read_masks(path: impl AsRef<Path>) -> Result<Vec<(String, Vec<usize>, Mask)>> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| SparseError::io(path, e))?;
    let corrupt = |detail: String| SparseError::CorruptState {
        file: path.to_path_buf(),
        detail,
    };
    let (_, meta) = SafeTensors::read_metadata(&bytes).map_err(|e| corrupt(format!("{e:?}")))?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| corrupt(format!("{e:?}")))?;
    let header: Header = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(FORMAT))
        .ok_or_else(|| corrupt("no sparseburn header".into()))
        .and_then(|s| serde_json::from_str(s).map_err(|e| corrupt(e.to_string())))?;
    if header.format != FORMAT || header.version != VERSION {
        return Err(corrupt(format!("format {} version {}", header.format, header.version)));
    }
    header
        .layers
        .into_iter()
        .enumerate()
        .map(|(i, (p, shape))| {
            let name = format!("mask.{i}");
            let t = st.tensor(&name).map_err(|e| corrupt(format!("{name}: {e:?}")))?;
            let n: usize = shape.iter().product();
            let m =
                Mask::from_bytes(n, t.data()).ok_or_else(|| corrupt(format!("mask of `{p}` has the wrong size")))?;
            Ok((p, shape, m))
        })
        .collect()
}
