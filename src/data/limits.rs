//! Caps on every size that comes from a file header or a user setting.
//!
//! sparseburn holds a dataset in memory as `u8` pixels, so a header that
//! declares a billion images, or an `--image-size` of 100 000, would ask for
//! more memory than any machine has. Every size is checked against these caps
//! *before* memory is reserved, and the error says how much memory the input
//! would need and what to change. `docs/reliability.md` lists the caps and the
//! tests that check them.

/// Largest image side in pixels (IDX rows and columns, `--image-size`).
/// ImageNet-style training uses 224; 1024 leaves room for larger inputs while
/// one RGB image stays at 3 MiB.
pub const MAX_IMAGE_SIDE: usize = 1024;

/// Most pixel bytes one split (train or test) may hold in memory: 16 GiB.
/// CIFAR-10's training split is 150 MiB, Fashion-MNIST's 45 MiB.
pub const MAX_SPLIT_BYTES: u64 = 16 << 30;

/// Most classes: labels are stored as `u16`.
pub const MAX_CLASSES: usize = 1 << 16;

/// `bytes` as a person reads them: `512 B`, `3.0 MiB`, `27.9 GiB`.
pub fn human_bytes(bytes: u128) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Pixel bytes of `count` images of `shape` (`[C, H, W]`), without overflow
/// (saturates at `u128::MAX`, far above every cap).
pub fn pixel_bytes(count: usize, shape: [usize; 3]) -> u128 {
    [count, shape[0], shape[1], shape[2]]
        .iter()
        .try_fold(1u128, |acc, &x| acc.checked_mul(x as u128))
        .unwrap_or(u128::MAX)
}

/// Checks an image side (`what` names it in the message): `1..=MAX_IMAGE_SIDE`.
pub fn check_side(what: &str, side: usize) -> Result<(), String> {
    if side == 0 {
        return Err(format!("{what} is 0; an image side must be at least 1 pixel"));
    }
    if side > MAX_IMAGE_SIDE {
        return Err(format!(
            "{what} is {side}, more than the {MAX_IMAGE_SIDE}-pixel limit on an image side (one RGB image would need {})",
            human_bytes(pixel_bytes(1, [3, side, side]))
        ));
    }
    Ok(())
}

/// Checks that `count` images of `shape` fit in [`MAX_SPLIT_BYTES`]; the
/// error says how much memory they would need.
pub fn check_split_bytes(count: usize, shape: [usize; 3]) -> Result<(), String> {
    let bytes = pixel_bytes(count, shape);
    if bytes > u128::from(MAX_SPLIT_BYTES) {
        let [c, h, w] = shape;
        return Err(format!(
            "{count} images of {c}x{h}x{w} would need {} of memory, more than the {} limit on one split",
            human_bytes(bytes),
            human_bytes(u128::from(MAX_SPLIT_BYTES))
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_as_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
        // 3·100000² bytes = 30 000 000 000 B = 27.94 GiB
        assert_eq!(human_bytes(30_000_000_000), "27.9 GiB");
    }

    #[test]
    fn pixel_bytes_never_overflow() {
        assert_eq!(pixel_bytes(10, [3, 32, 32]), 30_720);
        assert_eq!(pixel_bytes(usize::MAX, [usize::MAX, usize::MAX, 2]), u128::MAX);
    }

    #[test]
    fn sides_and_split_sizes_have_caps() {
        assert!(check_side("side", 1).is_ok());
        assert!(check_side("side", MAX_IMAGE_SIDE).is_ok());
        assert!(check_side("side", 0).unwrap_err().contains("at least 1"));
        let err = check_side("--image-size", 100_000).unwrap_err();
        assert!(err.contains("1024") && err.contains("27.9 GiB"), "{err}");
        assert!(check_split_bytes(60_000, [1, 28, 28]).is_ok());
        // 2^32 images of 1x28x28 = 3.1 TiB
        let err = check_split_bytes(1 << 32, [1, 28, 28]).unwrap_err();
        assert!(err.contains("3.1 TiB") && err.contains("16.0 GiB"), "{err}");
    }
}
