//! Checksums of a checkpoint's files: a SHA-256 of each (the `sha2` crate, of
//! RustCrypto), recorded in `checksums.json` inside the checkpoint folder after
//! every other file is written and flushed, and verified before a resume reads
//! anything. The folder is swapped in whole by renames, so the checksums are
//! always those of the files next to them; a flipped bit, a cut-short file, a
//! missing or an extra file stops the resume with the file's name.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use crate::run::artifacts::write_atomic;

/// The checksum file of a checkpoint folder.
pub const CHECKSUMS: &str = "checksums.json";

/// The SHA-256 of `path`, in hex.
fn sha256(path: &Path) -> anyhow::Result<String> {
    let mut file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The names of the files of `folder` (not the checksum file).
fn files(folder: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(folder).with_context(|| format!("reading {}", folder.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name != CHECKSUMS {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Flushes every file of `folder` to disk and records their checksums.
pub fn record(folder: &Path) -> anyhow::Result<()> {
    let mut sums = BTreeMap::new();
    for name in files(folder)? {
        let path = folder.join(&name);
        std::fs::File::open(&path)
            .and_then(|f| f.sync_all())
            .with_context(|| format!("flushing {}", path.display()))?;
        sums.insert(name, sha256(&path)?);
    }
    write_atomic(&folder.join(CHECKSUMS), serde_json::to_string_pretty(&sums)?.as_bytes())
}

/// Checks every file of `folder` against its recorded checksum.
pub fn verify(folder: &Path) -> anyhow::Result<()> {
    let damaged = |what: String| {
        anyhow::anyhow!(
            "{}: {what}; the checkpoint cannot be trusted: start the run again in another --out (or restore the file)",
            folder.display()
        )
    };
    let text = std::fs::read_to_string(folder.join(CHECKSUMS)).map_err(|_| {
        damaged(format!(
            "{CHECKSUMS} is missing (damaged, or written by a sparseburn without checksums)"
        ))
    })?;
    let sums: BTreeMap<String, String> =
        serde_json::from_str(&text).map_err(|e| damaged(format!("{CHECKSUMS} is not readable ({e})")))?;
    let present = files(folder)?;
    if let Some(extra) = present.iter().find(|n| !sums.contains_key(*n)) {
        bail!(damaged(format!("`{extra}` is not in {CHECKSUMS}")));
    }
    for (name, want) in &sums {
        if !present.contains(name) {
            bail!(damaged(format!("`{name}` is missing")));
        }
        if &sha256(&folder.join(name))? != want {
            bail!(damaged(format!(
                "`{name}` was changed or damaged after it was written (its SHA-256 differs)"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_abc_is_the_fips_180_2_value() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("abc"), "abc").unwrap();
        // FIPS 180-2, appendix B.1
        assert_eq!(
            sha256(&tmp.path().join("abc")).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_flipped_bit_a_missing_file_and_an_extra_file_are_caught() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path();
        std::fs::write(f.join("model.bpk"), [1u8, 2, 3, 4]).unwrap();
        std::fs::write(f.join("trainer.json"), "{}").unwrap();
        record(f).unwrap();
        verify(f).unwrap();

        std::fs::write(f.join("model.bpk"), [1u8, 2, 3, 5]).unwrap();
        let e = verify(f).unwrap_err().to_string();
        assert!(e.contains("model.bpk") && e.contains("SHA-256"), "{e}");
        std::fs::write(f.join("model.bpk"), [1u8, 2, 3, 4]).unwrap();

        std::fs::write(f.join("extra"), "").unwrap();
        assert!(verify(f).unwrap_err().to_string().contains("`extra`"));
        std::fs::remove_file(f.join("extra")).unwrap();

        std::fs::remove_file(f.join("trainer.json")).unwrap();
        assert!(verify(f).unwrap_err().to_string().contains("`trainer.json` is missing"));

        std::fs::remove_file(f.join(CHECKSUMS)).unwrap();
        assert!(verify(f).unwrap_err().to_string().contains("missing"));
    }
}
