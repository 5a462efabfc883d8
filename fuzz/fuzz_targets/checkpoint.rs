#![no_main]
//! Checkpoint loading: a real checkpoint of a small MLP with one of its files
//! (`trainer.json`, `sparse.safetensors`, `model.bpk`, chosen by the first byte)
//! replaced by the input, and its checksums made to match so that the parsers
//! and the counter checks are reached: `Checkpointer::restore` refuses or
//! accepts it without a panic.
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use burn::tensor::Device;
use libfuzzer_sys::fuzz_target;
use sparseburn::prelude::{OptimizerConfig, Sparsifier, SparsityConfig, StaticRandom};
use sparseburn::run::artifacts::RunDir;
use sparseburn::run::train::checkpoint::{Checkpointer, Schedule, TrainerState};
use sparseburn::run::train::checksum;
use sparseburn::sparse_core::SgdSettings;
use sparseburn::sparse_models::{Mlp, MlpConfig};

const FILES: [&str; 3] = ["trainer.json", "sparse.safetensors", "model.bpk"];

fn model(device: &Device) -> Mlp {
    MlpConfig::new()
        .with_input(16)
        .with_hidden(vec![8])
        .with_classes(4)
        .init(device)
}

fn sparsifier(model: &Mlp) -> Sparsifier {
    let config = SparsityConfig::new().with_sparsity(0.5);
    let sgd = OptimizerConfig::Sgd(SgdSettings::new());
    Sparsifier::new(model, config, StaticRandom, &sgd).expect("a sparsifier for the MLP")
}

/// A run folder with a valid checkpoint at step 0, made once.
fn reference() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("sparseburn-fuzz-ckpt-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("a temp folder");
        let device = Device::flex();
        let m = model(&device);
        let mut sparse = sparsifier(&m);
        let m = sparse.init(m).expect("masks");
        let mut state = TrainerState::default();
        Checkpointer::new(RunDir { path: path.clone() })
            .save(&m, &sparse, &mut state)
            .expect("a checkpoint");
        path
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    let src = reference().join("checkpoint");
    let run = std::env::temp_dir().join(format!("sparseburn-fuzz-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&run);
    let ckpt = run.join("checkpoint");
    std::fs::create_dir_all(&ckpt).expect("a temp folder");
    for f in FILES {
        std::fs::copy(src.join(f), ckpt.join(f)).expect("copy");
    }
    std::fs::write(ckpt.join(FILES[usize::from(which) % FILES.len()]), body).expect("write");
    checksum::record(&ckpt).expect("checksums");
    let device = Device::flex();
    let m = model(&device);
    let mut sparse = sparsifier(&m);
    let schedule = Schedule {
        total_steps: 100,
        steps_per_epoch: 10,
        batch_size: 8,
    };
    let _ = Checkpointer::new(RunDir { path: run.clone() }).restore(m, &mut sparse, "mlp", schedule);
});
