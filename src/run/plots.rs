//! PNG plots of a run and of a sweep (plotters, bitmap backend, DejaVu Sans).
//! Accuracies, sparsities and densities are drawn in percent; non-finite values
//! (a diverged run) are left out rather than drawn. What a panel draws (titles,
//! axis labels, curves) is computed first ([`PanelSpec`]): a language model's
//! loss panel is in bits per token, a DQN run's returns are drawn against
//! environment steps.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::anyhow;
use plotters::prelude::*;
use plotters::style::FontStyle;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use sparse_core::{Mask, SparseLayer};

use super::artifacts::EpochMetrics;

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

fn font() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotting: {e:?}")
}

/// Ten distinguishable colours (Tableau 10).
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// `(lo, hi)` of the finite values, padded; `(0, 1)` when there are none.
fn finite_range(values: impl Iterator<Item = f64>, min_pad: f64) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.08).max(min_pad);
    let (lo, hi) = (lo - pad, hi + pad);
    if lo.is_finite() && hi.is_finite() && hi - lo < f64::MAX / 4.0 {
        (lo, hi)
    } else {
        // values near f64::MAX (a run about to diverge): a range that overflows
        // cannot be drawn; clamp it to where the axis arithmetic stays finite
        (lo.max(-f64::MAX / 16.0), hi.min(f64::MAX / 16.0))
    }
}

/// One curve of a panel: name, colour, points.
pub type Curve = (&'static str, RGBColor, Vec<(f64, f64)>);

/// How a panel's y axis is drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Axis {
    /// Linear, with at least this much padding, labels with these decimals.
    Linear { min_pad: f64, decimals: usize },
    /// Logarithmic (base 10), labels like `1e-3`.
    Log,
}

/// The x axis of a panel.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum XAxis {
    /// Epochs 1 to this.
    Epochs(usize),
    /// Environment steps of a DQN run, 0 to this.
    EnvSteps(f64),
}

/// What one panel draws (computed before drawing, so it can be checked).
#[derive(Clone, Debug)]
pub struct PanelSpec {
    /// The title.
    pub title: &'static str,
    /// The y axis' label.
    pub y_desc: &'static str,
    /// The x axis.
    pub x: XAxis,
    /// The curves.
    pub curves: Vec<Curve>,
    /// How the y axis is drawn.
    pub axis: Axis,
}

/// What a run's metrics are: image classification (loss in nats, accuracy)
/// or a language model (loss in bits per token, next-token accuracy).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CurveKind {
    /// Cross-entropy in nats and accuracy.
    Classification,
    /// Bits per token (lower is better) and next-token accuracy.
    LanguageModel,
}

/// Draws one panel of lines with a circle at every point (so a one-epoch run shows its point).
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    spec: &PanelSpec,
    marks: &[StageMark],
) -> anyhow::Result<()> {
    let PanelSpec {
        title,
        y_desc,
        x,
        ref curves,
        axis,
    } = *spec;
    let log = matches!(axis, Axis::Log);
    let transform = |v: f64| if log { v.log10() } else { v };
    let min_pad = match axis {
        Axis::Linear { min_pad, .. } => min_pad,
        Axis::Log => 0.1,
    };
    let (lo, hi) = finite_range(
        curves.iter().flat_map(|(_, _, p)| p.iter().map(|(_, y)| transform(*y))),
        min_pad,
    );
    let (x_range, x_desc, x_labels) = match x {
        XAxis::Epochs(epochs) => (0.5f64..epochs.max(1) as f64 + 0.5, "epoch", epochs.clamp(1, 10) + 1),
        XAxis::EnvSteps(steps) => (0.0f64..steps.max(1.0) * 1.02, "environment steps", 6),
    };
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(60)
        .build_cartesian_2d(x_range, lo..hi)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .x_labels(x_labels)
        .x_label_formatter(&|v| match x {
            XAxis::Epochs(_) if (v - v.round()).abs() < 1e-6 && *v >= 1.0 => format!("{v:.0}"),
            XAxis::Epochs(_) => String::new(),
            XAxis::EnvSteps(_) => format!("{v:.0}"),
        })
        .y_desc(y_desc)
        .y_label_formatter(&|v| match axis {
            Axis::Log => format!("{:.0e}", 10f64.powf(*v)),
            Axis::Linear { decimals, .. } => format!("{v:.decimals$}"),
        })
        .draw()
        .map_err(err)?;
    let grey = RGBColor(110, 110, 110);
    for (x, name) in marks {
        chart
            .draw_series(LineSeries::new([(*x, lo), (*x, hi)], grey.stroke_width(1)))
            .map_err(err)?;
        let style = ("sans-serif", 13)
            .into_font()
            .color(&grey)
            .pos(Pos::new(HPos::Left, VPos::Top));
        chart
            .draw_series(std::iter::once(Text::new(name.clone(), (*x + 0.05, hi), style)))
            .map_err(err)?;
    }
    for (name, color, points) in curves {
        let points: Vec<(f64, f64)> = points
            .iter()
            .map(|(x, y)| (*x, transform(*y)))
            .filter(|(_, y)| y.is_finite())
            .collect();
        if points.is_empty() {
            continue;
        }
        let color = *color;
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
            .map_err(err)?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color.stroke_width(2)));
        chart
            .draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))
            .map_err(err)?;
    }
    if curves.len() > 1 {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
    }
    Ok(())
}

/// Where a stage of a recipe starts on the epoch axis, and its name.
type StageMark = (f64, String);

/// A vertical line where each stage of a recipe starts (between the last epoch
/// of the stage before and its first), labelled with the stage's name.
pub fn stage_marks(rows: &[EpochMetrics]) -> Vec<StageMark> {
    let mut marks = Vec::new();
    let mut before: Option<&str> = None;
    for (i, r) in rows.iter().enumerate() {
        if let Some(stage) = r.stage.as_deref()
            && before != Some(stage)
        {
            marks.push((i as f64 + 0.5, stage.to_string()));
        }
        before = r.stage.as_deref();
    }
    marks
}

/// Loss, accuracy (%), learning rate and sparsity (%) per epoch, in four panels
/// (see [`curve_panels`]). Epochs count on across rounds of iterative pruning; a
/// recipe's stages are marked by vertical lines with their names.
pub fn learning_curves(path: &Path, rows: &[EpochMetrics], kind: CurveKind) -> anyhow::Result<()> {
    font();
    let root = BitMapBackend::new(path, (1000, 720)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let panels = root.split_evenly((2, 2));
    let marks = stage_marks(rows);
    for (area, spec) in panels.iter().zip(curve_panels(rows, kind)) {
        panel(area, &spec, &marks)?;
    }
    root.present().map_err(err)
}

/// The four panels of [`learning_curves`]: the loss (cross-entropy in nats, or
/// bits per token for a language model, lower is better), the accuracy (%, the
/// next-token accuracy of a language model), the learning rate and the sparsity (%).
pub fn curve_panels(rows: &[EpochMetrics], kind: CurveKind) -> Vec<PanelSpec> {
    let x: Vec<f64> = (1..=rows.len()).map(|i| i as f64).collect();
    let epochs = XAxis::Epochs(rows.len());
    let percent = Axis::Linear {
        min_pad: 0.5,
        decimals: 1,
    };
    let series = |f: &dyn Fn(&EpochMetrics) -> Option<f64>| -> Vec<(f64, f64)> {
        x.iter().zip(rows).filter_map(|(x, r)| f(r).map(|y| (*x, y))).collect()
    };
    let (blue, orange, red) = (COLORS[0], COLORS[1], COLORS[3]);
    let (loss_title, loss_desc, acc_title) = match kind {
        CurveKind::Classification => ("loss", "cross-entropy", "accuracy"),
        CurveKind::LanguageModel => (
            "bits per token (lower is better)",
            "bits per token",
            "next-token accuracy",
        ),
    };
    vec![
        PanelSpec {
            title: loss_title,
            y_desc: loss_desc,
            x: epochs,
            curves: vec![
                ("train", blue, series(&|r| Some(r.train_loss))),
                ("validation", orange, series(&|r| r.val_loss)),
                ("test", red, series(&|r| Some(r.test_loss))),
            ],
            axis: Axis::Linear {
                min_pad: 1e-3,
                decimals: 3,
            },
        },
        PanelSpec {
            title: acc_title,
            y_desc: "%",
            x: epochs,
            curves: vec![
                ("train", blue, series(&|r| Some(100.0 * r.train_acc))),
                ("validation", orange, series(&|r| r.val_acc.map(|v| 100.0 * v))),
                ("test", red, series(&|r| Some(100.0 * r.test_acc))),
            ],
            axis: percent,
        },
        PanelSpec {
            title: "learning rate (last step of the epoch)",
            y_desc: "lr",
            x: epochs,
            curves: vec![("lr", blue, series(&|r| (r.lr > 0.0).then_some(r.lr)))],
            axis: Axis::Log,
        },
        PanelSpec {
            title: "sparsity of the sparse layers",
            y_desc: "%",
            x: epochs,
            curves: vec![("sparsity", blue, series(&|r| Some(100.0 * r.sparsity)))],
            axis: percent,
        },
    ]
}

/// Density (%) of every sparse layer, one bar per layer, top to bottom in model order.
pub fn layer_density(path: &Path, layers: &[SparseLayer], masks: &[Mask]) -> anyhow::Result<()> {
    font();
    let n = layers.len().max(1);
    let h = (90 + 26 * n) as u32;
    let root = BitMapBackend::new(path, (900, h.max(200))).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    // layer i (from the top) is the row [n − 1 − i, n − i]
    let mut chart = ChartBuilder::on(&root)
        .caption("density per sparse layer", ("sans-serif", 20))
        .margin(10)
        .margin_right(30)
        .x_label_area_size(35)
        .y_label_area_size(260)
        .build_cartesian_2d(0f64..100f64, 0f64..n as f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_desc("density (kept weights, %)")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(masks.iter().enumerate().map(|(i, m)| {
            let top = (n - i) as f64;
            Rectangle::new(
                [(0.0, top - 0.15), (100.0 * m.density(), top - 0.85)],
                COLORS[0].mix(0.8).filled(),
            )
        }))
        .map_err(err)?;
    let style = TextStyle::from(("sans-serif", 13).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
    for (i, layer) in layers.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(0.0, (n - i) as f64 - 0.5));
        root.draw(&Text::new(layer.path.clone(), (x - 8, y), style.clone()))
            .map_err(err)?;
    }
    root.present().map_err(err)
}

/// Cells of the mask picture per side at most (larger layers are downsampled).
pub const MAX_CELLS: usize = 150;

/// How a cell of the mask picture is coloured. Among its weights that are
/// active now or were before: kept (black), grown since the panel before
/// (green) and dropped since it (red) mix by their shares; the colour is as
/// strong as the cell's share of such weights relative to `densest` (the
/// largest share of any cell), so a sparse layer stays legible.
fn cell_color(kept: usize, grown: usize, dropped: usize, total: usize, densest: f64) -> RGBColor {
    let touched = kept + grown + dropped;
    if touched == 0 {
        return RGBColor(255, 255, 255);
    }
    let t = touched as f64;
    let (g, d) = (grown as f64 / t, dropped as f64 / t);
    let strength = (t / total.max(1) as f64 / densest.max(1e-12)).min(1.0);
    // black (0,0,0), green (44,160,44), red (214,39,40), blended with white by strength
    let channel = |green: f64, red: f64| -> u8 {
        let colour = g * green + d * red; // black contributes 0
        (255.0 * (1.0 - strength) + colour * strength).round() as u8
    };
    RGBColor(channel(44.0, 214.0), channel(160.0, 39.0), channel(44.0, 40.0))
}

/// `(kept, grown, dropped, total)` of every cell of a `grid_r × grid_c` picture
/// of blocks `br × bc` over a layer, comparing `mask` with `before`.
#[allow(clippy::too_many_arguments)]
fn cell_counts(
    layer: &SparseLayer,
    before: &Mask,
    mask: &Mask,
    (grid_r, grid_c): (usize, usize),
    (br, bc): (usize, usize),
) -> Vec<[usize; 4]> {
    let (rows, cols) = (layer.neurons(), layer.fan_in());
    let mut cells = Vec::with_capacity(grid_r * grid_c);
    for gi in 0..grid_r {
        for gj in 0..grid_c {
            let mut c = [0usize; 4];
            for r in gi * br..((gi + 1) * br).min(rows) {
                for col in gj * bc..((gj + 1) * bc).min(cols) {
                    let f = layer.flat(r, col);
                    match (before.get(f), mask.get(f)) {
                        (true, true) => c[0] += 1,
                        (false, true) => c[1] += 1,
                        (true, false) => c[2] += 1,
                        (false, false) => {}
                    }
                    c[3] += 1;
                }
            }
            cells.push(c);
        }
    }
    cells
}

/// Snapshots of one layer's mask (rows: output neurons, columns: fan-in) over
/// time, side by side (at most six, evenly spread). Each panel colours what
/// changed since the panel before it; a layer larger than 150 cells a side is
/// shown in blocks, each cell mixing the colours of its weights.
pub fn mask_history(path: &Path, layer: &SparseLayer, snapshots: &[(String, Mask)]) -> anyhow::Result<()> {
    font();
    let (rows, cols) = (layer.neurons(), layer.fan_in());
    let (br, bc) = (rows.div_ceil(MAX_CELLS).max(1), cols.div_ceil(MAX_CELLS).max(1));
    let (grid_r, grid_c) = (rows.div_ceil(br), cols.div_ceil(bc));
    let cell = (300 / grid_r.max(grid_c).max(1)).clamp(1, 8);
    let (w, h) = (grid_c * cell, grid_r * cell);
    let shown: Vec<&(String, Mask)> = if snapshots.len() <= 6 {
        snapshots.iter().collect()
    } else {
        (0..6).map(|i| &snapshots[i * (snapshots.len() - 1) / 5]).collect()
    };
    let panel_w = w.max(150) + 20;
    let width = (shown.len().max(1) * panel_w).max(560) as u32;
    let root = BitMapBackend::new(path, (width, (h + 90) as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let block = if br * bc > 1 {
        format!("; a cell is {br}×{bc} weights")
    } else {
        String::new()
    };
    root.draw(&Text::new(
        format!("black: active, green: grown, red: dropped since the panel before{block}"),
        (5, (h + 65) as i32),
        ("sans-serif", 13),
    ))
    .map_err(err)?;
    let mut previous: Option<&Mask> = None;
    for (k, (label, mask)) in shown.iter().enumerate() {
        let x0 = (k * panel_w) as i32;
        root.draw(&Text::new(label.clone(), (x0, 5), ("sans-serif", 14)))
            .map_err(err)?;
        let cells = cell_counts(layer, previous.unwrap_or(mask), mask, (grid_r, grid_c), (br, bc));
        let densest = cells
            .iter()
            .map(|c| (c[0] + c[1] + c[2]) as f64 / c[3].max(1) as f64)
            .fold(0.0, f64::max);
        for (i, c) in cells.iter().enumerate() {
            if c[0] + c[1] + c[2] == 0 {
                continue;
            }
            let (gi, gj) = (i / grid_c, i % grid_c);
            let (x, y) = (x0 + (gj * cell) as i32, 30 + (gi * cell) as i32);
            root.draw(&Rectangle::new(
                [(x, y), (x + cell as i32, y + cell as i32)],
                cell_color(c[0], c[1], c[2], c[3], densest).filled(),
            ))
            .map_err(err)?;
        }
        previous = Some(mask);
    }
    root.present().map_err(err)
}

/// One method's `(sparsity, mean accuracy, std)` points (no std for one seed).
pub type Series = (String, Vec<(f64, f64, Option<f64>)>);

/// Mean test accuracy (%, ± std as error bars with caps) against sparsity (%),
/// one line per method; a method with a single point at sparsity 0 (dense) is
/// drawn as a dashed reference line.
pub fn accuracy_vs_sparsity(path: &Path, series: &[Series]) -> anyhow::Result<()> {
    metric_vs_sparsity(path, series, &SweepAxis::ACCURACY)
}

/// The metric of a sweep's plot: its caption, axis label and scale (100 for a
/// fraction shown in %).
pub struct SweepAxis<'a> {
    /// The caption.
    pub caption: &'a str,
    /// The y-axis label.
    pub y_desc: &'a str,
    /// Values are multiplied by this.
    pub scale: f64,
}

impl SweepAxis<'static> {
    /// Final test accuracy in %.
    pub const ACCURACY: Self = Self {
        caption: "final test accuracy vs sparsity (mean ± std over seeds)",
        y_desc: "test accuracy, %",
        scale: 100.0,
    };
}

/// A sweep plot's chart: f64 axes on a bitmap.
type SweepChart<'a, 'b> = ChartContext<
    'a,
    BitMapBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// The chart of a sweep plot on `root`, with its caption and ranges.
fn sweep_chart<'a, 'b>(
    root: &'a DrawingArea<BitMapBackend<'b>, plotters::coord::Shift>,
    caption: &str,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
) -> anyhow::Result<SweepChart<'a, 'b>> {
    ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(x, y)
        .map_err(err)
}

/// The legend of a sweep plot, boxed, at `position`.
fn sweep_legend<'a, 'b: 'a>(chart: &mut SweepChart<'a, 'b>, position: SeriesLabelPosition) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)
}

/// A sweep's metric (mean ± std over seeds) against the sparsity, one line per method;
/// the dense baseline (sparsity 0) is a dashed horizontal line.
pub fn metric_vs_sparsity(path: &Path, series: &[Series], axis: &SweepAxis<'_>) -> anyhow::Result<()> {
    font();
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let pct = |v: f64| 100.0 * v;
    let y = |v: f64| axis.scale * v;
    let sparse_x: Vec<f64> = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(s, _, _)| pct(*s)))
        .filter(|s| *s > 0.0)
        .collect();
    let (x_lo, x_hi) = if sparse_x.is_empty() {
        (0.0, 100.0)
    } else {
        let lo = sparse_x.iter().cloned().fold(100.0, f64::min);
        let hi = sparse_x.iter().cloned().fold(0.0, f64::max);
        let pad = ((hi - lo) * 0.15).max(2.0);
        ((lo - pad).max(0.0), (hi + pad).min(100.0))
    };
    let (lo, hi) = finite_range(
        series.iter().flat_map(|(_, p)| {
            p.iter()
                .flat_map(|(_, m, s)| [y(m - s.unwrap_or(0.0)), y(m + s.unwrap_or(0.0))])
        }),
        0.2,
    );
    let mut chart = sweep_chart(&root, axis.caption, x_lo..x_hi, lo..hi)?;
    chart
        .configure_mesh()
        .x_desc("sparsity of the sparse layers, %")
        .y_desc(axis.y_desc)
        .draw()
        .map_err(err)?;
    let cap = (x_hi - x_lo) / 120.0;
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<(f64, f64, Option<f64>)> = pts
            .iter()
            .filter(|(_, m, _)| m.is_finite())
            .map(|(s, m, sd)| (pct(*s), y(*m), sd.filter(|v| v.is_finite()).map(y)))
            .collect();
        if let [(s, mean, _)] = pts.as_slice()
            && *s == 0.0
        {
            let dashes = (0..40).map(|k| x_lo + (x_hi - x_lo) * k as f64 / 40.0);
            chart
                .draw_series(dashes.step_by(2).map(|x| {
                    PathElement::new(
                        vec![(x, *mean), (x + (x_hi - x_lo) / 40.0, *mean)],
                        color.stroke_width(2),
                    )
                }))
                .map_err(err)?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color.stroke_width(2)));
            continue;
        }
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|(s, m, _)| (*s, *m)),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color.stroke_width(2)));
        for (s, m, sd) in &pts {
            let Some(sd) = sd else { continue };
            let (top, bottom) = (m + sd, m - sd);
            chart
                .draw_series([
                    PathElement::new(vec![(*s, bottom), (*s, top)], color.stroke_width(2)),
                    PathElement::new(vec![(s - cap, top), (s + cap, top)], color.stroke_width(2)),
                    PathElement::new(vec![(s - cap, bottom), (s + cap, bottom)], color.stroke_width(2)),
                ])
                .map_err(err)?;
        }
        chart
            .draw_series(pts.iter().map(|(s, m, _)| Circle::new((*s, *m), 5, color.filled())))
            .map_err(err)?;
    }
    sweep_legend(&mut chart, SeriesLabelPosition::LowerLeft)?;
    root.present().map_err(err)
}

/// A sweep's curves against environment steps: for each series (a method at a
/// sparsity) the mean over seeds, a line with a point per evaluation, inside a
/// band of ± one standard deviation over seeds.
pub fn curves_over_seeds(path: &Path, series: &[Series], axis: &SweepAxis<'_>) -> anyhow::Result<()> {
    font();
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let scaled: Vec<Series> = series
        .iter()
        .map(|(name, p)| {
            let p = p
                .iter()
                .map(|(x, m, s)| (*x, axis.scale * m, s.map(|s| axis.scale * s)));
            (name.clone(), p.collect())
        })
        .collect();
    let series = &scaled;
    let points = || series.iter().flat_map(|(_, p)| p.iter());
    let x_hi = points().map(|(x, _, _)| *x).fold(1.0, f64::max);
    let (lo, hi) = finite_range(
        points().flat_map(|(_, m, s)| [m - s.unwrap_or(0.0), m + s.unwrap_or(0.0)]),
        1.0,
    );
    let mut chart = sweep_chart(&root, axis.caption, 0.0..x_hi * 1.02, lo..hi)?;
    chart
        .configure_mesh()
        .x_desc("environment steps")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_desc(axis.y_desc)
        .draw()
        .map_err(err)?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let pts: Vec<&(f64, f64, Option<f64>)> = pts.iter().filter(|(_, m, _)| m.is_finite()).collect();
        let band: Vec<(f64, f64)> = pts
            .iter()
            .filter_map(|(x, m, s)| s.map(|s| (*x, m + s)))
            .chain(pts.iter().rev().filter_map(|(x, m, s)| s.map(|s| (*x, m - s))))
            .collect();
        if band.len() > 2 {
            chart
                .draw_series(std::iter::once(Polygon::new(band, color.mix(0.15).filled())))
                .map_err(err)?;
        }
        chart
            .draw_series(LineSeries::new(
                pts.iter().map(|(x, m, _)| (*x, *m)),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color.stroke_width(2)));
        chart
            .draw_series(pts.iter().map(|(x, m, _)| Circle::new((*x, *m), 3, color.filled())))
            .map_err(err)?;
    }
    sweep_legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    root.present().map_err(err)
}

/// One point of a DQN run's curves: after `env_steps` environment steps, the
/// mean and standard deviation of the evaluation returns and the mean return of
/// the training episodes that ended since the point before (if any did).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReturnPoint {
    /// Environment steps trained.
    pub env_steps: f64,
    /// Mean evaluation return.
    pub eval_mean: f64,
    /// Its standard deviation over the evaluation episodes.
    pub eval_std: f64,
    /// Mean return of the training episodes.
    pub train: Option<f64>,
}

/// A DQN run's learning curves (see [`return_panel`]).
pub fn return_curves(path: &Path, points: &[ReturnPoint]) -> anyhow::Result<()> {
    font();
    let root = BitMapBackend::new(path, (1000, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    panel(&root, &return_panel(points), &[])?;
    root.present().map_err(err)
}

/// The panel of a DQN run: episode return vs environment steps, the mean
/// evaluation return with lines at ± one standard deviation over the evaluation
/// episodes, and the mean return of the training episodes.
pub fn return_panel(points: &[ReturnPoint]) -> PanelSpec {
    let (blue, orange, grey) = (COLORS[0], COLORS[1], COLORS[7]);
    let curve = |f: &dyn Fn(&ReturnPoint) -> Option<f64>| -> Vec<(f64, f64)> {
        points.iter().filter_map(|p| f(p).map(|y| (p.env_steps, y))).collect()
    };
    PanelSpec {
        title: "return per episode",
        y_desc: "episode return",
        x: XAxis::EnvSteps(points.iter().map(|p| p.env_steps).fold(0.0, f64::max)),
        curves: vec![
            ("evaluation (mean)", blue, curve(&|p| Some(p.eval_mean))),
            ("evaluation − std", grey, curve(&|p| Some(p.eval_mean - p.eval_std))),
            ("evaluation + std", grey, curve(&|p| Some(p.eval_mean + p.eval_std))),
            ("training episodes (mean)", orange, curve(&|p| p.train)),
        ],
        axis: Axis::Linear {
            min_pad: 1.0,
            decimals: 1,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_colours_mix_by_share_and_stretch_to_the_densest_cell() {
        assert_eq!(cell_color(0, 0, 0, 4, 0.5), RGBColor(255, 255, 255));
        assert_eq!(cell_color(4, 0, 0, 4, 1.0), RGBColor(0, 0, 0));
        // all grown: the green; all dropped: the red
        assert_eq!(cell_color(0, 2, 0, 2, 1.0), RGBColor(44, 160, 44));
        assert_eq!(cell_color(0, 0, 1, 1, 1.0), RGBColor(214, 39, 40));
        // a cell 10% active in a layer whose densest cell is 10% active: full strength
        assert_eq!(cell_color(1, 0, 0, 10, 0.1), RGBColor(0, 0, 0));
        // half as dense as the densest: mid grey
        assert_eq!(cell_color(1, 0, 0, 20, 0.1), RGBColor(128, 128, 128));
        // half kept, half grown: half the green
        assert_eq!(cell_color(1, 1, 0, 2, 1.0), RGBColor(22, 80, 22));
    }

    #[test]
    fn the_mask_history_shows_grown_and_dropped_weights_in_colour() {
        // a layer larger than the picture: 400 neurons × 300 fan-in, drawn in blocks
        let layer = SparseLayer::linear("fc.weight", 300, 400);
        let n = layer.numel();
        let rows = |r: std::ops::Range<usize>| r.flat_map(|o| (0..300).map(move |j| (o, j)));
        let at = |cells: Vec<(usize, usize)>| Mask::from_indices(n, cells.into_iter().map(|(o, j)| layer.flat(o, j)));
        // neurons 0..100 stay, 100..200 are dropped, 200..300 are grown
        let before = at(rows(0..200).collect());
        let after = at(rows(0..100).chain(rows(200..300)).collect());
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("mask.png");
        let snapshots = vec![("epoch 1".to_string(), before), ("epoch 2".to_string(), after)];
        mask_history(&path, &layer, &snapshots).unwrap();
        let img = image::open(&path).unwrap().to_rgb8();
        let count = |rgb: [u8; 3]| img.pixels().filter(|p| p.0 == rgb).count();
        assert!(count([44, 160, 44]) > 0, "no grown (green) cell");
        assert!(count([214, 39, 40]) > 0, "no dropped (red) cell");
        assert!(count([0, 0, 0]) > 0, "no kept (black) cell");
        // downsampled: the picture is at most 150 cells a side, not 400
        assert!(img.height() < 400, "{}", img.height());
    }

    fn epoch_row(epoch: u64, val_loss: f64, test_loss: f64) -> EpochMetrics {
        EpochMetrics {
            round: 0,
            epoch,
            step: 5 * epoch,
            train_loss: 3.0,
            train_acc: 0.25,
            val_loss: Some(val_loss),
            val_acc: Some(0.5),
            test_loss,
            test_acc: 0.4,
            sparsity: 0.8,
            nonzeros: 10,
            lr: 0.003,
            drop_fraction: None,
            itop: 0.0,
            stage: None,
            train_seconds: 0.0,
            eval_seconds: 0.0,
        }
    }

    fn curve<'a>(spec: &'a PanelSpec, name: &str) -> &'a [(f64, f64)] {
        &spec.curves.iter().find(|c| c.0 == name).unwrap().2
    }

    #[test]
    fn a_language_model_plots_bits_per_token_and_an_image_run_its_cross_entropy() {
        let rows = [epoch_row(1, 2.5, 2.6), epoch_row(2, 2.1, 2.2)];
        let lm = curve_panels(&rows, CurveKind::LanguageModel);
        assert_eq!(
            (lm[0].title, lm[0].y_desc),
            ("bits per token (lower is better)", "bits per token")
        );
        assert_eq!(curve(&lm[0], "validation"), [(1.0, 2.5), (2.0, 2.1)]);
        assert_eq!(curve(&lm[0], "test"), [(1.0, 2.6), (2.0, 2.2)]);
        assert_eq!((lm[1].title, lm[1].y_desc), ("next-token accuracy", "%"));
        assert_eq!(curve(&lm[1], "test"), [(1.0, 40.0), (2.0, 40.0)]);
        assert!(
            lm.iter()
                .all(|p| p.x == XAxis::Epochs(2) && p.y_desc != "cross-entropy")
        );
        let image = curve_panels(&rows, CurveKind::Classification);
        let labels: Vec<_> = image.iter().map(|p| (p.title, p.y_desc)).collect();
        assert_eq!(
            labels,
            [
                ("loss", "cross-entropy"),
                ("accuracy", "%"),
                ("learning rate (last step of the epoch)", "lr"),
                ("sparsity of the sparse layers", "%"),
            ]
        );
    }

    #[test]
    fn a_dqn_run_plots_episode_returns_against_environment_steps() {
        let point = |env_steps, eval_mean, eval_std, train| ReturnPoint {
            env_steps,
            eval_mean,
            eval_std,
            train,
        };
        let points = [point(300.0, 20.0, 5.0, None), point(600.0, 40.0, 10.0, Some(15.0))];
        let spec = return_panel(&points);
        assert_eq!((spec.title, spec.y_desc), ("return per episode", "episode return"));
        assert_eq!(spec.x, XAxis::EnvSteps(600.0));
        assert_eq!(curve(&spec, "evaluation (mean)"), [(300.0, 20.0), (600.0, 40.0)]);
        assert_eq!(curve(&spec, "evaluation − std"), [(300.0, 15.0), (600.0, 30.0)]);
        assert_eq!(curve(&spec, "evaluation + std"), [(300.0, 25.0), (600.0, 50.0)]);
        // an epoch in which no training episode ended has no training point
        assert_eq!(curve(&spec, "training episodes (mean)"), [(600.0, 15.0)]);
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("returns.png");
        return_curves(&path, &points).unwrap();
        assert!(image::open(&path).is_ok());
    }

    #[test]
    fn ranges_ignore_non_finite_values() {
        let (lo, hi) = finite_range([1.0, f64::NAN, 3.0, f64::INFINITY].into_iter(), 0.0);
        assert!(lo < 1.0 && hi > 3.0 && hi < 4.0, "{lo} {hi}");
        assert_eq!(finite_range([f64::NAN].into_iter(), 0.1), (0.0, 1.0));
    }
}
