//! The char transformer's sparse twin gives the masked dense model's logits and
//! bits per token (every projection in the format `auto` or a forced one picks,
//! random unstructured masks at several densities), reads back from its file
//! to the same logits, and refuses damaged or foreign files.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use sparse_core::{Mask, Rng, SparseLayer};
use sparse_models::sparse_store::SparseStore;
use sparse_models::to_sparse::{SparseMasks, SparseOptions, ToSparse};
use sparse_models::{
    CharTransformer, CharTransformerConfig, ExportedLanguageModel, ExportedModel, FormatKind, NextToken,
    SparseCharTransformer, TextExportInfo,
};

use crate::masking::{Prepare, random_masks, rel_err, values};

fn device() -> Device {
    Device::flex()
}

fn model(vocab: usize, block: usize, device: &Device) -> CharTransformer {
    CharTransformerConfig::new(vocab)
        .with_block(block)
        .with_layers(2)
        .with_heads(4)
        .with_d_model(32)
        .init(device)
        .expect("model")
}

/// Random masks of `density` on the layers `filter` makes sparse, and the model masked by them.
fn masked(model: CharTransformer, density: f64, embeddings: bool) -> (CharTransformer, BTreeMap<String, Mask>) {
    let filter = model.sparsity_filter_with(embeddings, false);
    let layers: Vec<SparseLayer> = sparse_core::discover(&model, &filter).expect("layers");
    let masks = random_masks(&layers, density, 17);
    let model = model.map(&mut Prepare::with_norms(&masks, 5));
    (model, masks)
}

fn tokens(b: usize, t: usize, vocab: usize, seed: u64, device: &Device) -> Tensor<2, Int> {
    let mut rng = Rng::new(seed);
    let ids: Vec<i64> = (0..b * t).map(|_| rng.below(vocab as u64) as i64).collect();
    Tensor::from_data(TensorData::new(ids, [b, t]), device)
}

#[test]
fn the_twin_gives_the_masked_models_logits_and_bits_per_token() {
    let device = device();
    let (vocab, block) = (23, 12);
    // d_model 32: every projection is below `auto`'s size limit, so `auto` keeps
    // them dense; CSR is forced to run the sparse kernels
    for (density, format, embeddings) in [
        (0.1, FormatKind::Csr, false),
        (0.3, FormatKind::Csr, true),
        (0.5, FormatKind::Auto, false),
        (1.0, FormatKind::Dense, false),
    ] {
        let (dense, masks) = masked(model(vocab, block, &device), density, embeddings);
        let options = SparseOptions {
            format,
            ..SparseOptions::default()
        };
        let twin = dense.to_sparse(&SparseMasks(masks), &options).expect("twin");
        let formats: Vec<&str> = twin.linears().iter().map(|(_, l)| l.format()).collect();
        let want = if format == FormatKind::Csr { "csr" } else { "dense" };
        // the head has no mask: dense unless forced, and forced to CSR here
        assert!(formats.iter().all(|f| *f == want), "{format:?}: {formats:?}");
        // full context and a shorter one, two sequences
        for t in [block, 5] {
            let x = tokens(2, t, vocab, 3, &device);
            let want = values(dense.forward(x.clone()));
            let got = values(twin.forward(x));
            let err = rel_err(&got, &want);
            assert!(
                err <= 1e-5,
                "density {density}, {format:?}, T {t}: relative error {err}"
            );
        }
        let text: Vec<u32> = (0..100u32).map(|i| (i * 7 + 3) % vocab as u32).collect();
        let (a, b) = (
            dense.bits_per_token(&text, 3, &device).expect("dense bits"),
            twin.bits_per_token(&text, 3, &device).expect("twin bits"),
        );
        assert!((a - b).abs() <= 1e-5 * a, "bits per token {a} vs {b}");
        // and the dense twin of the twin is the same model
        let back = twin.to_dense().expect("dense twin");
        let x = tokens(1, block, vocab, 4, &device);
        let err = rel_err(&values(back.forward(x.clone())), &values(dense.forward(x)));
        assert!(err <= 1e-5, "dense twin: relative error {err}");
    }
}

fn info(vocab: usize) -> TextExportInfo {
    TextExportInfo {
        model: "char-transformer".into(),
        config: serde_json::json!({}),
        tokens: "char".into(),
        vocabulary: ('a'..='z').take(vocab).collect(),
        format: "auto".into(),
        corpus: "test".into(),
        method: "rigl".into(),
        test_bits_per_token: 3.5,
        eval_tokens: 0,
        sparsity: 0.9,
        nonzeros: 1,
    }
}

/// The file with its metadata edited by `edit` (unpacked, then written unpacked).
fn edited(bytes: &[u8], edit: impl Fn(&mut serde_json::Value)) -> Vec<u8> {
    let plain = sparse_models::packing::unpack(bytes).expect("unpack");
    let (map, mut meta) = sparse_kernels::modules::TensorMap::from_bytes(&plain).expect("parse");
    edit(&mut meta);
    map.to_bytes(&meta).expect("write")
}

#[test]
fn an_exported_language_model_reads_back_and_damage_is_refused() {
    let device = device();
    let (vocab, block) = (20, 10);
    let (dense, masks) = masked(model(vocab, block, &device), 0.1, false);
    let options = SparseOptions {
        format: FormatKind::Csr,
        ..SparseOptions::default()
    };
    let twin = dense.to_sparse(&SparseMasks(masks), &options).expect("twin");
    let x = tokens(2, block, vocab, 8, &device);
    let want = values(twin.forward(x.clone()));
    let file = ExportedLanguageModel {
        info: info(vocab),
        model: twin,
    };
    let bytes = file.to_bytes().expect("write");
    let plain = sparse_models::packing::unpack(&bytes).expect("unpack");
    assert!(plain.len() > bytes.len(), "the CSR layers are packed as bitmaps");
    let back = ExportedLanguageModel::from_bytes(&bytes, &device).expect("read");
    assert_eq!(back.info, file.info);
    assert_eq!(values(back.model.forward(x)), want);
    assert_eq!(back.layer_formats(), file.layer_formats());
    assert_eq!(
        sparse_models::exported::architecture(&bytes).expect("architecture"),
        SparseCharTransformer::ARCHITECTURE
    );

    // cut anywhere: an error; damaged bytes: never a panic
    for cut in (0..bytes.len()).step_by(bytes.len() / 41 + 1) {
        assert!(
            ExportedLanguageModel::from_bytes(&bytes[..cut], &device).is_err(),
            "cut at {cut}"
        );
    }
    for at in (0..bytes.len()).step_by(bytes.len() / 23 + 1) {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0x5a;
        let _ = ExportedLanguageModel::from_bytes(&damaged, &device);
    }
    // metadata that does not fit the tensors, or a newer or unknown format
    let refused = |edit: &dyn Fn(&mut serde_json::Value), needle: &str| {
        let err = ExportedLanguageModel::from_bytes(&edited(&bytes, edit), &device).unwrap_err();
        assert!(err.to_string().contains(needle), "`{needle}` missing from: {err}");
    };
    refused(&|m| m["model"]["heads"] = 0.into(), "heads");
    refused(&|m| m["model"]["heads"] = 3.into(), "heads");
    refused(&|m| m["model"]["min_float"] = 5.0.into(), "min_float");
    refused(
        &|m| m["model"]["block_norm_epsilon"] = (-1.0).into(),
        "block_norm_epsilon",
    );
    refused(
        &|m| m["model"]["layers"]["blocks.0.inner"]["act"] = "relu".into(),
        "fused activation",
    );
    refused(&|m| m["format_version"] = 99.into(), "upgrade");
    refused(&|m| m["architecture"] = "lstm".into(), "unknown architecture");
    refused(&|m| m["architecture"] = "mlp".into(), "image model");
    // another vocabulary than the model's, and the image reader
    let other = ExportedLanguageModel {
        info: info(vocab - 1),
        model: back.model,
    };
    let err = ExportedLanguageModel::from_bytes(&other.to_bytes().expect("write"), &device).unwrap_err();
    assert!(err.to_string().contains("vocabulary of 19 tokens"), "{err}");
    let err = ExportedModel::from_bytes(&bytes, &device).unwrap_err();
    assert!(err.to_string().contains("language model"), "{err}");
}
