//! Data files as streams, plain or gzipped, so a parser reads and checks a
//! header before it reads a body, and never reads more than the header
//! declares. Decompression streams through `flate2` (the gzip crate already
//! used across the Rust ecosystem): a small `.gz` that would unpack to
//! gigabytes is stopped after the declared size.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::DataError;

/// Bytes grown at a time while reading a body whose length is not yet known
/// to be present (a body is never reserved beyond what has arrived, doubled).
const CHUNK: usize = 1 << 20;

/// An opened data file.
pub struct DataFile {
    /// The file.
    pub path: PathBuf,
    /// Its length on disk when it is not compressed (the length of a gzip
    /// file's content is only known once it is read).
    pub plain_len: Option<u64>,
    /// Its content, un-gzipped as it is read.
    pub reader: Box<dyn Read>,
}

/// A gzip stream whose read errors say that the file is not valid gzip.
pub struct GzInput<R: Read>(flate2::read::GzDecoder<R>);

impl<R: Read> GzInput<R> {
    /// Decompresses `inner` as it is read.
    pub fn new(inner: R) -> Self {
        Self(flate2::read::GzDecoder::new(inner))
    }
}

impl<R: Read> Read for GzInput<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0
            .read(buf)
            .map_err(|e| std::io::Error::new(e.kind(), format!("not a valid gzip file ({e})")))
    }
}

/// Opens `dir/name`, or `dir/name.gz` (un-gzipped as it is read).
pub fn open_maybe_gz(dir: &Path, name: &str) -> Result<DataFile, DataError> {
    let plain = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    let (path, gzipped) = if plain.is_file() {
        (plain, false)
    } else if gz.is_file() {
        (gz, true)
    } else {
        return Err(DataError::Missing(format!("{} (or .gz) not found", plain.display())));
    };
    let file = File::open(&path).map_err(|e| DataError::io(&path, e))?;
    let plain_len = if gzipped {
        None
    } else {
        Some(file.metadata().map_err(|e| DataError::io(&path, e))?.len())
    };
    let reader: Box<dyn Read> = if gzipped {
        Box::new(GzInput::new(BufReader::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    Ok(DataFile {
        path,
        plain_len,
        reader,
    })
}

/// Reads a fixed-size header; a stream that ends first is `short` (the message).
pub fn read_header<const N: usize>(input: &mut dyn Read, short: &str) -> Result<[u8; N], String> {
    let mut header = [0u8; N];
    input.read_exact(&mut header).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => short.to_string(),
        _ => e.to_string(),
    })?;
    Ok(header)
}

/// Reads exactly the `len` bytes a header declared, then checks that the
/// stream ends there. Memory grows with the bytes that arrive (at most twice
/// them) and never beyond `len`, so a stream that is longer than declared —
/// a decompression bomb — is stopped after `len + 1` bytes. `what` names the
/// body in messages (e.g. "60000 images of 28x28").
pub fn read_declared(input: &mut dyn Read, len: usize, what: &str) -> Result<Vec<u8>, String> {
    let mut body: Vec<u8> = Vec::new();
    while body.len() < len {
        let target = len.min(body.len().saturating_mul(2).max(CHUNK));
        let want = target - body.len();
        body.try_reserve_exact(want)
            .map_err(|_| format!("not enough memory for {what} ({len} bytes)"))?;
        let got = (&mut *input)
            .take(want as u64)
            .read_to_end(&mut body)
            .map_err(|e| e.to_string())?;
        if got < want {
            return Err(format!(
                "wrong size: the header declares {what} = {len} bytes, the file has only {} (truncated or corrupt)",
                body.len()
            ));
        }
    }
    let mut extra = [0u8; 1];
    let more = loop {
        match input.read(&mut extra) {
            Ok(n) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.to_string()),
        }
    };
    if more > 0 {
        return Err(format!(
            "wrong size: the file holds more than the {what} = {len} bytes its header declares (corrupt, or not this format)"
        ));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn reads_exactly_the_declared_body() {
        let bytes = [1u8, 2, 3, 4];
        assert_eq!(read_declared(&mut &bytes[..], 4, "4 bytes").unwrap(), bytes);
        let err = read_declared(&mut &bytes[..], 5, "5 bytes").unwrap_err();
        assert!(err.contains("truncated") && err.contains("only 4"), "{err}");
        let err = read_declared(&mut &bytes[..], 3, "3 bytes").unwrap_err();
        assert!(err.contains("more than"), "{err}");
    }

    #[test]
    fn an_endless_stream_is_stopped_after_the_declared_size() {
        // `repeat` never ends: reading it to the end would never return
        let mut endless = std::io::repeat(7);
        let err = read_declared(&mut endless, 3 * CHUNK + 5, "a body").unwrap_err();
        assert!(err.contains("more than"), "{err}");
    }

    #[test]
    fn a_gzip_stream_longer_than_declared_is_refused() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&vec![0u8; 1 << 20]).unwrap();
        let packed = gz.finish().unwrap();
        let mut input = GzInput::new(packed.as_slice());
        let err = read_declared(&mut input, 1000, "a body").unwrap_err();
        assert!(err.contains("more than"), "{err}");
        let mut input = GzInput::new(&packed[..packed.len() / 2]);
        assert!(read_declared(&mut input, 1 << 20, "a body").is_err());
        let mut input = GzInput::new(&b"not gzip at all"[..]);
        let err = read_declared(&mut input, 10, "a body").unwrap_err();
        assert!(err.contains("not a valid gzip file"), "{err}");
    }
}
