//! `sparseburn bench MODEL|RUN_DIR`: the sparse model against its dense twin
//! (the same weights in dense layers), timed alternately in the same process
//! (sparse first in even rounds, dense first in odd ones) with quartiles over
//! rounds, as the kernel benches do (`docs/performance.md`): latency at batch
//! 1, throughput at batches 32 and 256, every layer on its own at batch 1, the
//! file sizes, and the peak resident memory of a process that runs each side
//! alone.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};
use sparse_core::BackendKind;
use sparse_models::dense_twin::timing_input;
use sparse_models::exported::LayerRef;
use sparse_models::{ExportInfo, ExportedModel, FormatKind, SparseModel};

use super::export::exported_model;
use super::infer::load_model;

/// Median and quartiles of a time, milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Quartiles {
    /// 25th percentile.
    pub q1: f64,
    /// Median.
    pub median: f64,
    /// 75th percentile.
    pub q3: f64,
}

impl Quartiles {
    pub(crate) fn of(v: Vec<f64>) -> Self {
        let [q1, median, q3] = sparse_kernels::timing::quartiles(v);
        Self { q1, median, q3 }
    }
}

/// Sparse and dense timed side by side.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Race {
    /// Batch size.
    pub batch: usize,
    /// Sparse model, ms per batch.
    pub sparse_ms: Quartiles,
    /// Dense twin, ms per batch.
    pub dense_ms: Quartiles,
    /// Dense median / sparse median (> 1: sparse is faster).
    pub speedup: f64,
    /// Sparse images per second (from the median).
    pub sparse_images_per_s: f64,
    /// Dense images per second (from the median).
    pub dense_images_per_s: f64,
}

/// One layer at batch 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerRace {
    /// Layer name.
    pub name: String,
    /// Its format in the sparse model.
    pub format: String,
    /// Input shape (without the batch).
    pub input: Vec<usize>,
    /// The timings.
    pub race: Race,
}

/// Sizes and memory of the sparse model and its dense twin.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Footprint {
    /// Size of the sparse model file, bytes.
    pub sparse_file_bytes: usize,
    /// Size of the dense twin's file, bytes.
    pub dense_file_bytes: usize,
    /// Sparse / dense file size.
    pub size_ratio: f64,
    /// Peak resident memory of a process running the sparse model alone, bytes.
    pub sparse_peak_rss_bytes: Option<u64>,
    /// Peak resident memory of a process running the dense twin alone, bytes.
    pub dense_peak_rss_bytes: Option<u64>,
}

impl Footprint {
    /// The sizes of both files, and the peak memory of a child process per side when `opts.memory`.
    pub(crate) fn measure(
        source: &Path,
        sparse_bytes: usize,
        dense_bytes: usize,
        opts: BenchOptions,
    ) -> anyhow::Result<Self> {
        let (sparse_peak, dense_peak) = if opts.memory {
            (
                Some(child_peak(source, false, opts.backend)?),
                Some(child_peak(source, true, opts.backend)?),
            )
        } else {
            (None, None)
        };
        Ok(Self {
            sparse_file_bytes: sparse_bytes,
            dense_file_bytes: dense_bytes,
            size_ratio: sparse_bytes as f64 / dense_bytes.max(1) as f64,
            sparse_peak_rss_bytes: sparse_peak,
            dense_peak_rss_bytes: dense_peak,
        })
    }

    /// The file-size line and, when measured, the peak-memory line.
    pub(crate) fn render(&self) -> String {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let mut s = format!(
            "file size: sparse {} bytes, dense {} bytes ({:.1}%)\n",
            self.sparse_file_bytes,
            self.dense_file_bytes,
            100.0 * self.size_ratio
        );
        if let (Some(a), Some(b)) = (self.sparse_peak_rss_bytes, self.dense_peak_rss_bytes) {
            s.push_str(&format!(
                "peak RSS: sparse {:.1} MiB, dense {:.1} MiB\n",
                mib(a),
                mib(b)
            ));
        }
        s
    }
}

/// What `bench` measured.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// The model file or run folder.
    pub source: String,
    /// Model name.
    pub model: String,
    /// Input `[C, H, W]`.
    pub input: [usize; 3],
    /// The backend both sides ran on.
    pub backend: String,
    /// Threads of the pool the kernels run on.
    pub threads: usize,
    /// File sizes and peak memory.
    #[serde(flatten)]
    pub footprint: Footprint,
    /// End to end: batch 1 (latency), 32 and 256 (throughput).
    pub end_to_end: Vec<Race>,
    /// Every conv and linear layer at batch 1.
    pub layers: Vec<LayerRace>,
}

/// How long to measure.
#[derive(Clone, Copy, Debug)]
pub struct BenchOptions {
    /// Fewer rounds (for a first look and for tests).
    pub quick: bool,
    /// Measure peak memory in child processes.
    pub memory: bool,
    /// The backend both sides run on (flex by default).
    pub backend: BackendKind,
}

/// The sparse model and its dense twin, with their file sizes.
struct Pair {
    sparse: ExportedModel,
    dense: SparseModel,
    sparse_bytes: usize,
    dense_bytes: usize,
}

fn pair(source: &Path, device: &Device) -> anyhow::Result<Pair> {
    if source.is_dir() {
        let sparse = exported_model(source, FormatKind::Auto, device)?;
        let dense = exported_model(source, FormatKind::Dense, device)?;
        let (sparse_bytes, dense_bytes) = (sparse.to_bytes()?.len(), dense.to_bytes()?.len());
        Ok(Pair {
            sparse,
            dense: dense.model,
            sparse_bytes,
            dense_bytes,
        })
    } else {
        let sparse = load_model(source, device)?;
        let dense = ExportedModel {
            info: ExportInfo {
                format: FormatKind::Dense.name().into(),
                ..sparse.info.clone()
            },
            model: sparse.model.to_dense()?,
        };
        let sparse_bytes = std::fs::metadata(source)?.len() as usize;
        let dense_bytes = dense.to_bytes()?.len();
        Ok(Pair {
            sparse,
            dense: dense.model,
            sparse_bytes,
            dense_bytes,
        })
    }
}

/// Waits until `y` is computed: on a GPU backend work is only queued, so a
/// timed call ends by reading back one value of its output (on flex, a copy
/// of one float).
pub(crate) fn settle<const D: usize>(y: Tensor<D>) {
    let n = y.shape().num_elements();
    if n > 0 {
        drop(y.reshape([n]).slice(0..1).into_data());
    }
}

pub(crate) fn race(batch: usize, rounds: usize, mut sparse: impl FnMut(), mut dense: impl FnMut()) -> Race {
    for _ in 0..2 {
        sparse();
        dense();
    }
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        t.elapsed().as_secs_f64() * 1e3
    };
    let (mut s, mut d) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        if r % 2 == 0 {
            s.push(time(&mut sparse));
            d.push(time(&mut dense));
        } else {
            d.push(time(&mut dense));
            s.push(time(&mut sparse));
        }
    }
    let (s, d) = (Quartiles::of(s), Quartiles::of(d));
    Race {
        batch,
        speedup: d.median / s.median,
        sparse_images_per_s: batch as f64 * 1e3 / s.median,
        dense_images_per_s: batch as f64 * 1e3 / d.median,
        sparse_ms: s,
        dense_ms: d,
    }
}

fn layer_forward(layer: LayerRef<'_>, x: &LayerInput) {
    match (layer, x) {
        (LayerRef::Conv(c), LayerInput::Image(x)) => settle(c.forward(x.clone())),
        (LayerRef::Linear(l), LayerInput::Flat(x)) => settle(l.forward(x.clone())),
        _ => {}
    }
}

enum LayerInput {
    Image(Tensor<4>),
    Flat(Tensor<2>),
}

fn layer_races(
    sparse: &SparseModel,
    dense: &SparseModel,
    input: [usize; 3],
    rounds: usize,
    device: &Device,
) -> Vec<LayerRace> {
    let shapes = sparse.layer_inputs(input);
    sparse
        .layers()
        .into_iter()
        .zip(dense.layers())
        .zip(shapes)
        .map(|((s, d), shape)| {
            let x = match shape[..] {
                [c, h, w] => LayerInput::Image(timing_input([1, c, h, w], device)),
                [n] => LayerInput::Flat(timing_input([1, n], device)),
                _ => LayerInput::Flat(timing_input([1, 1], device)),
            };
            LayerRace {
                format: s.format().to_string(),
                input: shape,
                race: race(1, rounds, || layer_forward(s.layer, &x), || layer_forward(d.layer, &x)),
                name: s.name,
            }
        })
        .collect()
}

/// The peak resident memory of this process so far (`VmHWM`), bytes; none off Linux.
pub fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The child's job: run one side (the dense twin or the sparse model) alone
/// at batches 1, 32 and 256 and return the peak RSS.
pub fn memory_probe(source: &Path, dense: bool, backend: BackendKind) -> anyhow::Result<u64> {
    let device = backend.device()?;
    if super::bench_lm::is_language_model(source)? {
        return super::bench_lm::memory_probe(source, dense, &device);
    }
    let (model, input) = if source.is_dir() {
        let format = if dense { FormatKind::Dense } else { FormatKind::Auto };
        let m = exported_model(source, format, &device)?;
        (m.model, m.info.input)
    } else {
        let m = load_model(source, &device)?;
        let input = m.info.input;
        (if dense { m.model.to_dense()? } else { m.model }, input)
    };
    let [c, h, w] = input;
    for batch in [1, 32, 256] {
        settle(model.forward(timing_input([batch, c, h, w], &device)));
    }
    peak_rss().context("no /proc/self/status: peak memory is measured on Linux only")
}

/// The `--memory-of` value of a side: `sparse`, or the dense twin's format name.
pub fn side_name(dense: bool) -> &'static str {
    if dense { FormatKind::Dense.name() } else { "sparse" }
}

fn child_peak(source: &Path, dense: bool, backend: BackendKind) -> anyhow::Result<u64> {
    let side = side_name(dense);
    let exe = std::env::current_exe()?;
    let out = std::process::Command::new(exe)
        .arg("bench")
        .arg(source)
        .args(["--memory-of", side, "--device", backend.name()])
        .output()
        .context("starting the memory probe")?;
    if !out.status.success() {
        bail!(
            "the {side} memory probe failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .context("the memory probe printed no number")
}

/// Runs the benchmark on `source` (a model file or a finished run folder).
pub fn bench(source: &Path, opts: BenchOptions) -> anyhow::Result<BenchReport> {
    let device = opts.backend.device()?;
    let p = pair(source, &device)?;
    let input = p.sparse.info.input;
    let [c, h, w] = input;
    let (r1, r32, r256, rl) = if opts.quick { (5, 3, 3, 3) } else { (21, 11, 5, 11) };
    let mut end_to_end = Vec::new();
    for (batch, rounds) in [(1, r1), (32, r32), (256, r256)] {
        let x = timing_input([batch, c, h, w], &device);
        end_to_end.push(race(
            batch,
            rounds,
            || settle(p.sparse.model.forward(x.clone())),
            || settle(p.dense.forward(x.clone())),
        ));
    }
    let layers = layer_races(&p.sparse.model, &p.dense, input, rl, &device);
    Ok(BenchReport {
        source: source.display().to_string(),
        model: p.sparse.info.model.clone(),
        input,
        backend: opts.backend.name().into(),
        threads: rayon_threads(),
        footprint: Footprint::measure(source, p.sparse_bytes, p.dense_bytes, opts)?,
        end_to_end,
        layers,
    })
}

pub(crate) fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The report as text.
pub fn render(r: &BenchReport) -> String {
    let mut s = format!(
        "{} ({}), input {}x{}x{}, {}, {} threads; sparse vs dense twin, alternating, median [quartiles]\n",
        r.source, r.model, r.input[0], r.input[1], r.input[2], r.backend, r.threads
    );
    s.push_str(&r.footprint.render());
    let line = |name: &str, x: &Race| {
        format!(
            "{name:<28} sparse {:>9.3} ms [{:.3}, {:.3}]  dense {:>9.3} ms [{:.3}, {:.3}]  {:.2}x  ({:.0} vs {:.0} images/s)\n",
            x.sparse_ms.median,
            x.sparse_ms.q1,
            x.sparse_ms.q3,
            x.dense_ms.median,
            x.dense_ms.q1,
            x.dense_ms.q3,
            x.speedup,
            x.sparse_images_per_s,
            x.dense_images_per_s
        )
    };
    for x in &r.end_to_end {
        s.push_str(&line(&format!("end to end, batch {}", x.batch), x));
    }
    s.push_str("layers at batch 1:\n");
    for l in &r.layers {
        s.push_str(&line(&format!("  {} ({})", l.name, l.format), &l.race));
    }
    s
}

/// Where `--json` goes, checked before measuring.
pub fn json_target(path: Option<&Path>) -> anyhow::Result<Option<PathBuf>> {
    if let Some(p) = path {
        let dir = p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !dir.is_dir() {
            bail!(
                "{}: the folder for --json does not exist; create it first",
                dir.display()
            );
        }
    }
    Ok(path.map(Path::to_path_buf))
}
