//! CIFAR-10 binary batches (Krizhevsky 2009): records of one label byte and
//! 3072 pixel bytes (`[3, 32, 32]`, channel-major), 10 000 per file:
//! `data_batch_1.bin` … `data_batch_5.bin` and `test_batch.bin`, usually in
//! `cifar-10-batches-bin/`. A label of 10 or more is refused, naming the record.

use std::path::{Path, PathBuf};

use super::input::read_declared;
use super::limits::check_split_bytes;
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

/// A batch file must be a whole, nonzero number of records.
fn check_length(len: usize) -> Result<(), String> {
    if len == 0 || !len.is_multiple_of(RECORD) {
        return Err(format!(
            "wrong size: {len} bytes is not a whole number of {RECORD}-byte records (truncated or not a CIFAR-10 binary batch)"
        ));
    }
    Ok(())
}

/// Parses one batch file: `(labels, pixels)`.
pub fn parse_batch(bytes: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
    check_length(bytes.len())?;
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

/// Loads the training (5 batches) or test split from `dir`. Each file's length
/// is checked (whole records, within the memory cap) before it is read.
pub fn load(dir: &Path, train: bool) -> Result<ImageSet, DataError> {
    let dir = batch_dir(dir);
    let files: Vec<String> = if train {
        (1..=5).map(|i| format!("data_batch_{i}.bin")).collect()
    } else {
        vec!["test_batch.bin".into()]
    };
    let (mut labels, mut pixels, mut records) = (Vec::new(), Vec::new(), 0usize);
    for f in files {
        let path = dir.join(&f);
        if !path.is_file() {
            return Err(DataError::Missing(format!("{} not found", path.display())));
        }
        let corrupt = |detail: String| DataError::Corrupt {
            path: path.clone(),
            detail: format!("{detail}; replace the file"),
        };
        let file = std::fs::File::open(&path).map_err(|e| DataError::io(&path, e))?;
        let len = file.metadata().map_err(|e| DataError::io(&path, e))?.len();
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        check_length(len).map_err(corrupt)?;
        records = records.saturating_add(len / RECORD);
        check_split_bytes(records, [3, 32, 32]).map_err(|e| corrupt(format!("the batches hold {e}")))?;
        let bytes = read_declared(
            &mut std::io::BufReader::new(file),
            len,
            &format!("{} records", len / RECORD),
        )
        .map_err(corrupt)?;
        let (l, p) = parse_batch(&bytes).map_err(corrupt)?;
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

    fn batch_dir_with(test_batch_len: u64) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let f = std::fs::File::create(tmp.path().join("test_batch.bin")).unwrap();
        f.set_len(test_batch_len).unwrap(); // sparse: no disk space is used
        tmp
    }

    #[test]
    fn file_lengths_are_checked_before_reading() {
        // 6 million records = 17.2 GiB of pixels: refused from the length alone
        let tmp = batch_dir_with(RECORD as u64 * 6_000_000);
        let err = load(tmp.path(), false).unwrap_err().to_string();
        assert!(err.contains("test_batch.bin") && err.contains("16.0 GiB"), "{err}");
        let tmp = batch_dir_with(RECORD as u64 * 2 + 1);
        let err = load(tmp.path(), false).unwrap_err().to_string();
        assert!(err.contains("3073-byte records"), "{err}");
        let tmp = batch_dir_with(0);
        assert!(load(tmp.path(), false).is_err());
    }
}
