//! PNG plots of a run and of a sweep (plotters, bitmap backend, DejaVu Sans).

use std::path::Path;
use std::sync::OnceLock;

use anyhow::anyhow;
use plotters::prelude::*;
use plotters::style::FontStyle;
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

/// Loss and accuracy per epoch, train and test.
pub fn learning_curves(path: &Path, rows: &[EpochMetrics]) -> anyhow::Result<()> {
    font();
    let root = BitMapBackend::new(path, (1000, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (left, right) = root.split_horizontally(500);
    let x: Vec<f64> = (0..rows.len()).map(|i| (i + 1) as f64).collect();
    let n = rows.len().max(2) as f64;
    let panels: [(&DrawingArea<_, _>, &str, [Vec<f64>; 2]); 2] = [
        (
            &left,
            "loss",
            [
                rows.iter().map(|r| r.train_loss).collect(),
                rows.iter().map(|r| r.test_loss).collect(),
            ],
        ),
        (
            &right,
            "accuracy",
            [
                rows.iter().map(|r| r.train_acc).collect(),
                rows.iter().map(|r| r.test_acc).collect(),
            ],
        ),
    ];
    for (area, name, [train, test]) in panels {
        let lo = train.iter().chain(&test).cloned().fold(f64::INFINITY, f64::min);
        let hi = train.iter().chain(&test).cloned().fold(f64::NEG_INFINITY, f64::max);
        let pad = ((hi - lo) * 0.05).max(1e-3);
        let mut chart = ChartBuilder::on(area)
            .caption(name, ("sans-serif", 20))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(1f64..n, (lo - pad)..(hi + pad))
            .map_err(err)?;
        chart.configure_mesh().x_desc("epoch").draw().map_err(err)?;
        for (series, color, label) in [(&train, BLUE, "train"), (&test, RED, "test")] {
            chart
                .draw_series(LineSeries::new(
                    x.iter().cloned().zip(series.iter().cloned()),
                    color.stroke_width(2),
                ))
                .map_err(err)?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)
}

/// Density of every sparse layer.
pub fn layer_density(path: &Path, layers: &[SparseLayer], masks: &[Mask]) -> anyhow::Result<()> {
    font();
    let h = (60 + 22 * layers.len()) as u32;
    let root = BitMapBackend::new(path, (900, h.max(200))).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let n = layers.len();
    let mut chart = ChartBuilder::on(&root)
        .caption("density per layer", ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(260)
        .build_cartesian_2d(0f64..1f64, (0..n).into_segmented())
        .map_err(err)?;
    chart
        .configure_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => layers.get(*i).map(|l| l.path.clone()).unwrap_or_default(),
            _ => String::new(),
        })
        .x_desc("kept fraction")
        .draw()
        .map_err(err)?;
    chart
        .draw_series(masks.iter().enumerate().map(|(i, m)| {
            Rectangle::new(
                [(0.0, SegmentValue::Exact(i)), (m.density(), SegmentValue::Exact(i + 1))],
                BLUE.mix(0.7).filled(),
            )
        }))
        .map_err(err)?;
    root.present().map_err(err)
}

/// Snapshots of one layer's mask (neurons × fan-in) over time, side by side.
pub fn mask_history(path: &Path, layer: &SparseLayer, snapshots: &[(String, Mask)]) -> anyhow::Result<()> {
    font();
    let (rows, cols) = (layer.neurons(), layer.fan_in());
    let cell = (240 / rows.max(cols).max(1)).clamp(1, 8);
    let (w, h) = ((cols * cell).max(1), (rows * cell).max(1));
    let shown: Vec<&(String, Mask)> = if snapshots.len() <= 6 {
        snapshots.iter().collect()
    } else {
        (0..6).map(|i| &snapshots[i * (snapshots.len() - 1) / 5]).collect()
    };
    let width = (shown.len().max(1) * (w.max(120) + 20)) as u32;
    let root = BitMapBackend::new(path, (width, (h + 60) as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    for (k, (label, mask)) in shown.iter().enumerate() {
        let x0 = (k * (w.max(120) + 20)) as i32;
        root.draw(&Text::new(label.clone(), (x0, 5), ("sans-serif", 14)))
            .map_err(err)?;
        // sample the mask down to the cell grid
        let step_r = rows.div_ceil(h / cell.max(1)).max(1);
        let step_c = cols.div_ceil(w / cell.max(1)).max(1);
        for (gi, r) in (0..rows).step_by(step_r).enumerate() {
            for (gj, c) in (0..cols).step_by(step_c).enumerate() {
                if mask.get(layer.flat(r, c)) {
                    let (x, y) = (x0 + (gj * cell) as i32, 30 + (gi * cell) as i32);
                    root.draw(&Rectangle::new(
                        [(x, y), (x + cell as i32, y + cell as i32)],
                        BLACK.filled(),
                    ))
                    .map_err(err)?;
                }
            }
        }
    }
    root.present().map_err(err)
}

/// One method's `(sparsity, mean accuracy, std)` points.
pub type Series = (String, Vec<(f64, f64, f64)>);

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

/// Mean test accuracy (± std) against sparsity, one line per method; a method
/// with a single point at sparsity 0 (dense) is drawn as a dashed reference.
pub fn accuracy_vs_sparsity(path: &Path, series: &[Series]) -> anyhow::Result<()> {
    font();
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let sparse_x: Vec<f64> = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(s, _, _)| *s))
        .filter(|s| *s > 0.0)
        .collect();
    let x_lo = sparse_x.iter().cloned().fold(1.0, f64::min);
    let x_hi = sparse_x.iter().cloned().fold(0.0, f64::max);
    let pad = ((x_hi - x_lo) * 0.15).max(0.02);
    let (x_lo, x_hi) = ((x_lo - pad).max(0.0), (x_hi + pad).min(1.0));
    let points = series.iter().flat_map(|(_, p)| p.iter());
    let (lo, hi) = points.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), (_, m, s)| {
        (lo.min(m - s), hi.max(m + s))
    });
    let ypad = ((hi - lo) * 0.1).max(0.002);
    let mut chart = ChartBuilder::on(&root)
        .caption("test accuracy vs sparsity (mean ± std over seeds)", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(x_lo..x_hi, (lo - ypad)..(hi + ypad))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("sparsity")
        .y_desc("test accuracy")
        .draw()
        .map_err(err)?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
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
        chart
            .draw_series(
                pts.iter()
                    .map(|(s, m, sd)| PathElement::new(vec![(*s, m - sd), (*s, m + sd)], color.stroke_width(1))),
            )
            .map_err(err)?;
        chart
            .draw_series(pts.iter().map(|(s, m, _)| Circle::new((*s, *m), 4, color.filled())))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}
