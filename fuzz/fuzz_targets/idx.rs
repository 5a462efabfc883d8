#![no_main]
//! IDX image and label parsers: any bytes give a value or an error, never a panic.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((n, r, c, px)) = sparseburn::data::idx::parse_images(data) {
        assert_eq!(px.len(), n * r * c);
    }
    if let Ok(labels) = sparseburn::data::idx::parse_labels(data) {
        assert_eq!(labels.len() + 8, data.len());
    }
});
