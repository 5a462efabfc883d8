//! Text corpora for character- and byte-level language models.
//!
//! A corpus is every regular file under a folder (recursively, in sorted path
//! order), e.g. Debian's `fortunes` package: 43 files, 2,576,674 bytes of UTF-8
//! under [`FORTUNES_DIR`]. Skipped: hidden files, symbolic links (the package's
//! `.u8` links point at files already read) and `X.dat` next to a file `X`
//! (fortune's `strfile` indexes).
//!
//! **Tokens.** [`TokenKind::Char`]: one token per Unicode scalar value, the
//! vocabulary being the sorted distinct characters of the whole corpus (every
//! file must be UTF-8). [`TokenKind::Byte`]: one token per byte, vocabulary 256,
//! any file accepted.
//!
//! **Split** (fixed and deterministic): every file is cut at 90% and 95% of its
//! tokens, each cut moved forward to the next line start (so no line is split);
//! the three pieces go to train, validation and test, concatenated in path order.
//! Every file thus contributes to every split in proportion to its size, and the
//! split does not depend on the other files of the folder.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use burn::tensor::{Device, Int, Tensor, TensorData};
use sparse_core::Rng;

/// Where Debian's `fortunes` package installs its cookie files.
pub const FORTUNES_DIR: &str = "/usr/share/games/fortunes";

/// Fractions of every file that go to train and train + validation.
const CUTS: [f64; 2] = [0.90, 0.95];

/// A text corpus that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum TextError {
    /// The folder does not exist.
    #[error(
        "{path}: no such folder; for the default corpus install Debian's fortunes (`apt-get install fortunes`, which fills {FORTUNES_DIR}), or pass a folder of text files"
    )]
    Missing {
        /// The folder.
        path: PathBuf,
    },
    /// No text at all.
    #[error("{path}: no text found ({files} files read, all empty); point at a folder of text files")]
    Empty {
        /// The folder.
        path: PathBuf,
        /// Files read.
        files: usize,
    },
    /// A file that is not UTF-8, in character mode.
    #[error(
        "{path}: not UTF-8 (invalid byte at offset {offset}); a character-level model needs UTF-8 text: re-encode the file (e.g. `iconv -f latin1 -t utf-8`), remove it, or use the byte vocabulary"
    )]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// Offset of the first invalid byte.
        offset: usize,
    },
    /// A split too short for the requested context.
    #[error(
        "the {split} split has {tokens} tokens, too few for a context of {block} (needs at least {block} + 1); use a shorter context or a larger corpus"
    )]
    TooShort {
        /// Which split.
        split: Split,
        /// Its length.
        tokens: usize,
        /// The context length asked for.
        block: usize,
    },
    /// A character outside the vocabulary.
    #[error("character {0:?} is not in the corpus vocabulary")]
    UnknownChar(char),
    /// A token id outside the vocabulary.
    #[error("token {token} is outside the vocabulary of {size}")]
    UnknownToken {
        /// The id.
        token: u32,
        /// Vocabulary size.
        size: usize,
    },
    /// An unknown token kind name.
    #[error("unknown vocabulary `{0}`; use `char` or `byte`")]
    UnknownKind(String),
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// File or folder.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// What a token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// A Unicode character (UTF-8 corpora only).
    Char,
    /// A byte.
    Byte,
}

impl FromStr for TokenKind {
    type Err = TextError;

    fn from_str(s: &str) -> Result<Self, TextError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "char" | "chars" | "character" => Ok(Self::Char),
            "byte" | "bytes" => Ok(Self::Byte),
            _ => Err(TextError::UnknownKind(s.to_string())),
        }
    }
}

impl fmt::Display for TokenKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Char => "char",
            Self::Byte => "byte",
        })
    }
}

/// One of the three splits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// Training text (90%).
    Train,
    /// Validation text (5%).
    Valid,
    /// Test text (5%).
    Test,
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Train => "train",
            Self::Valid => "validation",
            Self::Test => "test",
        })
    }
}

/// Token ids ↔ text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vocab {
    kind: TokenKind,
    /// Sorted characters (char vocabulary only).
    chars: Vec<char>,
}

impl Vocab {
    /// The byte vocabulary (256 tokens).
    pub fn bytes() -> Self {
        Self {
            kind: TokenKind::Byte,
            chars: Vec::new(),
        }
    }

    /// A character vocabulary of the distinct characters of `texts`, sorted.
    pub fn chars<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        let mut chars: Vec<char> = texts.into_iter().flat_map(str::chars).collect();
        chars.sort_unstable();
        chars.dedup();
        Self {
            kind: TokenKind::Char,
            chars,
        }
    }

    /// Char or byte.
    pub fn kind(&self) -> TokenKind {
        self.kind
    }

    /// The characters of a char vocabulary in token order (empty for bytes).
    pub fn characters(&self) -> String {
        self.chars.iter().collect()
    }

    /// Number of tokens.
    pub fn size(&self) -> usize {
        match self.kind {
            TokenKind::Byte => 256,
            TokenKind::Char => self.chars.len(),
        }
    }

    /// Token ids of `text`.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TextError> {
        match self.kind {
            TokenKind::Byte => Ok(text.bytes().map(u32::from).collect()),
            TokenKind::Char => text
                .chars()
                .map(|c| {
                    self.chars
                        .binary_search(&c)
                        .map(|i| i as u32)
                        .map_err(|_| TextError::UnknownChar(c))
                })
                .collect(),
        }
    }

    /// The text of token ids (bytes that do not form UTF-8 are replaced by U+FFFD).
    pub fn decode(&self, tokens: &[u32]) -> Result<String, TextError> {
        let unknown = |&token: &u32| TextError::UnknownToken {
            token,
            size: self.size(),
        };
        match self.kind {
            TokenKind::Byte => {
                let bytes = tokens
                    .iter()
                    .map(|t| u8::try_from(*t).map_err(|_| unknown(t)))
                    .collect::<Result<Vec<u8>, _>>()?;
                Ok(String::from_utf8_lossy(&bytes).into_owned())
            }
            TokenKind::Char => tokens
                .iter()
                .map(|t| self.chars.get(*t as usize).copied().ok_or_else(|| unknown(t)))
                .collect(),
        }
    }
}

/// A tokenised corpus with its three splits.
#[derive(Clone, Debug)]
pub struct TextCorpus {
    /// Name for messages and reports (the folder).
    pub name: String,
    /// The vocabulary.
    pub vocab: Vocab,
    /// The files read, in order.
    pub files: Vec<PathBuf>,
    /// Training tokens.
    pub train: Vec<u32>,
    /// Validation tokens.
    pub valid: Vec<u32>,
    /// Test tokens.
    pub test: Vec<u32>,
}

/// Regular, non-hidden files under `dir`, recursively, sorted; strfile indexes skipped.
fn text_files(dir: &Path) -> Result<Vec<PathBuf>, TextError> {
    let io = |path: &Path, source| TextError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .map(|e| e.map(|e| e.path()).map_err(|e| io(dir, e)))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for path in entries {
        let hidden = path.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'));
        let meta = std::fs::symlink_metadata(&path).map_err(|e| io(&path, e))?;
        if hidden || meta.file_type().is_symlink() {
            continue;
        }
        if meta.is_dir() {
            out.extend(text_files(&path)?);
        } else if meta.is_file() && !is_strfile_index(&path) {
            out.push(path);
        }
    }
    Ok(out)
}

fn is_strfile_index(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "dat") && path.with_extension("").is_file()
}

/// Cut points of a token sequence at [`CUTS`], each moved to the next line start.
fn cut_points(tokens: &[u32], newline: u32) -> [usize; 2] {
    CUTS.map(|f| {
        let mut i = (tokens.len() as f64 * f) as usize;
        while i > 0 && i < tokens.len() && tokens[i - 1] != newline {
            i += 1;
        }
        i.min(tokens.len())
    })
}

impl TextCorpus {
    /// Reads every text file under `dir` (see the module docs for the rules).
    pub fn load(dir: impl AsRef<Path>, kind: TokenKind) -> Result<Self, TextError> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(TextError::Missing {
                path: dir.to_path_buf(),
            });
        }
        let docs = text_files(dir)?
            .into_iter()
            .map(|path| {
                std::fs::read(&path)
                    .map(|b| (path.clone(), b))
                    .map_err(|source| TextError::Io { path, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_documents(&dir.display().to_string(), docs, kind).map_err(|e| match e {
            TextError::Empty { files, .. } => TextError::Empty {
                path: dir.to_path_buf(),
                files,
            },
            other => other,
        })
    }

    /// Tokenises and splits documents `(path, bytes)` given in order.
    pub fn from_documents(name: &str, docs: Vec<(PathBuf, Vec<u8>)>, kind: TokenKind) -> Result<Self, TextError> {
        if docs.iter().all(|(_, b)| b.is_empty()) {
            return Err(TextError::Empty {
                path: PathBuf::from(name),
                files: docs.len(),
            });
        }
        let texts: Vec<String> = match kind {
            TokenKind::Byte => Vec::new(),
            TokenKind::Char => docs
                .iter()
                .map(|(path, bytes)| {
                    String::from_utf8(bytes.clone()).map_err(|e| TextError::NotUtf8 {
                        path: path.clone(),
                        offset: e.utf8_error().valid_up_to(),
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let vocab = match kind {
            TokenKind::Byte => Vocab::bytes(),
            TokenKind::Char => Vocab::chars(texts.iter().map(String::as_str)),
        };
        let newline = vocab
            .encode("\n")
            .ok()
            .and_then(|t| t.first().copied())
            .unwrap_or(u32::MAX);
        let mut corpus = Self {
            name: name.to_string(),
            vocab,
            files: docs.iter().map(|(p, _)| p.clone()).collect(),
            train: Vec::new(),
            valid: Vec::new(),
            test: Vec::new(),
        };
        for (i, (_, bytes)) in docs.iter().enumerate() {
            let tokens = match kind {
                TokenKind::Byte => bytes.iter().map(|b| u32::from(*b)).collect(),
                TokenKind::Char => corpus.vocab.encode(&texts[i])?,
            };
            let [a, b] = cut_points(&tokens, newline);
            corpus.train.extend_from_slice(&tokens[..a]);
            corpus.valid.extend_from_slice(&tokens[a..b]);
            corpus.test.extend_from_slice(&tokens[b..]);
        }
        tracing::info!(
            corpus = name,
            vocab = corpus.vocab.size(),
            train = corpus.train.len(),
            valid = corpus.valid.len(),
            test = corpus.test.len(),
            "text corpus loaded"
        );
        Ok(corpus)
    }

    /// The tokens of a split.
    pub fn split(&self, split: Split) -> &[u32] {
        match split {
            Split::Train => &self.train,
            Split::Valid => &self.valid,
            Split::Test => &self.test,
        }
    }

    /// Checks that `split` holds at least one window of `block` inputs plus a target.
    pub fn check_block(&self, split: Split, block: usize) -> Result<(), TextError> {
        let tokens = self.split(split).len();
        if block == 0 || tokens <= block {
            return Err(TextError::TooShort { split, tokens, block });
        }
        Ok(())
    }

    /// `batch` windows of `block` tokens at uniformly random offsets of `split`
    /// (nanoGPT's `get_batch`): inputs and the next-token targets, row-major `[batch, block]`.
    pub fn random_windows(
        &self,
        split: Split,
        batch: usize,
        block: usize,
        rng: &mut Rng,
    ) -> Result<(Vec<i64>, Vec<i64>), TextError> {
        self.check_block(split, block)?;
        let tokens = self.split(split);
        let starts = (tokens.len() - block) as u64;
        let mut inputs = Vec::with_capacity(batch * block);
        let mut targets = Vec::with_capacity(batch * block);
        for _ in 0..batch {
            let s = rng.below(starts) as usize;
            inputs.extend(tokens[s..s + block].iter().map(|t| i64::from(*t)));
            targets.extend(tokens[s + 1..s + block + 1].iter().map(|t| i64::from(*t)));
        }
        Ok((inputs, targets))
    }
}

/// Token ids `[batch, block]` as an integer tensor on `device`.
pub fn token_tensor(tokens: Vec<i64>, batch: usize, block: usize, device: &Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(tokens, [batch, block]), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(name: &str, text: &str) -> (PathBuf, Vec<u8>) {
        (PathBuf::from(name), text.as_bytes().to_vec())
    }

    #[test]
    fn char_vocab_round_trips_and_is_sorted() {
        let v = Vocab::chars(["hello", "wörld\n"]);
        assert_eq!(v.size(), 9, "h e l o w ö r d \\n");
        let ids = v.encode("hölle\n").expect("known chars");
        assert_eq!(v.decode(&ids).expect("decode"), "hölle\n");
        assert_eq!(ids[5], 0, "'\\n' sorts first");
        assert!(matches!(v.encode("x"), Err(TextError::UnknownChar('x'))));
        assert!(v.decode(&[9]).is_err());
        let b = Vocab::bytes();
        assert_eq!(b.encode("é").expect("bytes"), vec![0xc3, 0xa9]);
        assert!(b.decode(&[256]).is_err());
    }

    #[test]
    fn every_file_is_split_90_5_5_at_line_starts() {
        let line = "abcdefghi\n"; // 10 chars
        let a = line.repeat(100); // 1000 chars: cuts at 900 and 950, both line starts
        let b = "x".repeat(95) + "\n" + &"y".repeat(9) + "\n"; // 106 chars: cut at 95.4 → 96, 100.7 → 106
        let c = corpus(vec![doc("a", &a), doc("b", &b)], TokenKind::Char);
        let v = &c.vocab;
        assert_eq!(c.train.len(), 900 + 96);
        assert_eq!(c.valid.len(), 50 + 10);
        assert_eq!(c.test.len(), 50);
        assert_eq!(v.decode(&c.valid[50..]).expect("decode"), "y".repeat(9) + "\n");
        // every piece starts at a line start
        assert_eq!(v.decode(&c.valid[..10]).expect("decode"), line);
        assert_eq!(v.decode(&c.test[..10]).expect("decode"), line);
    }

    fn corpus(docs: Vec<(PathBuf, Vec<u8>)>, kind: TokenKind) -> TextCorpus {
        TextCorpus::from_documents("test", docs, kind).expect("corpus")
    }

    #[test]
    fn bad_corpora_get_clear_errors() {
        let err = TextCorpus::from_documents("d", vec![doc("a", "")], TokenKind::Char).err();
        assert!(matches!(err, Some(TextError::Empty { files: 1, .. })), "{err:?}");
        let latin1 = (PathBuf::from("old.txt"), vec![b'c', b'a', b'f', 0xe9]);
        let err = TextCorpus::from_documents("d", vec![latin1.clone()], TokenKind::Char)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("old.txt: not UTF-8 (invalid byte at offset 3)"), "{err}");
        assert!(err.contains("byte vocabulary"), "{err}");
        let bytes = corpus(vec![latin1], TokenKind::Byte);
        assert_eq!(bytes.vocab.size(), 256);
        assert_eq!(bytes.train.len() + bytes.valid.len() + bytes.test.len(), 4);
        let err = TextCorpus::load("/nonexistent/corpus", TokenKind::Char)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("no such folder") && err.contains("apt-get install fortunes"),
            "{err}"
        );
        assert!("word".parse::<TokenKind>().is_err());
    }

    #[test]
    fn random_windows_are_shifted_by_one_and_need_enough_text() {
        let text = "abcdefghi\n".repeat(20); // 200 tokens: train 180, validation 10, test 10
        let c = corpus(vec![doc("a", &text)], TokenKind::Char);
        let mut rng = Rng::new(1);
        let (x, y) = c.random_windows(Split::Train, 4, 8, &mut rng).expect("windows");
        assert_eq!((x.len(), y.len()), (32, 32));
        for r in 0..4 {
            assert_eq!(&x[r * 8 + 1..r * 8 + 8], &y[r * 8..r * 8 + 7]);
        }
        let err = c
            .random_windows(Split::Valid, 1, 10, &mut rng)
            .err()
            .map(|e| e.to_string());
        assert!(err.unwrap_or_default().contains("validation split has 10 tokens"));
    }

    /// The documented figures of Debian's fortunes corpus (1:1.99.1-7.3).
    #[test]
    fn fortunes_corpus_has_the_documented_size_and_a_5_percent_split() {
        let dir = Path::new(FORTUNES_DIR);
        assert!(
            dir.is_dir(),
            "{FORTUNES_DIR} is missing: install it with `apt-get install fortunes`"
        );
        let bytes = TextCorpus::load(dir, TokenKind::Byte).expect("byte corpus");
        assert_eq!(bytes.files.len(), 43, "43 cookie files, no .dat indexes, no .u8 links");
        let total = bytes.train.len() + bytes.valid.len() + bytes.test.len();
        assert_eq!(total, 2_576_674);
        let chars = TextCorpus::load(dir, TokenKind::Char).expect("char corpus");
        assert_eq!(chars.vocab.size(), 113);
        let n = (chars.train.len() + chars.valid.len() + chars.test.len()) as f64;
        for (split, want) in [
            (chars.valid.len(), 0.05),
            (chars.test.len(), 0.05),
            (chars.train.len(), 0.90),
        ] {
            assert!((split as f64 / n - want).abs() < 0.005, "{split} of {n}");
        }
    }
}
