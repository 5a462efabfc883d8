//! What a run prints: a progress bar during an epoch and one line per epoch,
//! each at most 80 columns, with a one-line legend before the first epoch.
//! Percentages on the console; fractions in `metrics.csv`.

use indicatif::{ProgressBar, ProgressStyle};

use super::selection::Selection;
use crate::run::artifacts::EpochMetrics;

/// The progress bar's layout: message, bar, steps, time left (at most 80 columns
/// with the longest message [`progress_message`] writes).
const PROGRESS_TEMPLATE: &str = "{msg} {bar:12} {pos}/{len} {eta_precise}";

/// Columns of the template besides the message: spaces, bar, `9999/9999`, `00:00:00`.
#[cfg(test)]
const PROGRESS_FIXED: usize = 1 + 12 + 1 + 9 + 1 + 8;

/// The legend of the epoch lines of a classifier.
pub const LEGEND: &str = "ep = epoch, loss = training loss, val/test = accuracy, sp = sparsity, lr = rate";

/// The legend of the epoch lines of a language model, whose figures are losses.
pub const LEGEND_LM: &str = "ep = epoch, loss/val/test = bits per token, sp = sparsity, lr = rate";

/// The legend for a run whose best epoch is chosen by `selection`.
fn legend(selection: Selection) -> &'static str {
    match selection {
        Selection::Accuracy => LEGEND,
        Selection::Loss => LEGEND_LM,
    }
}

/// Prints the run's progress (or nothing when not verbose).
pub struct Console {
    verbose: bool,
    bar: Option<ProgressBar>,
    legend_shown: bool,
}

impl Console {
    /// A console that prints when `verbose`.
    pub fn new(verbose: bool) -> Self {
        Self {
            verbose,
            bar: None,
            legend_shown: false,
        }
    }

    /// Shows the progress of the epoch at step `pos` of `len` (a bar on a terminal).
    pub fn progress(&mut self, len: u64, pos: u64, message: Option<String>) {
        if !self.verbose {
            return;
        }
        let bar = self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::new(len).with_style(
                ProgressStyle::default_bar()
                    .template(PROGRESS_TEMPLATE)
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_position(pos);
            bar
        });
        if let Some(m) = message {
            bar.set_message(m);
        }
        bar.inc(1);
    }

    /// Removes the progress bar.
    pub fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    /// Prints the line of a finished epoch of a run whose best epoch is chosen
    /// by `selection` (its figures: accuracy, or bits per token).
    pub fn epoch(&mut self, row: &EpochMetrics, epochs: usize, rounds: bool, selection: Selection) {
        self.clear();
        if !self.verbose {
            return;
        }
        if !self.legend_shown {
            println!("{}", legend(selection));
            self.legend_shown = true;
        }
        println!("{}", epoch_line(row, epochs, rounds, selection));
    }
}

fn round_prefix(round: usize, rounds: bool) -> String {
    if rounds { format!("r{round} ") } else { String::new() }
}

/// The progress bar's message: epoch, running loss, accuracy and sparsity.
pub fn progress_message(round: Option<usize>, epoch: u64, epochs: usize, loss: f64, acc: f64, sparsity: f64) -> String {
    format!(
        "{}ep {epoch}/{epochs} loss {loss:.4} acc {:.2}% sp {:.1}%",
        round.map(|r| round_prefix(r, true)).unwrap_or_default(),
        100.0 * acc,
        100.0 * sparsity
    )
}

/// A duration for the epoch line: at most 4 characters up to 99 minutes.
fn short_time(seconds: f64) -> String {
    if seconds < 9.95 {
        format!("{seconds:.1}s")
    } else if seconds < 599.5 {
        format!("{seconds:.0}s")
    } else {
        format!("{:.0}m", seconds / 60.0)
    }
}

/// The line of a finished epoch: the figures `selection` chooses by (validation
/// and test accuracy; for a language model, validation and test bits per token),
/// the training figure when there is no validation split, then sparsity, the
/// last step's learning rate with three significant digits, and the time.
pub fn epoch_line(row: &EpochMetrics, epochs: usize, rounds: bool, selection: Selection) -> String {
    let figures = match selection {
        Selection::Accuracy => {
            let first = match row.val_acc {
                Some(v) => format!("val {:.2}%", 100.0 * v),
                None => format!("train {:.2}%", 100.0 * row.train_acc),
            };
            format!("{first} test {:.2}%", 100.0 * row.test_acc)
        }
        Selection::Loss => match row.val_loss {
            Some(v) => format!("val {v:.4} test {:.4}", row.test_loss),
            None => format!("test {:.4}", row.test_loss),
        },
    };
    format!(
        "{}ep {}/{epochs} loss {:.4} {figures} sp {:.1}% lr {:.2e} {}",
        round_prefix(row.round, rounds),
        row.epoch,
        row.train_loss,
        100.0 * row.sparsity,
        row.lr,
        short_time(row.train_seconds + row.eval_seconds)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(val: Option<f64>) -> EpochMetrics {
        EpochMetrics {
            round: 9,
            epoch: 999,
            step: 123_456,
            train_loss: 12.345_678,
            train_acc: 1.0,
            val_loss: val,
            val_acc: val,
            test_loss: 12.3,
            test_acc: 1.0,
            sparsity: 0.999,
            nonzeros: 1,
            lr: 1.234_5e-10,
            drop_fraction: None,
            itop: 1.0,
            stage: None,
            train_seconds: 599.9,
            eval_seconds: 0.0,
        }
    }

    #[test]
    fn lines_fit_80_columns_at_their_longest() {
        for selection in [Selection::Accuracy, Selection::Loss] {
            for val in [Some(1.0), None] {
                let line = epoch_line(&row(val), 999, true, selection);
                assert!(line.chars().count() <= 80, "{} columns: {line}", line.chars().count());
            }
            assert!(legend(selection).chars().count() <= 80);
        }
        let message = progress_message(Some(9), 999, 999, 12.345_678, 1.0, 1.0);
        let width = message.chars().count() + PROGRESS_FIXED;
        assert!(width <= 80, "{width} columns: {message}");
    }

    #[test]
    fn the_last_learning_rate_keeps_its_digits() {
        let mut r = row(Some(0.9));
        r.lr = 2.741e-6;
        let line = epoch_line(&r, 30, false, Selection::Accuracy);
        assert!(line.contains("lr 2.74e-6"), "{line}");
        assert!(line.starts_with("ep 999/30 "), "{line}");
    }

    #[test]
    fn a_language_model_line_shows_bits_per_token_not_accuracy() {
        let mut r = row(Some(0.25));
        (r.val_loss, r.test_loss, r.train_loss) = (Some(2.345_67), 2.5, 2.0);
        let line = epoch_line(&r, 30, false, Selection::Loss);
        assert!(
            line.starts_with("ep 999/30 loss 2.0000 val 2.3457 test 2.5000 sp 99.9% "),
            "{line}"
        );
        assert_eq!(
            line.matches('%').count(),
            1,
            "only the sparsity is a percentage: {line}"
        );
        r.val_loss = None;
        let line = epoch_line(&r, 30, false, Selection::Loss);
        assert!(line.starts_with("ep 999/30 loss 2.0000 test 2.5000 sp"), "{line}");
        assert!(legend(Selection::Loss).contains("bits per token"));
    }
}
