#![no_main]
//! Saved masks: `Mask::from_bytes` rejects or accepts any bytes without a panic,
//! and accepted masks round-trip.
use libfuzzer_sys::fuzz_target;
use sparse_core::Mask;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let len = usize::from(u16::from_le_bytes([data[0], data[1]]));
    if let Some(m) = Mask::from_bytes(len, &data[2..]) {
        assert!(m.count_ones() <= len);
        assert_eq!(Mask::from_bytes(len, &m.to_bytes()), Some(m));
    }
});
