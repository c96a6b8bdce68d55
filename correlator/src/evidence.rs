//! Finding and opening evidence files: directories walked in name order, each file read once
//! (however many paths lead to it), symbolic-link loops never followed round, FIFOs, sockets
//! and devices refused; compression detected from magic bytes and bounded, a leading byte-order
//! mark dropped, and the layout (one JSON value per line, or one document) detected from the
//! first lines.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokentrail_aggregator_core::{
    decompress_bounded, detect_compression, detect_layout_in, Compression, Layout, Limits,
};

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
    /// A path does not exist or cannot be read.
    #[error("{}: {}", path.display(), self.reason())]
    Unreadable {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A FIFO, socket or device: reading it could wait for a writer forever, or never end.
    #[error("{}: {}", path.display(), self.reason())]
    NotAFile {
        /// The path.
        path: PathBuf,
        /// What it is (`a FIFO`, `a socket`, `a character device`, `a block device`).
        kind: &'static str,
    },
}

impl EvidenceError {
    /// The path the error is about.
    pub fn path(&self) -> &Path {
        match self {
            EvidenceError::Unreadable { path, .. } | EvidenceError::NotAFile { path, .. } => path,
        }
    }

    /// What is wrong, without the path.
    pub fn reason(&self) -> String {
        match self {
            EvidenceError::Unreadable { source, .. } => format!("cannot read: {source}"),
            EvidenceError::NotAFile { kind, .. } => format!(
                "{kind}, not a regular file: refused (reading it could wait or run forever); save the evidence \
                 into a file and name that"
            ),
        }
    }
}

/// A path found and deliberately not read, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassedOver {
    /// The path.
    pub path: PathBuf,
    /// Why, in a few words.
    pub reason: String,
}

/// What [`collect`] found.
#[derive(Debug, Default)]
pub struct Collected {
    /// The files to read, each once.
    pub files: Vec<EvidenceFile>,
    /// Paths that could not be read, or were refused.
    pub errors: Vec<EvidenceError>,
    /// Paths passed over: hidden entries of directories, second paths to a file already
    /// listed, directories reached again (symbolic-link loops).
    pub passed_over: Vec<PassedOver>,
}

/// A file or directory's identity, whatever path reaches it.
type Identity = (u64, u64);

fn identity(meta: &Metadata) -> Identity {
    (meta.dev(), meta.ino())
}

/// Expands files and directories into the files to read, directories walked recursively in name
/// order (hidden entries skipped). Symbolic links are followed, but a file is listed once and a
/// directory walked once, whatever paths lead to them.
pub fn collect(paths: &[PathBuf]) -> Collected {
    let mut walk = Walk::default();
    for path in paths {
        walk.visit(path, true);
    }
    walk.found
}

#[derive(Default)]
struct Walk {
    found: Collected,
    /// Files listed and directories walked, with the first path that reached them.
    seen: HashMap<Identity, PathBuf>,
}

impl Walk {
    fn visit(&mut self, path: &Path, explicit: bool) {
        let unreadable = |source| EvidenceError::Unreadable { path: path.to_path_buf(), source };
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => return self.found.errors.push(unreadable(e)),
        };
        if let Some(kind) = special_kind(&meta) {
            return self.found.errors.push(EvidenceError::NotAFile { path: path.to_path_buf(), kind });
        }
        if let Some(first) = self.seen.get(&identity(&meta)) {
            let reason = if meta.is_dir() {
                format!("the directory {} again (a symbolic link loop?): not walked twice", first.display())
            } else {
                format!("the same file as {}: read once", first.display())
            };
            return self.found.passed_over.push(PassedOver { path: path.to_path_buf(), reason });
        }
        self.seen.insert(identity(&meta), path.to_path_buf());
        if meta.is_file() {
            self.found.files.push(EvidenceFile { path: path.to_path_buf(), size: meta.len(), explicit });
            return;
        }
        let entries = match std::fs::read_dir(path) {
            Ok(rd) => rd,
            Err(e) => return self.found.errors.push(unreadable(e)),
        };
        let mut children = Vec::new();
        for entry in entries {
            match entry {
                Ok(entry) => children.push(entry.path()),
                Err(e) => self.found.errors.push(unreadable(e)),
            }
        }
        children.sort();
        for child in children {
            let hidden = child.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
            // Files named explicitly are read even when hidden; inside directories, dotfiles are
            // editor and VCS litter.
            if hidden {
                let reason = String::from("hidden: not read (name it on the command line to read it)");
                self.found.passed_over.push(PassedOver { path: child, reason });
                continue;
            }
            self.visit(&child, false);
        }
    }
}

/// What a path that is neither a file nor a directory is.
fn special_kind(meta: &Metadata) -> Option<&'static str> {
    let t = meta.file_type();
    if t.is_file() || t.is_dir() {
        None
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_socket() {
        Some("a socket")
    } else if t.is_char_device() {
        Some("a character device")
    } else if t.is_block_device() {
        Some("a block device")
    } else {
        Some("not a file or directory")
    }
}

/// An opened evidence file: decompressed, BOM stripped, with its layout known.
pub struct Opened {
    /// How the JSON is laid out.
    pub layout: Layout,
    /// The compression found.
    pub compression: Compression,
    /// Whether the text starts like JSON (`{` or `[` after whitespace): directories also hold
    /// notes and scripts, which are skipped rather than reported line by line. A piece of a
    /// JSON-lines log cut mid-line counts as JSON.
    pub looks_like_json: bool,
    /// Bytes of the decompressed text before `reader` (the byte-order mark).
    pub offset: u64,
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

/// Opens a file, adding every byte read from disk to `progress`; compressed files stop with an
/// error past `limits`.
pub fn open(path: &Path, progress: Arc<AtomicU64>, limits: Limits) -> io::Result<Opened> {
    let (compression, mut text) = decompressed(Counting { inner: open_regular(path)?, counter: progress }, limits)?;
    // Read ahead a window of lines to decide the layout, then put those bytes back in front of
    // the rest.
    let Head { text: head, complete: _, layout, bom } = read_head(&mut text)?;
    let first = head.iter().find(|b| !b.is_ascii_whitespace());
    let looks_like_json = matches!(first, Some(b'{' | b'[') | None) || layout == Layout::Lines;
    let reader = BufReader::with_capacity(1 << 20, io::Cursor::new(head).chain(text));
    Ok(Opened { layout, compression, looks_like_json, offset: bom as u64, reader: Box::new(reader) })
}

/// A file's start as [`open`] sees it to decide its layout: decompressed (within `limits`), its
/// byte-order mark dropped, at most [`PEEK`] bytes. For what the first records say about the
/// whole file (the cluster a cloud export names) before the file is read.
pub fn head(path: &Path, limits: Limits) -> io::Result<Head> {
    let (_, mut text) = decompressed(open_regular(path)?, limits)?;
    read_head(&mut text)
}

/// The start of a decompressed text.
pub struct Head {
    /// Its first bytes, byte-order mark dropped.
    pub text: Vec<u8>,
    /// Whether that is the whole text.
    pub complete: bool,
    /// How the JSON is laid out, told from those bytes.
    pub layout: Layout,
    /// The length of the byte-order mark dropped.
    bom: usize,
}

/// The decompressed text of a file (compression told from its magic bytes).
fn decompressed<R: Read + 'static>(file: R, limits: Limits) -> io::Result<(Compression, Box<dyn Read>)> {
    let mut raw = BufReader::with_capacity(1 << 20, file);
    let compression = detect_compression(raw.fill_buf()?);
    Ok((compression, decompress_bounded(compression, raw, limits)?))
}

/// Reads up to [`PEEK`] bytes of `text`.
fn read_head(text: &mut dyn Read) -> io::Result<Head> {
    let mut head = Vec::with_capacity(64 << 10);
    let mut block = [0u8; 64 << 10];
    let mut complete = false;
    while head.len() < PEEK {
        let n = text.read(&mut block)?;
        if n == 0 {
            complete = true;
            break;
        }
        head.extend_from_slice(&block[..n]);
    }
    let bom = head.len() - tokentrail_aggregator_core::strip_bom(&head).len();
    head.drain(..bom);
    let layout = detect_layout_in(&head, complete);
    Ok(Head { text: head, complete, layout, bom })
}

/// Opens `path` for reading if it is a regular file. The open does not wait for a writer if the
/// path became a FIFO after it was listed.
fn open_regular(path: &Path) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    let fd =
        rustix::fs::open(path, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY, Mode::empty())?;
    let file = File::from(fd);
    let meta = file.metadata()?;
    if !meta.is_file() {
        let kind = special_kind(&meta).unwrap_or("a directory");
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{kind}, not a regular file: refused")));
    }
    Ok(file)
}

/// How much of a file is looked at to decide its layout.
const PEEK: usize = 1 << 20;
