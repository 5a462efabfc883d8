//! Uniform experience replay (Lin 1992; Mnih et al. 2015): a FIFO ring of
//! transitions `(s, a, r, s', terminal)`, sampled uniformly with replacement
//! by its own seeded generator, and saveable to a file for exact resume.
//!
//! Observations are stored as `f32` (`capacity · obs_len · 8` bytes for `s` and
//! `s'`: 3.2 MB for CartPole at 100k transitions, 320 MB for MinAtar).
//! `terminal` is the environment's termination flag, not truncation: a
//! transition cut by a time limit still bootstraps from `s'`.
//!
//! Files are safetensors (the format of sparseburn's other state files): the
//! arrays in insertion-ring order plus a JSON header with the ring position and
//! the generator state.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};

use crate::error::{Result, RlError};
use crate::rng::{EnvRng, RngState};

const FORMAT: &str = "sparse-rl.replay";
const VERSION: u32 = 1;

/// A sampled minibatch, flat and row-major, ready for tensors.
#[derive(Clone, Debug, PartialEq)]
pub struct Minibatch {
    /// `[batch, obs_len]` observations.
    pub obs: Vec<f32>,
    /// Actions taken.
    pub actions: Vec<i64>,
    /// Rewards.
    pub rewards: Vec<f32>,
    /// `[batch, obs_len]` next observations.
    pub next_obs: Vec<f32>,
    /// 1.0 where the transition terminated the episode, else 0.0.
    pub terminals: Vec<f32>,
}

/// One stored transition, borrowed from the buffer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Transition<'a> {
    /// Observation.
    pub obs: &'a [f32],
    /// Action.
    pub action: usize,
    /// Reward.
    pub reward: f32,
    /// Next observation.
    pub next_obs: &'a [f32],
    /// The episode terminated.
    pub terminal: bool,
}

/// A FIFO replay buffer with uniform sampling.
#[derive(Clone, Debug)]
pub struct ReplayBuffer {
    capacity: usize,
    obs_len: usize,
    obs: Vec<f32>,
    next_obs: Vec<f32>,
    actions: Vec<u32>,
    rewards: Vec<f32>,
    terminals: Vec<u8>,
    /// Ring position of the next write.
    next: usize,
    rng: EnvRng,
}

#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    capacity: usize,
    obs_len: usize,
    len: usize,
    next: usize,
    rng: RngState,
}

impl ReplayBuffer {
    /// An empty buffer of `capacity` transitions of observations of `obs_len` floats.
    pub fn new(capacity: usize, obs_len: usize, seed: u64) -> Result<Self> {
        if capacity == 0 || obs_len == 0 {
            return Err(RlError::InvalidConfig(format!(
                "replay buffer needs a capacity and an observation length above 0 (got {capacity} and {obs_len})"
            )));
        }
        Ok(Self {
            capacity,
            obs_len,
            obs: Vec::new(),
            next_obs: Vec::new(),
            actions: Vec::new(),
            rewards: Vec::new(),
            terminals: Vec::new(),
            next: 0,
            rng: EnvRng::new(seed),
        })
    }

    /// Transitions stored.
    pub fn len(&self) -> usize {
        self.actions.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// Maximum number of transitions.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Floats per observation.
    pub fn obs_len(&self) -> usize {
        self.obs_len
    }

    /// Adds a transition, overwriting the oldest one when full.
    pub fn push(&mut self, obs: &[f32], action: usize, reward: f32, next_obs: &[f32], terminal: bool) -> Result<()> {
        if obs.len() != self.obs_len || next_obs.len() != self.obs_len {
            return Err(RlError::InvalidConfig(format!(
                "replay buffer holds observations of {} floats, got {} and {}",
                self.obs_len,
                obs.len(),
                next_obs.len()
            )));
        }
        let action = u32::try_from(action)
            .map_err(|_| RlError::InvalidConfig(format!("action {action} does not fit the replay buffer")))?;
        if self.len() < self.capacity {
            self.obs.extend_from_slice(obs);
            self.next_obs.extend_from_slice(next_obs);
            self.actions.push(action);
            self.rewards.push(reward);
            self.terminals.push(u8::from(terminal));
        } else {
            let i = self.next;
            let row = i * self.obs_len..(i + 1) * self.obs_len;
            self.obs[row.clone()].copy_from_slice(obs);
            self.next_obs[row].copy_from_slice(next_obs);
            self.actions[i] = action;
            self.rewards[i] = reward;
            self.terminals[i] = u8::from(terminal);
        }
        self.next = (self.next + 1) % self.capacity;
        Ok(())
    }

    /// The transition at ring index `i` (`i < len`), for inspection.
    pub fn get(&self, i: usize) -> Option<Transition<'_>> {
        (i < self.len()).then(|| {
            let row = i * self.obs_len..(i + 1) * self.obs_len;
            Transition {
                obs: &self.obs[row.clone()],
                action: self.actions[i] as usize,
                reward: self.rewards[i],
                next_obs: &self.next_obs[row],
                terminal: self.terminals[i] != 0,
            }
        })
    }

    /// `batch` transitions drawn uniformly with replacement.
    pub fn sample(&mut self, batch: usize) -> Result<Minibatch> {
        if self.is_empty() {
            return Err(RlError::InvalidConfig(
                "cannot sample from an empty replay buffer; collect transitions first".into(),
            ));
        }
        let mut out = Minibatch {
            obs: Vec::with_capacity(batch * self.obs_len),
            actions: Vec::with_capacity(batch),
            rewards: Vec::with_capacity(batch),
            next_obs: Vec::with_capacity(batch * self.obs_len),
            terminals: Vec::with_capacity(batch),
        };
        for _ in 0..batch {
            let i = self.rng.below(self.len() as u64) as usize;
            let row = i * self.obs_len..(i + 1) * self.obs_len;
            out.obs.extend_from_slice(&self.obs[row.clone()]);
            out.next_obs.extend_from_slice(&self.next_obs[row]);
            out.actions.push(i64::from(self.actions[i]));
            out.rewards.push(self.rewards[i]);
            out.terminals.push(f32::from(self.terminals[i]));
        }
        Ok(out)
    }

    /// Saves the buffer (contents, ring position, generator) to `path` atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let header = Header {
            format: FORMAT.into(),
            version: VERSION,
            capacity: self.capacity,
            obs_len: self.obs_len,
            len: self.len(),
            next: self.next,
            rng: self.rng.state(),
        };
        let f32_bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let blobs = [
            ("obs", Dtype::F32, vec![self.len(), self.obs_len], f32_bytes(&self.obs)),
            (
                "next_obs",
                Dtype::F32,
                vec![self.len(), self.obs_len],
                f32_bytes(&self.next_obs),
            ),
            (
                "actions",
                Dtype::U32,
                vec![self.len()],
                self.actions.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            ("rewards", Dtype::F32, vec![self.len()], f32_bytes(&self.rewards)),
            ("terminals", Dtype::U8, vec![self.len()], self.terminals.clone()),
        ];
        let corrupt = |detail: String| RlError::CorruptState {
            path: path.to_path_buf(),
            detail,
        };
        let views = blobs
            .iter()
            .map(|(n, d, s, b)| {
                TensorView::new(*d, s.clone(), b)
                    .map(|v| (n.to_string(), v))
                    .map_err(|e| corrupt(format!("{e:?}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let meta = HashMap::from([(
            FORMAT.to_string(),
            serde_json::to_string(&header).map_err(|e| corrupt(e.to_string()))?,
        )]);
        let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| corrupt(format!("{e:?}")))?;
        write_atomic(path, &bytes)
    }

    /// Loads a buffer saved by [`ReplayBuffer::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| RlError::io(path, e))?;
        let corrupt = |detail: String| RlError::CorruptState {
            path: path.to_path_buf(),
            detail,
        };
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| corrupt(format!("{e:?}")))?;
        let header: Header = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get(FORMAT))
            .ok_or_else(|| corrupt("no replay-buffer header".into()))
            .and_then(|h| serde_json::from_str(h).map_err(|e| corrupt(e.to_string())))?;
        if header.format != FORMAT || header.version != VERSION {
            return Err(corrupt(format!("format {} v{}", header.format, header.version)));
        }
        let tensors = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| corrupt(format!("{e:?}")))?;
        let read = |name: &str, dtype: Dtype, n: usize| -> Result<Vec<u8>> {
            let t = tensors.tensor(name).map_err(|e| corrupt(format!("{name}: {e:?}")))?;
            let width = dtype.bitsize() / 8;
            if t.dtype() != dtype || t.data().len() != n * width {
                return Err(corrupt(format!("{name} has the wrong type or size")));
            }
            Ok(t.data().to_vec())
        };
        let to_f32 = |b: Vec<u8>| {
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect::<Vec<f32>>()
        };
        let (len, obs_len) = (header.len, header.obs_len);
        if len > header.capacity || header.next >= header.capacity.max(1) || obs_len == 0 {
            return Err(corrupt("inconsistent ring position".into()));
        }
        Ok(Self {
            capacity: header.capacity,
            obs_len,
            obs: to_f32(read("obs", Dtype::F32, len * obs_len)?),
            next_obs: to_f32(read("next_obs", Dtype::F32, len * obs_len)?),
            actions: read("actions", Dtype::U32, len)?
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            rewards: to_f32(read("rewards", Dtype::F32, len)?),
            terminals: read("terminals", Dtype::U8, len)?,
            next: header.next,
            rng: EnvRng::from_state(&header.rng),
        })
    }
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a
/// rename (`tempfile`'s persist), so a reader never sees a half-written file.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| RlError::io(dir, e))?;
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(|e| RlError::io(dir, e))?;
    file.write_all(bytes)
        .and_then(|()| file.as_file().sync_all())
        .map_err(|e| RlError::io(path, e))?;
    file.persist(path).map_err(|e| RlError::io(path, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(capacity: usize, n: usize) -> ReplayBuffer {
        let mut b = ReplayBuffer::new(capacity, 2, 1).expect("buffer");
        for i in 0..n {
            let v = i as f32;
            b.push(&[v, -v], i % 3, v * 0.5, &[v + 1.0, -v - 1.0], i.is_multiple_of(5))
                .expect("push");
        }
        b
    }

    #[test]
    fn fifo_overwrites_the_oldest_transition() {
        let b = filled(4, 6);
        assert_eq!(b.len(), 4);
        // transitions 4 and 5 replaced 0 and 1 in ring slots 0 and 1
        let firsts: Vec<f32> = (0..4).map(|i| b.get(i).expect("slot").obs[0]).collect();
        assert_eq!(firsts, vec![4.0, 5.0, 2.0, 3.0]);
        let t = b.get(1).expect("slot");
        assert_eq!(
            (t.obs, t.action, t.reward, t.next_obs, t.terminal),
            (&[5.0, -5.0][..], 2, 2.5, &[6.0, -6.0][..], true)
        );
    }

    #[test]
    fn sampling_is_uniform_and_keeps_fields_together() {
        let mut b = filled(10, 10);
        let batch = b.sample(20_000).expect("sample");
        let mut counts = [0usize; 10];
        for k in 0..20_000 {
            let v = batch.obs[2 * k];
            counts[v as usize] += 1;
            assert_eq!(batch.next_obs[2 * k], v + 1.0);
            assert_eq!(batch.rewards[k], v * 0.5);
            assert_eq!(batch.actions[k], (v as i64) % 3);
            assert_eq!(batch.terminals[k], f32::from(u8::from((v as usize).is_multiple_of(5))));
        }
        for c in counts {
            assert!((1_800..2_200).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn a_saved_buffer_samples_the_same_batches() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("replay.safetensors");
        let mut a = filled(8, 13);
        a.sample(5).expect("advance the generator");
        a.save(&path).expect("save");
        let mut b = ReplayBuffer::load(&path).expect("load");
        assert_eq!(b.len(), 8);
        assert_eq!(a.sample(64).expect("a"), b.sample(64).expect("b"));
        a.push(&[9.0, 9.0], 1, 1.0, &[9.0, 9.0], false).expect("push");
        b.push(&[9.0, 9.0], 1, 1.0, &[9.0, 9.0], false).expect("push");
        assert_eq!(a.get(5), b.get(5), "the ring position survives");
    }

    #[test]
    fn bad_input_is_refused_clearly() {
        assert!(ReplayBuffer::new(0, 4, 0).is_err());
        let mut b = ReplayBuffer::new(4, 2, 0).expect("buffer");
        assert!(b.sample(1).is_err(), "empty");
        let msg = b.push(&[1.0], 0, 0.0, &[1.0, 2.0], false).err().map(|e| e.to_string());
        assert!(msg.unwrap_or_default().contains("observations of 2 floats"));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("junk");
        std::fs::write(&path, b"not a buffer").expect("write");
        let msg = ReplayBuffer::load(&path)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("not a valid sparse-rl state file"), "{msg}");
        let missing = ReplayBuffer::load(dir.path().join("missing"))
            .err()
            .map(|e| e.to_string());
        assert!(missing.unwrap_or_default().contains("missing"));
    }
}
