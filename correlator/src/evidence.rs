//! Finding and opening evidence files: directories walked in name order, compression detected
//! from magic bytes, a leading byte-order mark dropped, and the layout (one JSON value per line,
//! or one document) detected from the first line.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokentrail_aggregator_core::{decompress, detect_compression, detect_layout, strip_bom, Compression, Layout};

/// One evidence file to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvidenceFile {
    /// Its path.
    pub path: PathBuf,
    /// Its size on disk.
    pub size: u64,
    /// Named on the command line (rather than found in a directory).
    pub explicit: bool,
}

/// Why evidence could not be found or opened.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// A path given on the command line does not exist or cannot be read.
    #[error("{path}: {source}")]
    Unreadable {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Expands files and directories into the files to read, directories walked recursively in name
/// order (hidden entries skipped). Paths that cannot be read are returned as errors alongside.
pub fn collect(paths: &[PathBuf]) -> (Vec<EvidenceFile>, Vec<EvidenceError>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        walk(path, true, &mut files, &mut errors);
    }
    (files, errors)
}

fn walk(path: &Path, explicit: bool, files: &mut Vec<EvidenceFile>, errors: &mut Vec<EvidenceError>) {
    let unreadable = |source| EvidenceError::Unreadable { path: path.to_path_buf(), source };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return errors.push(unreadable(e)),
    };
    if meta.is_file() {
        files.push(EvidenceFile { path: path.to_path_buf(), size: meta.len(), explicit });
        return;
    }
    if !meta.is_dir() {
        return;
    }
    let entries = match std::fs::read_dir(path) {
        Ok(rd) => rd,
        Err(e) => return errors.push(unreadable(e)),
    };
    let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    children.sort();
    for child in children {
        let hidden = child.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
        // Files named explicitly are read even when hidden; inside directories, dotfiles are
        // editor and VCS litter.
        if hidden && !explicit {
            continue;
        }
        walk(&child, false, files, errors);
    }
}

/// An opened evidence file: decompressed, BOM stripped, with its layout known.
pub struct Opened {
    /// How the JSON is laid out.
    pub layout: Layout,
    /// The compression found.
    pub compression: Compression,
    /// Whether the text starts like JSON (`{` or `[` after whitespace): directories also hold
    /// notes and scripts, which are skipped rather than reported line by line.
    pub looks_like_json: bool,
    /// The decompressed text, positioned at the start (BOM removed).
    pub reader: Box<dyn BufRead>,
}

/// Counts bytes read from the file on disk (compressed), for progress.
struct Counting<R> {
    inner: R,
    counter: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.counter.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Opens a file, adding every byte read from disk to `progress`.
pub fn open(path: &Path, progress: Arc<AtomicU64>) -> io::Result<Opened> {
    let file = File::open(path)?;
    let mut raw = BufReader::with_capacity(1 << 20, Counting { inner: file, counter: progress });
    let compression = detect_compression(raw.fill_buf()?);
    let mut text = decompress(compression, raw)?;
    // Read ahead until the first line ends (or the peek window is full) to decide the layout,
    // then put those bytes back in front of the rest.
    let mut head = Vec::with_capacity(64 << 10);
    let mut block = [0u8; 64 << 10];
    while head.len() < PEEK && memchr::memchr(b'\n', &head).is_none() {
        let n = text.read(&mut block)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&block[..n]);
    }
    let bom = head.len() - strip_bom(&head).len();
    head.drain(..bom);
    let layout = match memchr::memchr(b'\n', &head) {
        Some(end) => detect_layout(&head[..end]),
        // A first line longer than the peek window is one huge value on a line of its own: a
        // pretty-printed document starts with a short line such as `{`.
        None if head.len() >= PEEK => Layout::Lines,
        None => detect_layout(&head),
    };
    let looks_like_json = matches!(head.iter().find(|b| !b.is_ascii_whitespace()), Some(b'{' | b'[') | None);
    let reader = BufReader::with_capacity(1 << 20, io::Cursor::new(head).chain(text));
    Ok(Opened { layout, compression, looks_like_json, reader: Box::new(reader) })
}

/// How much of a file is looked at to decide its layout.
const PEEK: usize = 1 << 20;
