//! Fetching datasets for users with internet access (`--download`), with the
//! official URLs, through `curl` or `wget` (no HTTP stack is compiled in).
//! Nothing downloads unless asked.

use std::path::Path;
use std::process::Command;

use super::DataError;

/// Fashion-MNIST (Zalando Research).
pub const FASHION_MNIST: &str = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com";
/// MNIST mirror used by PyTorch and TensorFlow.
pub const MNIST: &str = "https://storage.googleapis.com/cvdf-datasets/mnist";
/// CIFAR-10 binary version (Krizhevsky).
pub const CIFAR10: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";

/// The four IDX file names.
pub const IDX_FILES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

fn fetch(url: &str, to: &Path) -> Result<(), DataError> {
    let tmp = to.with_extension("part");
    let attempts: [(&str, Vec<&str>); 2] = [
        (
            "curl",
            vec!["-fL", "--retry", "3", "-o", tmp.to_str().unwrap_or_default(), url],
        ),
        ("wget", vec!["-q", "-O", tmp.to_str().unwrap_or_default(), url]),
    ];
    for (tool, args) in attempts {
        match Command::new(tool).args(&args).status() {
            Ok(s) if s.success() => {
                return std::fs::rename(&tmp, to).map_err(|e| DataError::io(to.to_path_buf(), e));
            }
            Ok(_) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(DataError::Missing(format!("downloading {url} failed (no network?)")));
            }
            Err(_) => continue, // tool not installed
        }
    }
    Err(DataError::Missing("--download needs curl or wget on the PATH".into()))
}

/// Downloads the four IDX files from `base` into `dir` (skipping present ones).
pub fn idx(base: &str, dir: &Path) -> Result<(), DataError> {
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir.to_path_buf(), e))?;
    for f in IDX_FILES {
        let to = dir.join(f);
        if !to.exists() {
            tracing::info!(url = %format!("{base}/{f}"), "downloading");
            fetch(&format!("{base}/{f}"), &to)?;
        }
    }
    Ok(())
}

/// Downloads and unpacks CIFAR-10 (binary) into `dir`.
pub fn cifar10(dir: &Path) -> Result<(), DataError> {
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir.to_path_buf(), e))?;
    let archive = dir.join("cifar-10-binary.tar.gz");
    if !archive.exists() {
        tracing::info!(url = CIFAR10, "downloading");
        fetch(CIFAR10, &archive)?;
    }
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&archive)
        .arg("-C")
        .arg(dir)
        .status();
    match status {
        Ok(s) if s.success() => Ok(()),
        _ => Err(DataError::Corrupt {
            path: archive,
            detail: "could not unpack the archive with tar; delete it and download again".into(),
        }),
    }
}
