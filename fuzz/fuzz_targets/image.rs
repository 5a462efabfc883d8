#![no_main]
//! Image-folder decoding (the `image` crate plus our resize and channel layout).
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for channels in [1, 3] {
        if let Ok(px) = sparseburn::data::folder::decode(data, 8, channels) {
            assert_eq!(px.len(), channels * 64);
        }
    }
});
