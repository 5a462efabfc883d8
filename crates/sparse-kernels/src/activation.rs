//! The activation fused into a sparse op's store (bias is always fused).

/// Applied to `W·x + b` before it is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Activation {
    /// Identity.
    #[default]
    None,
    /// `max(0, ·)`.
    Relu,
}

impl Activation {
    /// Applies the activation to one value.
    #[inline(always)]
    pub fn apply(self, v: f32) -> f32 {
        match self {
            Self::None => v,
            Self::Relu => v.max(0.0),
        }
    }
}
