//! Compressed evidence: gzip and zstd, recognised by their magic bytes, never by a file name.
//!
//! Both decoders stream: memory stays bounded whatever the size of the file. Both accept
//! concatenated members / frames (`cat a.gz b.gz`, `zstd` of several inputs, rotated logs glued
//! together), because log shippers produce them.

use std::io::{self, BufRead, BufReader, Read};

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

/// Decodes every zstd frame of a stream in turn, skipping skippable frames.
///
/// ruzstd's own `StreamingDecoder` stops after the first frame; a multi-frame file would look
/// truncated without this loop.
struct ZstdFrames<R: Read> {
    source: BufReader<R>,
    decoder: FrameDecoder,
    in_frame: bool,
}

impl<R: Read> ZstdFrames<R> {
    fn new(r: R) -> Self {
        ZstdFrames { source: BufReader::new(r), decoder: FrameDecoder::new(), in_frame: false }
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
