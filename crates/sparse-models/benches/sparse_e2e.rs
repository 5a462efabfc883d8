//! End-to-end inference at batch 1: the dense flex model (masked weights) vs its
//! sparse twin, alternating each round; quartiles printed and written as JSON.
//!
//! `cargo bench -p sparse-models --bench sparse_e2e -- [--quick] [--out FILE] [resnet50|mobilenet]`
//!
//! Masks: ERK densities at 90% sparsity (sparse_core `Distribution::Erk`, power
//! 1), random positions, over each model's default sparse layers.

use std::collections::BTreeMap;
use std::time::Instant;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Tensor, TensorData};
use sparse_core::distribution::Allocation;
use sparse_core::{Distribution, Mask, Pattern, Rng};
use sparse_kernels::timing::quartiles;
use sparse_models::to_sparse::{SparseMasks, SparseOptions, ToSparse};
use sparse_models::{Classifier, MobileNetV1Config, ResNetConfig, ResNetDepth};

struct ApplyMasks<'a> {
    path: Vec<String>,
    masks: &'a BTreeMap<String, Mask>,
}

impl ModuleMapper for ApplyMasks<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        match self.masks.get(&self.path.join(".")) {
            Some(m) => param.map(|t| {
                let (dims, dev) = (t.dims(), t.device());
                t * Tensor::<D>::from_data(
                    TensorData::new(m.to_bools().iter().map(|&b| b as u8 as f32).collect::<Vec<_>>(), dims),
                    &dev,
                )
            }),
            None => param,
        }
    }
}

fn erk_masks<M: Classifier>(model: &M, sparsity: f64) -> BTreeMap<String, Mask> {
    let layers = sparse_core::discover(model, &model.sparsity_filter()).expect("layers");
    let Ok(Allocation::PerLayer(counts)) = (Distribution::Erk { power_scale: 1.0 }).allocate(&layers, sparsity) else {
        panic!("ERK allocation")
    };
    let mut rng = Rng::new(1);
    layers
        .iter()
        .zip(counts)
        .map(|(l, c)| {
            (
                l.path.clone(),
                Pattern::Unstructured.select(l, &rng.scores(l.numel()), c),
            )
        })
        .collect()
}

fn race(name: &str, rounds: usize, mut dense: impl FnMut(), mut sparse: impl FnMut(), json: &mut Vec<String>) {
    for _ in 0..2 {
        dense();
        sparse();
    }
    let (mut d, mut s) = (Vec::new(), Vec::new());
    let time = |f: &mut dyn FnMut()| {
        let t = Instant::now();
        f();
        t.elapsed().as_secs_f64() * 1e3
    };
    for r in 0..rounds {
        if r % 2 == 0 {
            d.push(time(&mut dense));
            s.push(time(&mut sparse));
        } else {
            s.push(time(&mut sparse));
            d.push(time(&mut dense));
        }
    }
    let (qd, qs) = (quartiles(d), quartiles(s));
    println!(
        "{name:<32} dense {:>8.2} ms [{:.2}, {:.2}]  sparse {:>8.2} ms [{:.2}, {:.2}]  dense/sparse {:.2}x",
        qd[1],
        qd[0],
        qd[2],
        qs[1],
        qs[0],
        qs[2],
        qd[1] / qs[1]
    );
    json.push(format!(
        "{{\"case\":\"{name}\",\"dense_ms\":[{:.3},{:.3},{:.3}],\"sparse_ms\":[{:.3},{:.3},{:.3}],\"ratio\":{:.3}}}",
        qd[0],
        qd[1],
        qd[2],
        qs[0],
        qs[1],
        qs[2],
        qd[1] / qs[1]
    ));
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| "target/bench-sparse-e2e.json".into());
    let filter = args
        .iter()
        .find(|a| !a.starts_with('-') && !a.ends_with(".json"))
        .cloned();
    let wants = |n: &str| filter.as_ref().is_none_or(|f| n.contains(f.as_str()));
    let rounds = if quick { 7 } else { 21 };
    let dev = Device::flex();
    println!(
        "sparse twins, batch 1, 224x224, ERK 90%, {} rayon threads",
        rayon::current_num_threads()
    );
    let mut json = Vec::new();
    let x = Tensor::<4>::from_data(TensorData::new(vec![0.1f32; 3 * 224 * 224], [1, 3, 224, 224]), &dev);
    if wants("resnet50") {
        let model = ResNetConfig::new(ResNetDepth::R50).init(&dev);
        let masks = erk_masks(&model, 0.9);
        let model = model.map(&mut ApplyMasks {
            path: vec![],
            masks: &masks,
        });
        let twin = model
            .to_sparse(&SparseMasks(masks), &SparseOptions::default())
            .expect("twin");
        race(
            "resnet50-erk90-b1",
            rounds,
            || drop(model.forward(x.clone())),
            || drop(twin.forward(x.clone())),
            &mut json,
        );
    }
    if wants("mobilenet") {
        let model = MobileNetV1Config::new().init(&dev).expect("model");
        let masks = erk_masks(&model, 0.9);
        let model = model.map(&mut ApplyMasks {
            path: vec![],
            masks: &masks,
        });
        let twin = model
            .to_sparse(&SparseMasks(masks), &SparseOptions::default())
            .expect("twin");
        race(
            "mobilenet-v1-erk90-b1",
            rounds,
            || drop(model.forward(x.clone())),
            || drop(twin.forward(x.clone())),
            &mut json,
        );
    }
    match std::fs::write(&out, format!("[\n{}\n]\n", json.join(",\n"))) {
        Ok(()) => println!("wrote {out}"),
        Err(e) => eprintln!("could not write {out}: {e}"),
    }
}
