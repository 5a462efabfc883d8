//! Choosing a backend: one helper turns `flex | ndarray | wgpu | cuda` into a
//! [`Device`]. The backend must be compiled in (cargo features of the same
//! names); `flex` is the default CPU backend.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

use crate::error::{Result, SparseError};

/// A Burn backend sparseburn can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Burn's pure-Rust CPU backend (default).
    Flex,
    /// The ndarray CPU backend (deprecated upstream; slow conv backward).
    NdArray,
    /// WebGPU/Vulkan/Metal through wgpu (also the CPU Vulkan driver lavapipe).
    Wgpu,
    /// NVIDIA CUDA.
    Cuda,
}

impl BackendKind {
    /// Every backend.
    pub const ALL: [Self; 4] = [Self::Flex, Self::NdArray, Self::Wgpu, Self::Cuda];

    /// Name as used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Flex => "flex",
            Self::NdArray => "ndarray",
            Self::Wgpu => "wgpu",
            Self::Cuda => "cuda",
        }
    }

    /// Whether this build includes the backend.
    pub fn is_compiled(self) -> bool {
        match self {
            Self::Flex => cfg!(feature = "flex"),
            Self::NdArray => cfg!(feature = "ndarray"),
            Self::Wgpu => cfg!(feature = "wgpu"),
            Self::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// The backends in this build.
    pub fn compiled() -> Vec<Self> {
        Self::ALL.into_iter().filter(|b| b.is_compiled()).collect()
    }

    /// The device (first GPU for wgpu/cuda; wgpu takes the best adapter, which is
    /// the CPU Vulkan driver on machines without a GPU).
    pub fn device(self) -> Result<Device> {
        if !self.is_compiled() {
            return Err(SparseError::Backend(format!(
                "backend `{self}` is not in this build; rebuild with `--features {self}` (this build has: {})",
                Self::compiled().iter().map(|b| b.name()).collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(self.make_device())
    }

    #[allow(unreachable_code, deprecated)]
    fn make_device(self) -> Device {
        match self {
            #[cfg(feature = "flex")]
            Self::Flex => return Device::flex(),
            #[cfg(feature = "ndarray")]
            Self::NdArray => return Device::ndarray(),
            #[cfg(feature = "wgpu")]
            Self::Wgpu => return Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
            #[cfg(feature = "cuda")]
            Self::Cuda => return Device::cuda(0),
            _ => {}
        }
        unreachable!("is_compiled() was checked")
    }

    /// The backend named by the environment variable `SPARSEBURN_DEVICE`, or flex.
    pub fn from_env() -> Result<Self> {
        match std::env::var("SPARSEBURN_DEVICE") {
            Ok(s) if !s.is_empty() => s.parse(),
            _ => Ok(Self::Flex),
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for BackendKind {
    type Err = SparseError;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|b| b.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                SparseError::Backend(format!(
                    "unknown backend `{s}`; expected one of flex, ndarray, wgpu, cuda"
                ))
            })
    }
}

/// The device for a backend name (`"flex"`, `"ndarray"`, `"wgpu"`, `"cuda"`).
pub fn device(name: &str) -> Result<Device> {
    name.parse::<BackendKind>()?.device()
}
