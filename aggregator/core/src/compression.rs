//! Compressed evidence: gzip and zstd, recognised by their magic bytes, never by a file name.
//!
//! Both decoders stream: memory stays bounded whatever the size of the file (a zstd frame may
//! ask for a window of at most 100 MiB, and no read decodes more than 1 MiB ahead). Both accept
//! concatenated members / frames (`cat a.gz b.gz`, `zstd` of several inputs, rotated logs glued
//! together), because log shippers produce them. [`decompress_bounded`] also stops a
//! decompression bomb: output is capped in size and in ratio to the compressed input, the same
//! [`Limits`] for both formats.

use std::cell::Cell;
use std::io::{self, BufRead, BufReader, Read};
use std::rc::Rc;

use ruzstd::decoding::errors::{FrameDecoderError, ReadFrameHeaderError};
use ruzstd::decoding::{BlockDecodingStrategy, FrameDecoder};

/// How a stream of evidence is compressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Compression {
    /// Not compressed (or not in a format we recognise: then it is read as is).
    None,
    /// gzip (`1f 8b`), one or more members.
    Gzip,
    /// Zstandard (`28 b5 2f fd`), one or more frames.
    Zstd,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Compression detected from magic bytes: gzip (1f 8b), zstd (28 b5 2f fd), or none.
///
/// Give it at least the first 4 bytes of the stream; a shorter prefix can only be recognised
/// as gzip or nothing.
pub fn detect_compression(prefix: &[u8]) -> Compression {
    if prefix.starts_with(&GZIP_MAGIC) {
        Compression::Gzip
    } else if prefix.starts_with(&ZSTD_MAGIC) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Wraps a reader so it yields decompressed bytes (flate2 `MultiGzDecoder` / ruzstd streaming
/// decoder). Errors in the compressed data surface as `io::ErrorKind::InvalidData` from `read`.
pub fn decompress<'a, R: Read + 'a>(c: Compression, r: R) -> io::Result<Box<dyn Read + 'a>> {
    Ok(match c {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Compression::Zstd => Box::new(ZstdFrames::new(r)),
    })
}

/// How far compressed evidence may expand before reading stops with an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most decompressed bytes read from one stream.
    pub max_output: u64,
    /// Most decompressed bytes per compressed byte read so far. Audit logs expand 10 to 25
    /// times (gzip -9, zstd -19); `[{},{},...]` expands a thousand times and more.
    pub max_ratio: u64,
    /// Output up to which the ratio is not checked: a small file may expand a lot, harmlessly.
    pub ratio_after: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_output: 256 << 30, max_ratio: 200, ratio_after: 64 << 20 }
    }
}

/// Like [`decompress`], but reading stops with an `io::ErrorKind::InvalidData` error as soon as
/// the output passes `limits` (a decompression bomb). Uncompressed input is not bounded: it is
/// as large as it is.
pub fn decompress_bounded<'a, R: Read + 'a>(c: Compression, r: R, limits: Limits) -> io::Result<Box<dyn Read + 'a>> {
    let name = match c {
        Compression::None => return Ok(Box::new(r)),
        Compression::Gzip => "gzip",
        Compression::Zstd => "zstd",
    };
    let input = Rc::new(Cell::new(0));
    let inner = decompress(c, Counted { inner: r, count: Rc::clone(&input) })?;
    Ok(Box::new(Bounded { inner, input, output: 0, limits, name }))
}

/// Counts the bytes a decompressor takes from its input.
struct Counted<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Decompressed bytes, checked against [`Limits`] as they come.
struct Bounded<D> {
    inner: D,
    input: Rc<Cell<u64>>,
    output: u64,
    limits: Limits,
    name: &'static str,
}

impl<D: Read> Read for Bounded<D> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.output += n as u64;
        let Limits { max_output, max_ratio, ratio_after } = self.limits;
        if self.output > max_output {
            return Err(invalid(format!(
                "{} data expands to more than {} MiB: stopped there; decompress it yourself to read all of it",
                self.name,
                max_output >> 20
            )));
        }
        let input = self.input.get().max(1);
        if self.output > ratio_after && self.output / input >= max_ratio {
            return Err(invalid(format!(
                "{} data expands more than {max_ratio} times ({} MiB from {} KiB): stopped as a likely \
                 decompression bomb; decompress it yourself if it is real evidence",
                self.name,
                self.output >> 20,
                input >> 10
            )));
        }
        Ok(n)
    }
}

/// Decodes every zstd frame of a stream in turn, skipping skippable frames.
///
/// ruzstd's own `StreamingDecoder` stops after the first frame; a multi-frame file would look
/// truncated without this loop.
struct ZstdFrames<R: Read> {
    source: BufReader<R>,
    decoder: FrameDecoder,
    in_frame: bool,
}

/// An empty zstd frame (single segment, content size 0, one empty last block).
const EMPTY_FRAME: [u8; 9] = [0x28, 0xb5, 0x2f, 0xfd, 0x20, 0x00, 0x01, 0x00, 0x00];

/// Most bytes one `read` decodes ahead of what it returns.
const DECODE_AHEAD: usize = 1 << 20;

impl<R: Read> ZstdFrames<R> {
    fn new(r: R) -> Self {
        let mut decoder = FrameDecoder::new();
        // ruzstd checks a frame's window size (at most 100 MiB, which its decoder keeps in
        // memory) only when a decoder is reused: starting this one on an empty frame makes the
        // check apply to the first real frame too. A frame that says it is one segment asks
        // for a window as large as its content, gigabytes for a bomb.
        let primed = decoder.init(&EMPTY_FRAME[..]).is_ok();
        debug_assert!(primed, "the empty frame is a valid frame header");
        ZstdFrames { source: BufReader::new(r), decoder, in_frame: false }
    }

    /// Starts the next frame; `false` at the clean end of the stream.
    fn next_frame(&mut self) -> io::Result<bool> {
        loop {
            if self.source.fill_buf()?.is_empty() {
                return Ok(false);
            }
            match self.decoder.init(&mut self.source) {
                Ok(()) => return Ok(true),
                Err(FrameDecoderError::ReadFrameHeaderError(ReadFrameHeaderError::SkipFrame { length, .. })) => {
                    let skipped = io::copy(&mut (&mut self.source).take(u64::from(length)), &mut io::sink())?;
                    if skipped < u64::from(length) {
                        return Err(invalid("zstd skippable frame is truncated"));
                    }
                }
                Err(FrameDecoderError::WindowSizeTooBig { requested }) => {
                    return Err(invalid(format!(
                        "zstd frame needs a {} MiB window, more than the 100 MiB allowed: stopped as a likely \
                         decompression bomb; decompress it yourself (`zstd -d`) if it is real evidence",
                        requested >> 20
                    )))
                }
                Err(e) => return Err(invalid(format!("not a zstd frame: {e}"))),
            }
        }
    }
}

impl<R: Read> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // The decoder fills its own buffer up to what is asked for before handing it over: a
        // caller asking for gigabytes at once (`read_to_end` on a large document) would double
        // its memory.
        let len = buf.len().min(DECODE_AHEAD);
        let buf = &mut buf[..len];
        loop {
            if !self.in_frame {
                if !self.next_frame()? {
                    return Ok(0);
                }
                self.in_frame = true;
            }
            // Same loop as ruzstd's StreamingDecoder: decode blocks until enough is collectable.
            while self.decoder.can_collect() < buf.len() && !self.decoder.is_finished() {
                let wanted = buf.len() - self.decoder.can_collect();
                self.decoder
                    .decode_blocks(&mut self.source, BlockDecodingStrategy::UptoBytes(wanted))
                    .map_err(|e| invalid(format!("corrupt zstd data: {e}")))?;
            }
            let n = self.decoder.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            if self.decoder.is_finished() && self.decoder.can_collect() == 0 {
                self.in_frame = false;
            }
        }
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn read_all(c: Compression, bytes: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        decompress(c, bytes)?.read_to_end(&mut out)?;
        Ok(out)
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn detects_by_magic_bytes() {
        assert_eq!(detect_compression(&gzip(b"x")), Compression::Gzip);
        assert_eq!(detect_compression(&[0x28, 0xb5, 0x2f, 0xfd, 0]), Compression::Zstd);
        assert_eq!(detect_compression(b"{\"kind\":\"Event\"}"), Compression::None);
        assert_eq!(detect_compression(&[0x28, 0xb5]), Compression::None);
        assert_eq!(detect_compression(b""), Compression::None);
    }

    #[test]
    fn gzip_round_trip_with_concatenated_members() {
        let mut both = gzip(b"{\"a\":1}\n");
        both.extend(gzip(b"{\"b\":2}\n"));
        assert_eq!(read_all(Compression::Gzip, &both).unwrap(), b"{\"a\":1}\n{\"b\":2}\n");
    }

    #[test]
    fn zstd_round_trip_with_concatenated_frames() {
        use ruzstd::encoding::{compress_to_vec, CompressionLevel};
        let line = b"{\"kind\":\"Event\",\"auditID\":\"x\"}\n".repeat(2000);
        let mut both = compress_to_vec(&line[..], CompressionLevel::Fastest);
        // A skippable frame between the two data frames.
        both.extend([0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 9, 9, 9]);
        both.extend(compress_to_vec(&b"tail\n"[..], CompressionLevel::Fastest));
        let mut expected = line.clone();
        expected.extend(b"tail\n");
        assert_eq!(read_all(Compression::Zstd, &both).unwrap(), expected);
    }

    /// `[{},{},...]`: every element a problem record, a thousand times smaller compressed.
    fn empty_objects(n: usize) -> Vec<u8> {
        let mut text = b"[{}".to_vec();
        text.extend(b",{}".repeat(n));
        text.push(b']');
        text
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
    }

    fn read_bounded(c: Compression, bytes: &[u8], limits: Limits) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        decompress_bounded(c, bytes, limits)?.read_to_end(&mut out)?;
        Ok(out)
    }

    const SMALL: Limits = Limits { max_output: 64 << 20, max_ratio: 200, ratio_after: 1 << 20 };

    #[test]
    fn bombs_are_stopped_by_ratio_in_both_formats() {
        let bomb = empty_objects(4 << 20);
        for (c, packed) in [(Compression::Gzip, gzip(&bomb)), (Compression::Zstd, zstd(&bomb))] {
            assert!(packed.len() * 200 < bomb.len(), "{c:?} bomb is only {} bytes", packed.len());
            let e = read_bounded(c, &packed, SMALL).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            assert!(e.to_string().contains("expands more than 200 times"), "{c:?}: {e}");
        }
    }

    #[test]
    fn output_is_capped_in_size_in_both_formats() {
        let text = b"{\"kind\":\"Event\",\"auditID\":\"x\"}\n".repeat(1 << 16);
        let limits = Limits { max_output: 1 << 20, max_ratio: u64::MAX, ratio_after: 0 };
        for (c, packed) in [(Compression::Gzip, gzip(&text)), (Compression::Zstd, zstd(&text))] {
            let e = read_bounded(c, &packed, limits).unwrap_err();
            assert!(e.to_string().contains("expands to more than 1 MiB"), "{c:?}: {e}");
            assert_eq!(read_bounded(c, &packed, Limits::default()).unwrap(), text, "{c:?} within the limits");
        }
        let plain = read_bounded(Compression::None, &text, limits).unwrap();
        assert_eq!(plain.len(), text.len(), "uncompressed input is as large as it is");
    }

    #[test]
    fn a_zstd_frame_asking_for_a_huge_window_is_refused_before_decoding() {
        // Single segment (window = content size), content size 4 GiB in 8 bytes, then nothing.
        let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd, 0xe0];
        frame.extend((4u64 << 30).to_le_bytes());
        let e = read_all(Compression::Zstd, &frame).unwrap_err();
        assert!(e.to_string().contains("needs a 4096 MiB window"), "{e}");
        // The same frame after a good one.
        let mut both = zstd(b"{}\n");
        both.extend(&frame);
        let e = read_all(Compression::Zstd, &both).unwrap_err();
        assert!(e.to_string().contains("needs a 4096 MiB window"), "{e}");
    }

    #[test]
    fn zstd_decodes_little_ahead_of_a_large_read() {
        let text = b"{\"a\":1}\n".repeat(1 << 20);
        let packed = zstd(&text);
        let mut reader = decompress(Compression::Zstd, &packed[..]).unwrap();
        let mut buf = vec![0; 64 << 20];
        let n = reader.read(&mut buf).unwrap();
        assert!(n > 0 && n <= DECODE_AHEAD, "{n}");
    }

    #[test]
    fn corrupt_input_is_an_error_not_a_panic() {
        let garbage = [0x28, 0xb5, 0x2f, 0xfd, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02];
        assert!(read_all(Compression::Zstd, &garbage).is_err());
        let mut truncated = gzip(&b"hello world ".repeat(100));
        truncated.truncate(truncated.len() / 2);
        assert!(read_all(Compression::Gzip, &truncated).is_err());
        assert!(read_all(Compression::Zstd, b"not zstd at all").is_err());
        let mut cut = ruzstd::encoding::compress_to_vec(
            &b"{\"a\":1}\n".repeat(5000)[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        cut.truncate(cut.len() - 3);
        assert!(read_all(Compression::Zstd, &cut).is_err(), "a truncated frame must not look like a clean end");
    }
}
