//! A deterministic batch order: epoch `e` of a run with seed `s` always visits
//! the same images in the same order, so an interrupted run resumes exactly.

use sparse_core::Rng;

/// Shuffled epochs of a dataset.
#[derive(Clone, Copy, Debug)]
pub struct BatchOrder {
    /// Images in the dataset.
    pub len: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// Seed of the shuffles.
    pub seed: u64,
}

impl BatchOrder {
    /// Batches per epoch (the last, partial batch is dropped, as is common for training).
    pub fn batches_per_epoch(&self) -> usize {
        self.len / self.batch_size.max(1)
    }

    /// The image order of `epoch` (a Fisher–Yates shuffle).
    pub fn epoch(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len).collect();
        let mut rng = Rng::for_stream(self.seed, "data", epoch, "shuffle");
        for i in (1..order.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            order.swap(i, j);
        }
        order
    }

    /// The batches of `epoch`, in order.
    pub fn batches(&self, epoch: u64) -> Vec<Vec<usize>> {
        let order = self.epoch(epoch);
        order
            .chunks_exact(self.batch_size.max(1))
            .map(<[usize]>::to_vec)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_are_permutations_and_reproducible() {
        let o = BatchOrder {
            len: 103,
            batch_size: 10,
            seed: 5,
        };
        let mut e = o.epoch(2);
        assert_eq!(e, o.epoch(2));
        assert_ne!(e, o.epoch(3));
        e.sort_unstable();
        assert_eq!(e, (0..103).collect::<Vec<_>>());
        assert_eq!(o.batches(0).len(), 10);
    }
}
