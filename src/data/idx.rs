//! MNIST-family IDX files (LeCun et al.): Fashion-MNIST and MNIST.
//!
//! Images: big-endian magic `0x00000803`, count, rows, columns, then
//! `count·rows·cols` bytes. Labels: magic `0x00000801`, count, then `count`
//! bytes. Files may be gzipped (`.gz`). Every check names the file and the fix.

use std::io::Read;
use std::path::{Path, PathBuf};

use super::{DataError, ImageSet};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Parses an IDX image file: `(count, rows, cols, pixels)`.
pub fn parse_images(bytes: &[u8]) -> Result<(usize, usize, usize, Vec<u8>), String> {
    let magic = be_u32(bytes, 0).ok_or("shorter than the 16-byte IDX image header")?;
    if magic != IMAGES_MAGIC {
        return Err(format!(
            "wrong magic number 0x{magic:08x} (expected 0x{IMAGES_MAGIC:08x} for IDX images)"
        ));
    }
    let (n, rows, cols) = match (be_u32(bytes, 4), be_u32(bytes, 8), be_u32(bytes, 12)) {
        (Some(n), Some(r), Some(c)) => (n as usize, r as usize, c as usize),
        _ => return Err("shorter than the 16-byte IDX image header".into()),
    };
    let expected = n
        .checked_mul(rows)
        .and_then(|x| x.checked_mul(cols))
        .ok_or("header sizes overflow")?;
    let body = &bytes[16..];
    if body.len() != expected {
        return Err(format!(
            "wrong size: header says {n} images of {rows}x{cols} = {expected} bytes, file has {} (truncated or corrupt)",
            body.len()
        ));
    }
    Ok((n, rows, cols, body.to_vec()))
}

/// Parses an IDX label file.
pub fn parse_labels(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let magic = be_u32(bytes, 0).ok_or("shorter than the 8-byte IDX label header")?;
    if magic != LABELS_MAGIC {
        return Err(format!(
            "wrong magic number 0x{magic:08x} (expected 0x{LABELS_MAGIC:08x} for IDX labels)"
        ));
    }
    let n = be_u32(bytes, 4).ok_or("shorter than the 8-byte IDX label header")? as usize;
    let body = &bytes[8..];
    if body.len() != n {
        return Err(format!(
            "wrong size: header says {n} labels, file has {} (truncated or corrupt)",
            body.len()
        ));
    }
    Ok(body.to_vec())
}

/// Reads `dir/name` or `dir/name.gz`, un-gzipping as needed.
pub fn read_maybe_gz(dir: &Path, name: &str) -> Result<(PathBuf, Vec<u8>), DataError> {
    let plain = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    let (path, gzipped) = if plain.is_file() {
        (plain, false)
    } else if gz.is_file() {
        (gz, true)
    } else {
        return Err(DataError::Missing(format!("{} (or .gz) not found", plain.display())));
    };
    let raw = std::fs::read(&path).map_err(|e| DataError::Io {
        path: path.clone(),
        source: e,
    })?;
    if !gzipped {
        return Ok((path, raw));
    }
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(raw.as_slice())
        .read_to_end(&mut out)
        .map_err(|e| DataError::Corrupt {
            path: path.clone(),
            detail: format!("not a valid gzip file ({e}); delete it and fetch it again"),
        })?;
    Ok((path, out))
}

/// Loads one split (`train` or `t10k`) from `dir`.
pub fn load_split(
    dir: &Path,
    prefix: &str,
    name: &str,
    classes: &[&str],
    mean: f32,
    std: f32,
) -> Result<ImageSet, DataError> {
    let (ipath, ibytes) = read_maybe_gz(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let (n, rows, cols, pixels) = parse_images(&ibytes).map_err(|detail| DataError::Corrupt {
        path: ipath.clone(),
        detail: format!("{detail}; replace the file"),
    })?;
    let (lpath, lbytes) = read_maybe_gz(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let labels = parse_labels(&lbytes).map_err(|detail| DataError::Corrupt {
        path: lpath.clone(),
        detail: format!("{detail}; replace the file"),
    })?;
    if labels.len() != n {
        return Err(DataError::Corrupt {
            path: lpath,
            detail: format!(
                "{} labels for {n} images in {}; the two files do not belong together",
                labels.len(),
                ipath.display()
            ),
        });
    }
    if let Some(bad) = labels.iter().find(|l| usize::from(**l) >= classes.len()) {
        return Err(DataError::Corrupt {
            path: lpath,
            detail: format!("label {bad} is not one of the {} classes", classes.len()),
        });
    }
    Ok(ImageSet {
        name: name.to_string(),
        shape: [1, rows, cols],
        pixels,
        labels: labels.into_iter().map(u16::from).collect(),
        classes: classes.iter().map(|c| c.to_string()).collect(),
        mean: vec![mean],
        std: vec![std],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(n: u32, r: u32, c: u32, body: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [IMAGES_MAGIC, n, r, c] {
            v.extend(x.to_be_bytes());
        }
        v.extend(std::iter::repeat_n(7u8, body));
        v
    }

    #[test]
    fn good_and_bad_image_files() {
        let (n, r, c, px) = parse_images(&images(2, 3, 4, 24)).unwrap();
        assert_eq!((n, r, c, px.len()), (2, 3, 4, 24));
        assert!(parse_images(&images(2, 3, 4, 23)).unwrap_err().contains("truncated"));
        let mut wrong = images(2, 3, 4, 24);
        wrong[3] = 0x01;
        assert!(parse_images(&wrong).unwrap_err().contains("magic"));
        assert!(parse_images(&[0, 0]).unwrap_err().contains("header"));
        assert!(parse_images(&images(u32::MAX, u32::MAX, u32::MAX, 0)).is_err());
    }

    #[test]
    fn good_and_bad_label_files() {
        let mut v = Vec::new();
        v.extend(LABELS_MAGIC.to_be_bytes());
        v.extend(3u32.to_be_bytes());
        v.extend([1u8, 2, 3]);
        assert_eq!(parse_labels(&v).unwrap(), vec![1, 2, 3]);
        assert!(parse_labels(&v[..10]).unwrap_err().contains("truncated"));
        assert!(parse_labels(&images(1, 1, 1, 1)).unwrap_err().contains("magic"));
    }
}
