//! CIFAR-10 binary batches (Krizhevsky 2009): records of one label byte and
//! 3072 pixel bytes (`[3, 32, 32]`, channel-major), 10 000 per file:
//! `data_batch_1.bin` … `data_batch_5.bin` and `test_batch.bin`, usually in
//! `cifar-10-batches-bin/`.

use std::path::{Path, PathBuf};

use super::{DataError, ImageSet};

const RECORD: usize = 1 + 3 * 32 * 32;

/// The ten class names.
pub const CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// Parses one batch file: `(labels, pixels)`.
pub fn parse_batch(bytes: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
        return Err(format!(
            "wrong size: {} bytes is not a whole number of {RECORD}-byte records (truncated or not a CIFAR-10 binary batch)",
            bytes.len()
        ));
    }
    let mut labels = Vec::with_capacity(bytes.len() / RECORD);
    let mut pixels = Vec::with_capacity(bytes.len() / RECORD * (RECORD - 1));
    for (i, rec) in bytes.chunks_exact(RECORD).enumerate() {
        if rec[0] >= 10 {
            return Err(format!(
                "record {i} has label {} (CIFAR-10 labels are 0..9); is this CIFAR-100?",
                rec[0]
            ));
        }
        labels.push(rec[0]);
        pixels.extend_from_slice(&rec[1..]);
    }
    Ok((labels, pixels))
}

fn batch_dir(dir: &Path) -> PathBuf {
    let nested = dir.join("cifar-10-batches-bin");
    if nested.is_dir() { nested } else { dir.to_path_buf() }
}

/// Loads the training (5 batches) or test split from `dir`.
pub fn load(dir: &Path, train: bool) -> Result<ImageSet, DataError> {
    let dir = batch_dir(dir);
    let files: Vec<String> = if train {
        (1..=5).map(|i| format!("data_batch_{i}.bin")).collect()
    } else {
        vec!["test_batch.bin".into()]
    };
    let (mut labels, mut pixels) = (Vec::new(), Vec::new());
    for f in files {
        let path = dir.join(&f);
        if !path.is_file() {
            return Err(DataError::Missing(format!("{} not found", path.display())));
        }
        let bytes = std::fs::read(&path).map_err(|e| DataError::Io {
            path: path.clone(),
            source: e,
        })?;
        let (l, p) = parse_batch(&bytes).map_err(|detail| DataError::Corrupt {
            path: path.clone(),
            detail: format!("{detail}; replace the file"),
        })?;
        labels.extend(l.into_iter().map(u16::from));
        pixels.extend(p);
    }
    Ok(ImageSet {
        name: format!("cifar10/{}", if train { "train" } else { "test" }),
        shape: [3, 32, 32],
        pixels,
        labels,
        classes: CLASSES.iter().map(|c| c.to_string()).collect(),
        mean: vec![0.4914, 0.4822, 0.4465],
        std: vec![0.2470, 0.2435, 0.2616],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_records_and_rejects_bad_ones() {
        let mut bytes = vec![0u8; 2 * RECORD];
        bytes[0] = 3;
        bytes[RECORD] = 9;
        bytes[1] = 200;
        let (l, p) = parse_batch(&bytes).unwrap();
        assert_eq!(l, vec![3, 9]);
        assert_eq!(p.len(), 2 * 3072);
        assert_eq!(p[0], 200);
        assert!(parse_batch(&bytes[..RECORD + 5]).unwrap_err().contains("truncated"));
        bytes[RECORD] = 57;
        assert!(parse_batch(&bytes).unwrap_err().contains("label 57"));
        assert!(parse_batch(&[]).is_err());
    }
}
