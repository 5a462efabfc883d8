//! Training in sparse execution (issue 10, part 2): a sparse layer's weights,
//! gradient and optimizer moments kept as vectors of its active values, with
//! no dense copy between steps.
//!
//! * [`compact_linear`]: [`CompactLinear`], a linear layer as a Burn module
//!   whose weight is its active values (and a dense probe on the steps a
//!   method reads the dense gradient);
//! * [`compact_conv`]: [`CompactConv2d`], a convolution whose weight is a
//!   [`CompactLinear`] over its patches (`[c_out, fan-in]`);
//! * [`compact_step`](mod@compact_step): the step of a model of such layers ([`CompactModel`]):
//!   optimizer step on the values, the `Sparsifier`'s topology update,
//!   re-alignment of changed layers;
//! * [`compact_state`](mod@compact_state): its optimizer state to and from the masked-dense
//!   layout (one checkpoint format for both executions);
//! * [`pattern`]: the CSR plan of a mask, built from the mask alone, and the
//!   map between the entries of two plans (for topology updates);
//! * [`growth`]: RigL's gradient growth as a tiled top-`k` of `|Xᵀ·dY|`,
//!   without the dense gradient, and SET's random growth without a score vector;
//! * [`compact_update`]: SET's and RigL's topology updates computed on the
//!   compact layers (no mask-sized tensor or score vector), for layers whose
//!   dense shape does not fit in memory.
//!
//! The design (execution modes, which methods can run sparse, what comes
//! next) is in `docs/sparse-execution.md`, "Training in sparse execution".

pub mod compact_conv;
pub mod compact_linear;
pub mod compact_state;
pub mod compact_step;
pub mod compact_update;
pub mod growth;
pub mod pattern;

pub use compact_conv::CompactConv2d;
pub use compact_linear::CompactLinear;
pub use compact_state::{compact_state, dense_state};
pub use compact_step::{CompactModel, compact_prepare, compact_step, try_map_layers};
pub use compact_update::{
    CompactUpdate, Growth, GrowthTrace, UpdateAt, exchange, random_mask, take_traces, update_model, with_output_probes,
};
pub use growth::GROWTH_TILE;
