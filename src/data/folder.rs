//! Image folders: `root/train/<class>/*.png|jpg|jpeg|bmp…` and the same under
//! `root/test/` (or `root/val/`). Class names are the subfolder names of
//! `train/`, sorted.
//!
//! Images are decoded with the `image` crate, converted to RGB (or grayscale
//! with `channels = 1`) and resized to `size × size`, then kept in memory. An
//! unreadable or undecodable file is skipped with a warning (listed in the run
//! log) unless `strict` is set, in which case it stops the load with an error
//! naming the file.
//!
//! Checked before any image is decoded: the side (1 to
//! [`MAX_IMAGE_SIDE`](super::limits::MAX_IMAGE_SIDE)) and channels (1 or 3), at
//! least 2 train classes, no test class that train lacks, and the memory the
//! decoded images will take ([`MAX_SPLIT_BYTES`](super::limits::MAX_SPLIT_BYTES)).
//! A train class without images is an error; a train class without test images
//! is a warning (its accuracy is not measured). A limit on the number of images
//! takes them from every class in turn, not from the first classes only.

use std::path::{Path, PathBuf};

use super::limits::{MAX_CLASSES, MAX_IMAGE_SIDE, check_side, check_split_bytes};
use super::{DataError, ImageSet};

const EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "bmp", "gif", "webp"];

/// Checks the image side and the channels of image-folder settings.
pub fn check_settings(size: usize, channels: usize) -> Result<(), DataError> {
    check_side("--image-size", size).map_err(|e| {
        DataError::Invalid(format!(
            "{e}; pass --image-size between 1 and {MAX_IMAGE_SIDE} (e.g. 32 or 224)"
        ))
    })?;
    if channels != 1 && channels != 3 {
        return Err(DataError::Invalid(format!(
            "--channels is {channels}; image folders need --channels 1 (grayscale) or 3 (RGB)"
        )));
    }
    Ok(())
}

/// Decodes one image into `[C, size, size]` bytes.
pub fn decode(bytes: &[u8], size: usize, channels: usize) -> Result<Vec<u8>, String> {
    check_settings(size, channels).map_err(|e| e.to_string())?;
    let img = image::load_from_memory(bytes).map_err(|e| e.to_string())?;
    let img = img.resize_exact(size as u32, size as u32, image::imageops::FilterType::Triangle);
    Ok(match channels {
        1 => img.to_luma8().into_raw(),
        _ => {
            let rgb = img.to_rgb8();
            let mut out = vec![0u8; 3 * size * size];
            for (i, px) in rgb.pixels().enumerate() {
                for c in 0..3 {
                    out[c * size * size + i] = px[c];
                }
            }
            out
        }
    })
}

fn split_dir(root: &Path, train: bool) -> Result<PathBuf, DataError> {
    let names: &[&str] = if train { &["train"] } else { &["test", "val"] };
    names
        .iter()
        .map(|n| root.join(n))
        .find(|p| p.is_dir())
        .ok_or_else(|| DataError::Missing(format!("{} has no {} folder", root.display(), names.join(" or "))))
}

/// Class folders of a split, sorted by name (possibly none).
fn class_folders(dir: &Path) -> Result<Vec<String>, DataError> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

/// The classes of a train split: at least 2, at most [`MAX_CLASSES`].
fn check_train_classes(dir: &Path, names: &[String]) -> Result<(), DataError> {
    match names.len() {
        0 => Err(DataError::Missing(format!("{} has no class subfolders", dir.display()))),
        1 => Err(DataError::Invalid(format!(
            "{} has only one class folder (`{}`); a classifier needs at least 2 classes: add a subfolder of images for each class",
            dir.display(),
            names[0]
        ))),
        n if n > MAX_CLASSES => Err(DataError::Invalid(format!(
            "{} has {n} class folders, more than the {MAX_CLASSES} sparseburn supports",
            dir.display()
        ))),
        _ => Ok(()),
    }
}

/// A test split may not hold a class that train lacks: the model has no output for it.
fn check_test_classes(dir: &Path, found: &[String], train: &[String]) -> Result<(), DataError> {
    let extra: Vec<&str> = found
        .iter()
        .filter(|c| !train.contains(c))
        .map(String::as_str)
        .collect();
    if extra.is_empty() {
        return Ok(());
    }
    Err(DataError::Invalid(format!(
        "{} has class folder(s) `{}` that the train folder lacks, so the model cannot predict them: add train images of those classes or remove the test folders",
        dir.display(),
        extra.join("`, `")
    )))
}

/// Image files of a class folder, sorted (a missing folder has none).
fn image_files(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(DataError::io(dir, e)),
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// How many of each class's `available` images to take so that `limit`
/// images (0 = all) come from every class in turn.
pub fn quotas(available: &[usize], limit: usize) -> Vec<usize> {
    let total: usize = available.iter().sum();
    if limit == 0 || limit >= total {
        return available.to_vec();
    }
    let (mut take, mut left) = (vec![0; available.len()], limit);
    while left > 0 {
        for (t, a) in take.iter_mut().zip(available) {
            if left > 0 && *t < *a {
                *t += 1;
                left -= 1;
            }
        }
    }
    take
}

/// Loads a split. `classes_of_train` fixes the class order for the test split.
pub fn load(
    root: &Path,
    train: bool,
    size: usize,
    channels: usize,
    strict: bool,
    classes_of_train: Option<&[String]>,
) -> Result<ImageSet, DataError> {
    load_limited(root, train, size, channels, strict, classes_of_train, 0)
}

/// [`load`] with at most `limit` images (0 = all), taken from every class in turn.
pub fn load_limited(
    root: &Path,
    train: bool,
    size: usize,
    channels: usize,
    strict: bool,
    classes_of_train: Option<&[String]>,
    limit: usize,
) -> Result<ImageSet, DataError> {
    check_settings(size, channels)?;
    let dir = split_dir(root, train)?;
    let found = class_folders(&dir)?;
    let names = match classes_of_train {
        None => {
            check_train_classes(&dir, &found)?;
            found
        }
        Some(train_classes) => {
            check_test_classes(&dir, &found, train_classes)?;
            train_classes.to_vec()
        }
    };
    let files = names
        .iter()
        .map(|c| image_files(&dir.join(c)))
        .collect::<Result<Vec<_>, _>>()?;
    let take = quotas(&files.iter().map(Vec::len).collect::<Vec<_>>(), limit);
    let total: usize = take.iter().sum();
    let shape = [channels, size, size];
    check_split_bytes(total, shape).map_err(|e| {
        DataError::Invalid(format!(
            "{}: {e}; use a smaller --image-size, or --train-limit / --test-limit",
            dir.display()
        ))
    })?;
    let mut pixels = Vec::new();
    pixels
        .try_reserve_exact(total * channels * size * size)
        .map_err(|_| DataError::Invalid(format!("{}: not enough memory for {total} images", dir.display())))?;
    let (mut labels, mut per_class, mut skipped) = (Vec::with_capacity(total), vec![0usize; names.len()], 0usize);
    for (label, (class_files, n)) in files.into_iter().zip(&take).enumerate() {
        for path in class_files.into_iter().take(*n) {
            let decoded = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| decode(&b, size, channels));
            match decoded {
                Ok(px) => {
                    pixels.extend(px);
                    labels.push(label as u16); // < MAX_CLASSES = 2^16: checked above
                    per_class[label] += 1;
                }
                Err(e) if strict => {
                    return Err(DataError::Corrupt {
                        path,
                        detail: format!(
                            "cannot decode the image ({e}); remove it or run without --strict-images to skip it"
                        ),
                    });
                }
                Err(e) => {
                    skipped += 1;
                    tracing::warn!(file = %path.display(), error = %e, "skipping an unreadable image");
                }
            }
        }
    }
    if labels.is_empty() {
        return Err(DataError::Missing(format!(
            "{} contains no readable images",
            dir.display()
        )));
    }
    if skipped > 0 {
        tracing::warn!(skipped, split = %dir.display(), "unreadable images skipped");
    }
    check_every_class_has_images(&dir, &names, &per_class, train, limit)?;
    let mut set = ImageSet {
        name: format!("folder/{}", if train { "train" } else { "test" }),
        shape,
        pixels,
        labels,
        classes: names,
        mean: vec![0.0; channels],
        std: vec![1.0; channels],
    };
    let (mean, std) = channel_stats(&set);
    set.mean = mean;
    set.std = std;
    Ok(set)
}

/// A train class without images is an error (the model could never learn it);
/// a class without test images is a warning (its accuracy is not measured).
fn check_every_class_has_images(
    dir: &Path,
    names: &[String],
    per_class: &[usize],
    train: bool,
    limit: usize,
) -> Result<(), DataError> {
    let empty: Vec<&str> = names
        .iter()
        .zip(per_class)
        .filter(|(_, n)| **n == 0)
        .map(|(c, _)| c.as_str())
        .collect();
    if empty.is_empty() {
        return Ok(());
    }
    let list = empty.join("`, `");
    let hint = if limit > 0 && limit < names.len() {
        format!(" (the limit of {limit} images is below the {} classes)", names.len())
    } else {
        String::new()
    };
    if train {
        return Err(DataError::Invalid(format!(
            "{}: no readable images of class(es) `{list}`{hint}; add images there or remove those class folders",
            dir.display()
        )));
    }
    tracing::warn!(
        "{}: no test images of class(es) `{list}`{hint}; the test accuracy does not measure those classes",
        dir.display()
    );
    Ok(())
}

/// Per-channel mean and standard deviation of the pixels in `[0, 1]`.
pub fn channel_stats(set: &ImageSet) -> (Vec<f32>, Vec<f32>) {
    let [c, h, w] = set.shape;
    let plane = h * w;
    (0..c)
        .map(|ch| {
            let (mut s, mut s2, mut n) = (0f64, 0f64, 0f64);
            for i in 0..set.len() {
                for &p in &set.image(i)[ch * plane..(ch + 1) * plane] {
                    let v = f64::from(p) / 255.0;
                    s += v;
                    s2 += v * v;
                    n += 1.0;
                }
            }
            let mean = s / n.max(1.0);
            let std = (s2 / n.max(1.0) - mean * mean).max(1e-12).sqrt();
            (mean as f32, std as f32)
        })
        .unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(path: &Path, shade: u8) {
        image::RgbImage::from_pixel(4, 4, image::Rgb([shade, 0, 0]))
            .save(path)
            .unwrap();
    }

    /// `root/<split>/<class>/` with `n` images each.
    fn tree(root: &Path, split: &str, classes: &[(&str, usize)]) {
        for (c, n) in classes {
            let d = root.join(split).join(c);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..*n {
                png(&d.join(format!("{i}.png")), 10 * i as u8);
            }
        }
    }

    #[test]
    fn quotas_take_every_class_in_turn() {
        assert_eq!(quotas(&[6, 6], 0), vec![6, 6]);
        assert_eq!(quotas(&[6, 6], 4), vec![2, 2]);
        assert_eq!(quotas(&[1, 6, 6], 6), vec![1, 3, 2]);
        assert_eq!(quotas(&[3, 3], 100), vec![3, 3]);
    }

    #[test]
    fn sides_and_channels_are_checked_before_decoding() {
        let mut bytes = Vec::new();
        image::RgbImage::from_pixel(4, 4, image::Rgb([1, 2, 3]))
            .write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageOutputFormat::Png)
            .unwrap();
        assert_eq!(decode(&bytes, 2, 3).unwrap().len(), 12);
        assert!(decode(&bytes, 0, 3).unwrap_err().contains("--image-size is 0"));
        assert!(
            decode(&bytes, MAX_IMAGE_SIDE + 1, 1)
                .unwrap_err()
                .contains("1024-pixel limit")
        );
        assert!(decode(&bytes, 2, 2).unwrap_err().contains("--channels is 2"));
    }

    #[test]
    fn classes_must_match_between_the_splits() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        tree(root, "train", &[("cat", 2), ("dog", 2)]);
        tree(root, "test", &[("cat", 1), ("dog", 1), ("zebra", 1)]);
        let train = load(root, true, 4, 3, true, None).unwrap();
        assert_eq!(train.classes, ["cat", "dog"]);
        let err = load(root, false, 4, 3, true, Some(&train.classes))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`zebra`") && err.contains("train folder lacks"), "{err}");
        std::fs::remove_dir_all(root.join("test/zebra")).unwrap();
        std::fs::remove_dir_all(root.join("test/dog")).unwrap();
        let test = load(root, false, 4, 3, true, Some(&train.classes)).unwrap();
        assert_eq!(test.labels, vec![0]);
    }

    #[test]
    fn one_class_or_an_empty_train_class_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        tree(tmp.path(), "train", &[("cat", 2)]);
        let err = load(tmp.path(), true, 4, 1, false, None).unwrap_err().to_string();
        assert!(err.contains("at least 2 classes") && err.contains("`cat`"), "{err}");
        tree(tmp.path(), "train", &[("dog", 0)]);
        let err = load(tmp.path(), true, 4, 1, false, None).unwrap_err().to_string();
        assert!(err.contains("no readable images of class(es) `dog`"), "{err}");
    }

    #[test]
    fn a_limit_takes_images_of_every_class() {
        let tmp = tempfile::tempdir().unwrap();
        tree(tmp.path(), "train", &[("a", 3), ("b", 3), ("c", 3)]);
        let set = load_limited(tmp.path(), true, 4, 1, true, None, 5).unwrap();
        assert_eq!(set.labels, vec![0, 0, 1, 1, 2]);
        let err = load_limited(tmp.path(), true, 4, 1, true, None, 2)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`c`") && err.contains("below the 3 classes"), "{err}");
    }
}
