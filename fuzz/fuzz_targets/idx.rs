#![no_main]
//! IDX image and label readers: any bytes give a value or an error, never a
//! panic, whether read from memory, through the gzip stream (the bytes
//! compressed, so the header and body checks are reached), or as a gzip file
//! (so the decoder's own error paths are reached).
use std::io::Write;

use libfuzzer_sys::fuzz_target;
use sparseburn::data::idx::{read_images, read_labels};
use sparseburn::data::input::GzInput;

fn check(mut input: impl std::io::Read, len: Option<usize>) {
    if let Ok((h, px)) = read_images(&mut input) {
        assert_eq!(px.len(), h.count * h.rows * h.cols);
        assert!(h.rows >= 1 && h.cols >= 1);
        if let Some(len) = len {
            assert_eq!(px.len() + 16, len);
        }
    }
}

fn check_labels(mut input: impl std::io::Read, len: Option<usize>) {
    if let (Ok(labels), Some(len)) = (read_labels(&mut input), len) {
        assert_eq!(labels.len() + 8, len);
    }
}

fuzz_target!(|data: &[u8]| {
    check(data, Some(data.len()));
    check_labels(data, Some(data.len()));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap();
    let packed = gz.finish().unwrap();
    check(GzInput::new(packed.as_slice()), Some(data.len()));
    check_labels(GzInput::new(packed.as_slice()), Some(data.len()));
    check(GzInput::new(data), None);
    check_labels(GzInput::new(data), None);
});
