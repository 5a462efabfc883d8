//! The fixed choices of the command line, as clap `ValueEnum`s: `--help` lists
//! them with their defaults and a typo (`--method RigL`) is rejected before
//! anything runs. Methods come from the registry, so a new method is a choice
//! without touching this file.

use std::sync::OnceLock;

use clap::ValueEnum;
use clap::builder::PossibleValue;
use sparse_methods::registry::{self, Registered};

use crate::data::DatasetKind;

/// A registered method's name.
#[derive(Clone, Copy, Debug)]
pub struct MethodName(pub &'static Registered);

impl MethodName {
    /// The name.
    pub fn name(&self) -> &'static str {
        self.0.name
    }
}

impl ValueEnum for MethodName {
    fn value_variants<'a>() -> &'a [Self] {
        static NAMES: OnceLock<Vec<MethodName>> = OnceLock::new();
        NAMES.get_or_init(|| registry::methods().iter().map(MethodName).collect())
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.0.name).help(self.0.summary))
    }
}

impl ValueEnum for DatasetKind {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            Self::FashionMnist,
            Self::Mnist,
            Self::Cifar10,
            Self::Folder,
            Self::Synthetic,
        ]
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(match self {
            Self::FashionMnist => PossibleValue::new("fashion-mnist")
                .alias("fashion_mnist")
                .help("Fashion-MNIST (IDX files; Debian's dataset-fashion-mnist)"),
            Self::Mnist => PossibleValue::new("mnist").help("MNIST (IDX files)"),
            Self::Cifar10 => PossibleValue::new("cifar10")
                .alias("cifar-10")
                .help("CIFAR-10, binary version"),
            Self::Folder => PossibleValue::new("folder").help("image folders: <dir>/{train,test}/<class>/*.png|jpg"),
            Self::Synthetic => PossibleValue::new("synthetic").help("labelled synthetic images, not real data (tests)"),
        })
    }
}

/// Backends (compiled in or not; an absent one is an error naming the cargo feature).
pub const DEVICES: [&str; 4] = ["flex", "ndarray", "wgpu", "cuda"];

/// Optimizers.
pub const OPTIMIZERS: [&str; 3] = ["sgd", "adam", "adamw"];

/// Penalties.
pub const PENALTIES: [&str; 2] = ["l1", "group-lasso"];
