//! Which epoch is "best": the one with the highest validation accuracy for an
//! image classifier, the one with the lowest validation loss for a language
//! model (its loss is in bits per token, the documented metric; bits per token
//! and the cross-entropy in nats are proportional, so either picks the same
//! epoch). The test figures of that epoch are reported "at best" and never take
//! part in the choice; without a validation split the last epoch is the best.

use anyhow::bail;

use super::checkpoint::Best;
use crate::run::artifacts::EpochMetrics;

/// What the best epoch is chosen by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    /// The highest validation accuracy (image classification).
    Accuracy,
    /// The lowest validation loss: bits per token (language model).
    Loss,
}

impl Selection {
    /// Whether the epoch of `row` replaces `best` (none yet: it does). Ties keep
    /// the earlier epoch; a row without validation figures (no validation
    /// split) always replaces it, so the best is the last epoch.
    pub fn improves(self, best: Option<&Best>, row: &EpochMetrics) -> bool {
        let Some(best) = best else { return true };
        match self {
            Self::Accuracy => match (best.val_acc, row.val_acc) {
                (Some(b), Some(v)) => v > b,
                _ => true,
            },
            Self::Loss => match (best.val_loss, row.val_loss) {
                (Some(b), Some(v)) => v < b,
                _ => true,
            },
        }
    }

    /// The best-epoch record of `row` (an image run's as before: accuracies only).
    pub fn best_of(self, row: &EpochMetrics) -> Best {
        let by_loss = self == Self::Loss;
        Best {
            round: row.round,
            epoch: row.epoch,
            val_acc: row.val_acc,
            test_acc: row.test_acc,
            val_loss: row.val_loss.filter(|_| by_loss),
            test_loss: by_loss.then_some(row.test_loss),
        }
    }

    /// Refuses a restored best epoch that this selection cannot compare with: a
    /// language model's checkpoint written when its best epoch was chosen by
    /// accuracy (it has no validation loss).
    pub fn check_restored(self, best: Option<&Best>) -> anyhow::Result<()> {
        if let Some(b) = best
            && self == Self::Loss
            && b.val_acc.is_some()
            && b.val_loss.is_none()
        {
            bail!(
                "trainer.json: the best epoch ({}) was chosen by validation accuracy by an older sparseburn, while a language model's best epoch is now the one with the lowest validation bits per token; this checkpoint cannot be resumed: train again into a new folder",
                b.epoch
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(epoch: u64, val_acc: Option<f64>, val_loss: Option<f64>) -> EpochMetrics {
        EpochMetrics {
            round: 0,
            epoch,
            step: 10 * epoch,
            train_loss: 1.0,
            train_acc: 0.5,
            val_loss,
            val_acc,
            test_loss: 10.0 + epoch as f64,
            test_acc: epoch as f64 / 100.0,
            sparsity: 0.9,
            nonzeros: 10,
            lr: 0.1,
            drop_fraction: None,
            itop: 0.0,
            stage: None,
            train_seconds: 0.0,
            eval_seconds: 0.0,
        }
    }

    /// The epoch each selection keeps after the rows, in order.
    fn pick(selection: Selection, rows: &[EpochMetrics]) -> Option<Best> {
        let mut best = None;
        for r in rows {
            if selection.improves(best.as_ref(), r) {
                best = Some(selection.best_of(r));
            }
        }
        best
    }

    #[test]
    fn accuracy_and_bits_per_token_pick_different_epochs_from_the_same_rows() {
        // accuracy peaks at epoch 2, the loss bottoms out at epoch 3 (then ties at 4)
        let rows = [
            row(1, Some(0.40), Some(2.5)),
            row(2, Some(0.60), Some(2.2)),
            row(3, Some(0.55), Some(2.0)),
            row(4, Some(0.50), Some(2.0)),
        ];
        let by_acc = pick(Selection::Accuracy, &rows).unwrap();
        assert_eq!((by_acc.epoch, by_acc.val_acc, by_acc.test_acc), (2, Some(0.60), 0.02));
        assert_eq!((by_acc.val_loss, by_acc.test_loss), (None, None));
        let by_loss = pick(Selection::Loss, &rows).unwrap();
        assert_eq!(by_loss.epoch, 3);
        assert_eq!((by_loss.val_loss, by_loss.test_loss), (Some(2.0), Some(13.0)));
        assert_eq!((by_loss.val_acc, by_loss.test_acc), (Some(0.55), 0.03));
    }

    #[test]
    fn without_validation_the_last_epoch_is_the_best() {
        let rows = [row(1, None, None), row(2, None, None), row(3, None, None)];
        for s in [Selection::Accuracy, Selection::Loss] {
            assert_eq!(pick(s, &rows).unwrap().epoch, 3);
        }
    }

    #[test]
    fn an_lm_checkpoint_chosen_by_accuracy_is_refused_on_resume() {
        let old = Selection::Accuracy.best_of(&row(2, Some(0.6), Some(2.2)));
        let e = Selection::Loss.check_restored(Some(&old)).unwrap_err().to_string();
        assert!(e.contains("new folder") && e.contains("bits per token"), "{e}");
        Selection::Accuracy.check_restored(Some(&old)).unwrap();
        let new = Selection::Loss.best_of(&row(2, Some(0.6), Some(2.2)));
        Selection::Loss.check_restored(Some(&new)).unwrap();
        Selection::Loss.check_restored(None).unwrap();
    }
}
