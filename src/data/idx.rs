//! MNIST-family IDX files (LeCun et al.): Fashion-MNIST and MNIST.
//!
//! Images: big-endian magic `0x00000803`, count, rows, columns, then
//! `count·rows·cols` bytes. Labels: magic `0x00000801`, count, then `count`
//! bytes. Files may be gzipped (`.gz`).
//!
//! Both headers are read and checked before either body: zero or absurd sides,
//! more memory than [`MAX_SPLIT_BYTES`](super::limits::MAX_SPLIT_BYTES), a
//! plain file of the wrong length, and image and label counts that differ are
//! refused without reading further. A body is then read as a stream and never
//! past the size its header declares (a gzip file that unpacks to more is
//! refused after one byte too many). Every check names the file and the fix.

use std::io::Read;
use std::path::Path;

use super::input::{open_maybe_gz, read_declared, read_header};
use super::limits::{MAX_IMAGE_SIDE, check_split_bytes};
use super::{DataError, ImageSet};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;
const IMAGES_SHORT: &str = "shorter than the 16-byte IDX image header";
const LABELS_SHORT: &str = "shorter than the 8-byte IDX label header";

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// The header of an IDX image file, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImagesHeader {
    /// Images.
    pub count: usize,
    /// Rows of an image.
    pub rows: usize,
    /// Columns of an image.
    pub cols: usize,
}

impl ImagesHeader {
    /// Parses and checks the 16-byte header: the magic number, sides of 1 to
    /// [`MAX_IMAGE_SIDE`] pixels, and a body that fits the memory cap.
    pub fn parse(header: &[u8; 16]) -> Result<Self, String> {
        let magic = be_u32(header, 0);
        if magic != IMAGES_MAGIC {
            return Err(format!(
                "wrong magic number 0x{magic:08x} (expected 0x{IMAGES_MAGIC:08x} for IDX images)"
            ));
        }
        let [count, rows, cols] = [4, 8, 12].map(|at| be_u32(header, at) as usize);
        if rows == 0 || cols == 0 {
            return Err(format!(
                "the header declares images of {rows}x{cols} pixels; an image has at least 1x1 (corrupt file)"
            ));
        }
        if rows > MAX_IMAGE_SIDE || cols > MAX_IMAGE_SIDE {
            return Err(format!(
                "the header declares images of {rows}x{cols} pixels, more than the {MAX_IMAGE_SIDE}-pixel limit on a side (corrupt, or not an MNIST-style file)"
            ));
        }
        check_split_bytes(count, [1, rows, cols]).map_err(|e| format!("the header declares {e} (corrupt file?)"))?;
        Ok(Self { count, rows, cols })
    }

    /// Bytes of the body (fits in memory: checked by [`Self::parse`]).
    pub fn body_len(&self) -> usize {
        self.count * self.rows * self.cols
    }

    fn describe(&self) -> String {
        format!("{} images of {}x{}", self.count, self.rows, self.cols)
    }
}

/// Parses and checks the 8-byte header of an IDX label file: the label count.
pub fn labels_header(header: &[u8; 8]) -> Result<usize, String> {
    let magic = be_u32(header, 0);
    if magic != LABELS_MAGIC {
        return Err(format!(
            "wrong magic number 0x{magic:08x} (expected 0x{LABELS_MAGIC:08x} for IDX labels)"
        ));
    }
    Ok(be_u32(header, 4) as usize)
}

/// Reads an IDX image file from a stream: the header, then exactly its body.
pub fn read_images(input: &mut dyn Read) -> Result<(ImagesHeader, Vec<u8>), String> {
    let header = ImagesHeader::parse(&read_header(input, IMAGES_SHORT)?)?;
    let body = read_declared(input, header.body_len(), &header.describe())?;
    Ok((header, body))
}

/// Reads an IDX label file from a stream: the header, then exactly its body.
pub fn read_labels(input: &mut dyn Read) -> Result<Vec<u8>, String> {
    let n = labels_header(&read_header(input, LABELS_SHORT)?)?;
    read_declared(input, n, &format!("{n} labels"))
}

/// Parses an IDX image file in memory: `(count, rows, cols, pixels)`.
pub fn parse_images(mut bytes: &[u8]) -> Result<(usize, usize, usize, Vec<u8>), String> {
    let (h, pixels) = read_images(&mut bytes)?;
    Ok((h.count, h.rows, h.cols, pixels))
}

/// Parses an IDX label file in memory.
pub fn parse_labels(mut bytes: &[u8]) -> Result<Vec<u8>, String> {
    read_labels(&mut bytes)
}

/// A plain file must be exactly header + body long; checked before the body is read.
fn check_plain_len(plain_len: Option<u64>, header: usize, body: usize, what: &str) -> Result<(), String> {
    match plain_len {
        Some(len) if len != (header + body) as u64 => Err(format!(
            "wrong size: the header declares {what} = {} bytes with the header, the file has {len} (truncated or corrupt)",
            header + body
        )),
        _ => Ok(()),
    }
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
    let corrupt = |path: &Path| {
        let path = path.to_path_buf();
        move |detail: String| DataError::Corrupt {
            path: path.clone(),
            detail: format!("{detail}; replace the file"),
        }
    };
    let mut images = open_maybe_gz(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let to_images_error = corrupt(&images.path);
    let header = read_header(&mut images.reader, IMAGES_SHORT)
        .and_then(|h| ImagesHeader::parse(&h))
        .and_then(|h| check_plain_len(images.plain_len, 16, h.body_len(), &h.describe()).map(|()| h))
        .map_err(&to_images_error)?;
    let mut labels = open_maybe_gz(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let to_labels_error = corrupt(&labels.path);
    let n_labels = read_header(&mut labels.reader, LABELS_SHORT)
        .and_then(|h| labels_header(&h))
        .map_err(&to_labels_error)?;
    if n_labels != header.count {
        return Err(DataError::Corrupt {
            path: labels.path,
            detail: format!(
                "{n_labels} labels for the {} images of {}; the two files do not belong together, replace them",
                header.count,
                images.path.display()
            ),
        });
    }
    check_plain_len(labels.plain_len, 8, n_labels, &format!("{n_labels} labels")).map_err(&to_labels_error)?;
    let pixels = read_declared(&mut images.reader, header.body_len(), &header.describe()).map_err(&to_images_error)?;
    let labels_body =
        read_declared(&mut labels.reader, n_labels, &format!("{n_labels} labels")).map_err(&to_labels_error)?;
    if let Some((i, bad)) = labels_body
        .iter()
        .enumerate()
        .find(|(_, l)| usize::from(**l) >= classes.len())
    {
        return Err(DataError::Corrupt {
            path: labels.path,
            detail: format!(
                "image {i} has label {bad}, but {name} has {} classes (labels 0 to {}); the file is corrupt or belongs to another dataset, replace it",
                classes.len(),
                classes.len() - 1
            ),
        });
    }
    Ok(ImageSet {
        name: name.to_string(),
        shape: [1, header.rows, header.cols],
        pixels,
        labels: labels_body.into_iter().map(u16::from).collect(),
        classes: classes.iter().map(|c| c.to_string()).collect(),
        mean: vec![mean],
        std: vec![std],
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn images(n: u32, r: u32, c: u32, body: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [IMAGES_MAGIC, n, r, c] {
            v.extend(x.to_be_bytes());
        }
        v.extend(std::iter::repeat_n(7u8, body));
        v
    }

    fn labels(values: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend(LABELS_MAGIC.to_be_bytes());
        v.extend((values.len() as u32).to_be_bytes());
        v.extend(values);
        v
    }

    #[test]
    fn good_and_bad_image_files() {
        let (n, r, c, px) = parse_images(&images(2, 3, 4, 24)).unwrap();
        assert_eq!((n, r, c, px.len()), (2, 3, 4, 24));
        assert!(parse_images(&images(2, 3, 4, 23)).unwrap_err().contains("truncated"));
        assert!(parse_images(&images(2, 3, 4, 25)).unwrap_err().contains("more than"));
        let mut wrong = images(2, 3, 4, 24);
        wrong[3] = 0x01;
        assert!(parse_images(&wrong).unwrap_err().contains("magic"));
        assert!(parse_images(&[0, 0]).unwrap_err().contains("header"));
        assert!(parse_images(&images(u32::MAX, u32::MAX, u32::MAX, 0)).is_err());
    }

    #[test]
    fn zero_and_absurd_sides_are_refused_from_the_header_alone() {
        for (r, c) in [(0, 0), (0, 28), (28, 0)] {
            let err = parse_images(&images(5, r, c, 0)).unwrap_err();
            assert!(
                err.contains(&format!("{r}x{c}")) && err.contains("at least 1x1"),
                "{err}"
            );
        }
        let err = parse_images(&images(1, 100_000, 28, 0)).unwrap_err();
        assert!(err.contains("1024-pixel limit"), "{err}");
        // 4e9 images of 28x28: 2.9 TiB, refused before any body byte is read
        let err = parse_images(&images(4_000_000_000, 28, 28, 0)).unwrap_err();
        assert!(err.contains("TiB") && err.contains("16.0 GiB"), "{err}");
    }

    #[test]
    fn good_and_bad_label_files() {
        assert_eq!(parse_labels(&labels(&[1, 2, 3])).unwrap(), vec![1, 2, 3]);
        assert!(
            parse_labels(&labels(&[1, 2, 3])[..10])
                .unwrap_err()
                .contains("truncated")
        );
        assert!(parse_labels(&images(1, 1, 1, 1)).unwrap_err().contains("magic"));
    }

    fn write_split(dir: &Path, images_file: &[u8], labels_file: &[u8], gz: bool) {
        for (name, bytes) in [
            ("train-images-idx3-ubyte", images_file),
            ("train-labels-idx1-ubyte", labels_file),
        ] {
            if gz {
                let f = std::fs::File::create(dir.join(format!("{name}.gz"))).unwrap();
                let mut e = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
                e.write_all(bytes).unwrap();
                e.finish().unwrap();
            } else {
                std::fs::write(dir.join(name), bytes).unwrap();
            }
        }
    }

    fn load(dir: &Path) -> Result<ImageSet, DataError> {
        load_split(dir, "train", "digits/train", &["0", "1", "2"], 0.5, 0.5)
    }

    #[test]
    fn a_label_beyond_the_classes_names_the_image() {
        let tmp = tempfile::tempdir().unwrap();
        write_split(tmp.path(), &images(4, 2, 2, 16), &labels(&[0, 1, 7, 2]), true);
        let err = load(tmp.path()).unwrap_err().to_string();
        assert!(
            err.contains("train-labels-idx1-ubyte.gz")
                && err.contains("image 2 has label 7")
                && err.contains("3 classes"),
            "{err}"
        );
        write_split(tmp.path(), &images(4, 2, 2, 16), &labels(&[0, 1, 2, 2]), true);
        let set = load(tmp.path()).unwrap();
        assert_eq!((set.len(), set.shape), (4, [1, 2, 2]));
    }

    #[test]
    fn counts_that_differ_are_refused_before_any_body_is_read() {
        let tmp = tempfile::tempdir().unwrap();
        // the label body is cut short too: a body read would report that instead
        let mut short_labels = labels(&[0, 1, 2]);
        short_labels.truncate(9);
        write_split(tmp.path(), &images(4, 2, 2, 16), &short_labels, false);
        let err = load(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("3 labels for the 4 images"), "{err}");
        // a plain file of the wrong length is refused from its metadata
        write_split(tmp.path(), &images(4, 2, 2, 15), &labels(&[0, 1, 2, 0]), false);
        let err = load(tmp.path()).unwrap_err().to_string();
        assert!(
            err.contains("train-images-idx3-ubyte:") && err.contains("the file has 31"),
            "{err}"
        );
    }
}
