#![no_main]
//! CIFAR-10 binary batch parser: raw bytes, and the same bytes shaped into
//! whole 3073-byte records so the record loop and label checks are reached.
use libfuzzer_sys::fuzz_target;

fn check(bytes: &[u8]) {
    if let Ok((labels, pixels)) = sparseburn::data::cifar::parse_batch(bytes) {
        assert_eq!(pixels.len(), labels.len() * 3072);
        assert!(labels.iter().all(|l| *l < 10));
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Some(first) = data.first() {
        let records = usize::from(first % 4) + 1;
        let mut shaped: Vec<u8> = data.iter().copied().cycle().take(records * 3073).collect();
        for r in 0..records {
            shaped[r * 3073] %= 11; // mostly valid labels, sometimes 10
        }
        check(&shaped);
    }
});
