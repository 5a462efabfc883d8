#![no_main]
//! CIFAR-10 binary batch parser.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((labels, pixels)) = sparseburn::data::cifar::parse_batch(data) {
        assert_eq!(pixels.len(), labels.len() * 3072);
        assert!(labels.iter().all(|l| *l < 10));
    }
});
