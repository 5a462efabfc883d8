//! Image folders: `root/train/<class>/*.png|jpg|jpeg|bmp…` and the same under
//! `root/test/` (or `root/val/`). Class names are the subfolder names, sorted.
//!
//! Images are decoded with the `image` crate, converted to RGB (or grayscale
//! with `channels = 1`) and resized to `size × size`, then kept in memory. An
//! unreadable or undecodable file is skipped with a warning (listed in the run
//! log) unless `strict` is set, in which case it stops the load with an error
//! naming the file.

use std::path::{Path, PathBuf};

use super::{DataError, ImageSet};

const EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "bmp", "gif", "webp"];

/// Decodes one image into `[C, size, size]` bytes.
pub fn decode(bytes: &[u8], size: usize, channels: usize) -> Result<Vec<u8>, String> {
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

/// Class folders of a split, sorted by name.
fn classes(dir: &Path) -> Result<Vec<String>, DataError> {
    let io = |e| DataError::Io {
        path: dir.to_path_buf(),
        source: e,
    };
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(DataError::Missing(format!("{} has no class subfolders", dir.display())));
    }
    Ok(names)
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
    let dir = split_dir(root, train)?;
    let names = match classes_of_train {
        Some(c) => c.to_vec(),
        None => classes(&dir)?,
    };
    let (mut pixels, mut labels, mut skipped) = (Vec::new(), Vec::new(), 0usize);
    for (label, class) in names.iter().enumerate() {
        let class_dir = dir.join(class);
        let Ok(entries) = std::fs::read_dir(&class_dir) else {
            continue; // a class missing from the test split
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
        for path in files {
            let decoded = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| decode(&b, size, channels));
            match decoded {
                Ok(px) => {
                    pixels.extend(px);
                    labels.push(label as u16);
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
    let mut set = ImageSet {
        name: format!("folder/{}", if train { "train" } else { "test" }),
        shape: [channels, size, size],
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
