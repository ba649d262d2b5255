//! SPDY/3 header blocks: name/value pairs (a 32-bit count, then each name and value with a
//! 32-bit length), compressed with zlib over the whole session — one compression context per
//! direction, primed with the dictionary of the SPDY/3 specification, each block ending with a
//! sync flush. Every block received must go through the one decompressor, in order, even for a
//! stream that is then refused; otherwise the contexts fall out of step.

use std::sync::OnceLock;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Why a header block cannot be read; the session ends with a protocol error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("a header block is not a valid zlib stream: {0}")]
    Zlib(String),
    #[error("a header block needs a zlib dictionary other than SPDY/3's (adler32 {0:#x})")]
    WrongDictionary(u32),
    #[error("a header block is larger than {0} bytes uncompressed")]
    TooLarge(usize),
    #[error("a header block is malformed: {0}")]
    Malformed(&'static str),
}

/// The words of SPDY/3's compression dictionary, each written with its 32-bit length; the
/// dictionary ends with [`DICTIONARY_TAIL`].
const DICTIONARY_WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented",
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,",
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=",
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

/// SPDY/3's zlib dictionary (1423 bytes, adler32 0xe3c6a7c2).
pub fn dictionary() -> &'static [u8] {
    static DICTIONARY: OnceLock<Vec<u8>> = OnceLock::new();
    DICTIONARY.get_or_init(|| {
        let mut d = Vec::with_capacity(1423);
        for word in DICTIONARY_WORDS {
            d.extend_from_slice(&(word.len() as u32).to_be_bytes());
            d.extend_from_slice(word.as_bytes());
        }
        d.extend_from_slice(DICTIONARY_TAIL.as_bytes());
        d
    })
}

/// The name/value pairs of a header block. Names are lower case on the wire; several values
/// of one name are joined by NUL bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HeaderBlock(pub Vec<(String, String)>);

impl HeaderBlock {
    /// The first value of `name` (any case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.split('\0').next())
    }

    /// The uncompressed block.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = BytesMut::new();
        out.put_u32(self.0.len() as u32);
        for (name, value) in &self.0 {
            let name = name.to_ascii_lowercase();
            out.put_u32(name.len() as u32);
            out.put_slice(name.as_bytes());
            out.put_u32(value.len() as u32);
            out.put_slice(value.as_bytes());
        }
        out.to_vec()
    }

    /// Reads an uncompressed block. Bytes that are not UTF-8 are replaced, as header values
    /// here are only compared with ASCII.
    pub fn decode(mut bytes: &[u8]) -> Result<HeaderBlock, HeaderError> {
        let truncated = HeaderError::Malformed("it ends inside a name or value");
        if bytes.len() < 4 {
            return Err(truncated);
        }
        let count = bytes.get_u32() as usize;
        // Each pair takes at least 8 bytes: a count beyond that is a lie, not a reason to
        // reserve memory.
        if count > bytes.len() / 8 {
            return Err(HeaderError::Malformed("it counts more pairs than it holds"));
        }
        let mut pairs = Vec::with_capacity(count);
        for _ in 0..count {
            let mut field = || -> Result<String, HeaderError> {
                if bytes.len() < 4 {
                    return Err(truncated.clone());
                }
                let n = bytes.get_u32() as usize;
                if bytes.len() < n {
                    return Err(truncated.clone());
                }
                let s = String::from_utf8_lossy(&bytes[..n]).into_owned();
                bytes.advance(n);
                Ok(s)
            };
            let name = field()?;
            let value = field()?;
            if name.is_empty() {
                return Err(HeaderError::Malformed("a header name is empty"));
            }
            pairs.push((name, value));
        }
        Ok(HeaderBlock(pairs))
    }
}

/// The compressing side of a session's header blocks.
pub struct Compressor {
    z: Compress,
}

impl Default for Compressor {
    fn default() -> Self {
        Compressor::new()
    }
}

impl Compressor {
    pub fn new() -> Compressor {
        let mut z = Compress::new(Compression::default(), true);
        // Cannot fail on a fresh stream with a zlib backend.
        let _ = z.set_dictionary(dictionary());
        Compressor { z }
    }

    /// The compressed bytes of `block`, flushed so that the peer can read it whole.
    pub fn compress(&mut self, block: &HeaderBlock) -> Result<Bytes, HeaderError> {
        let input = block.encode();
        let mut out = Vec::with_capacity(input.len() + 64);
        let start = self.z.total_in();
        loop {
            let done = (self.z.total_in() - start) as usize;
            if out.len() == out.capacity() {
                out.reserve(256);
            }
            self.z
                .compress_vec(&input[done..], &mut out, FlushCompress::Sync)
                .map_err(|e| HeaderError::Zlib(e.to_string()))?;
            // A sync flush is complete once all input is taken and the output was not full.
            if (self.z.total_in() - start) as usize == input.len() && out.len() < out.capacity() {
                return Ok(Bytes::from(out));
            }
        }
    }
}

/// The decompressing side of a session's header blocks.
pub struct Decompressor {
    z: Decompress,
    limit: usize,
}

impl Decompressor {
    /// A decompressor that refuses blocks larger than `limit` bytes once decompressed.
    pub fn new(limit: usize) -> Decompressor {
        Decompressor {
            z: Decompress::new(true),
            limit,
        }
    }

    /// Decompresses the next block of the session and reads its pairs.
    pub fn decompress(&mut self, compressed: &[u8]) -> Result<HeaderBlock, HeaderError> {
        let mut out: Vec<u8> = Vec::new();
        let start = self.z.total_in();
        loop {
            if out.len() > self.limit {
                return Err(HeaderError::TooLarge(self.limit));
            }
            if out.capacity() - out.len() < 256 {
                out.reserve(out.len().max(256));
            }
            let (in_before, out_before) = (self.z.total_in(), self.z.total_out());
            let done = (in_before - start) as usize;
            match self
                .z
                .decompress_vec(&compressed[done..], &mut out, FlushDecompress::Sync)
            {
                Ok(Status::StreamEnd) => {
                    return Err(HeaderError::Zlib(
                        "the session's compression stream ended".into(),
                    ))
                }
                Ok(_) => {}
                Err(e) => match e.needs_dictionary() {
                    Some(id) => {
                        // zlib checks the dictionary's adler32 against the stream's.
                        match self.z.set_dictionary(dictionary()) {
                            Ok(expected) if expected == id => continue,
                            _ => return Err(HeaderError::WrongDictionary(id)),
                        }
                    }
                    None => return Err(HeaderError::Zlib(e.to_string())),
                },
            }
            let consumed_all = (self.z.total_in() - start) as usize == compressed.len();
            let progressed = (self.z.total_in(), self.z.total_out()) != (in_before, out_before);
            // Done when the input is used up and zlib had room to spare (or had nothing more
            // to give), so that nothing of the block is left inside it.
            if consumed_all && (out.len() < out.capacity() || !progressed) {
                break;
            }
            if !progressed {
                return Err(HeaderError::Zlib(
                    "the block stops in the middle of compressed data".into(),
                ));
            }
        }
        if out.len() > self.limit {
            return Err(HeaderError::TooLarge(self.limit));
        }
        HeaderBlock::decode(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn block(pairs: &[(&str, &str)]) -> HeaderBlock {
        HeaderBlock(
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn the_dictionary_is_spdy_3s() {
        assert_eq!(dictionary().len(), 1423);
        let mut z = Compress::new(Compression::default(), true);
        assert_eq!(z.set_dictionary(dictionary()).unwrap(), 0xe3c6_a7c2);
    }

    #[test]
    fn blocks_survive_a_session_of_compression() {
        let mut c = Compressor::new();
        let mut d = Decompressor::new(1 << 16);
        let blocks = [
            block(&[("streamtype", "error"), ("port", "80"), ("requestid", "0")]),
            block(&[("streamtype", "data"), ("port", "80"), ("requestid", "0")]),
            block(&[]),
            block(&[("x", &"long value ".repeat(500))]),
        ];
        for b in &blocks {
            let compressed = c.compress(b).unwrap();
            assert_eq!(&d.decompress(&compressed).unwrap(), b);
        }
        // The shared context makes a repeated block much smaller.
        let again = c.compress(&blocks[1]).unwrap();
        assert!(again.len() < 16, "{} bytes", again.len());
        assert_eq!(d.decompress(&again).unwrap(), blocks[1]);
    }

    #[test]
    fn names_are_lower_case_and_looked_up_in_any_case() {
        let b = block(&[("streamType", "data\0other")]);
        let decoded = HeaderBlock::decode(&b.encode()).unwrap();
        assert_eq!(decoded.0[0].0, "streamtype");
        assert_eq!(decoded.get("StreamType"), Some("data"));
        assert_eq!(decoded.get("port"), None);
    }

    #[test]
    fn bad_blocks_are_named() {
        let mut d = Decompressor::new(1 << 16);
        let error = d.decompress(b"not zlib at all").unwrap_err();
        assert!(matches!(error, HeaderError::Zlib(_)), "{error}");

        // A zlib stream that asks for another dictionary.
        let mut z = Compress::new(Compression::default(), true);
        z.set_dictionary(b"another dictionary").unwrap();
        let mut out = Vec::with_capacity(128);
        z.compress_vec(&block(&[]).encode(), &mut out, FlushCompress::Sync)
            .unwrap();
        let error = Decompressor::new(1 << 16).decompress(&out).unwrap_err();
        assert!(matches!(error, HeaderError::WrongDictionary(_)), "{error}");

        let big = block(&[("x", &"y".repeat(10_000))]);
        let compressed = Compressor::new().compress(&big).unwrap();
        assert_eq!(
            Decompressor::new(1000).decompress(&compressed).unwrap_err(),
            HeaderError::TooLarge(1000)
        );

        for bad in [
            &[0u8, 0, 0][..],
            &[0, 0, 0, 1, 0, 0, 0, 9, b'a'],
            &[0xff; 8],
        ] {
            assert!(matches!(
                HeaderBlock::decode(bad),
                Err(HeaderError::Malformed(_))
            ));
        }
    }

    proptest! {
        #[test]
        fn random_compressed_bytes_never_panic(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..128), 1..4)
        ) {
            let mut d = Decompressor::new(4096);
            for chunk in chunks {
                if d.decompress(&chunk).is_err() {
                    break;
                }
            }
        }

        #[test]
        fn random_blocks_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = HeaderBlock::decode(&bytes);
        }

        #[test]
        fn random_pairs_round_trip(pairs in proptest::collection::vec(("[a-z-]{1,12}", "[ -~]{0,40}"), 0..8)) {
            let b = HeaderBlock(pairs);
            let mut c = Compressor::new();
            let mut d = Decompressor::new(1 << 16);
            prop_assert_eq!(d.decompress(&c.compress(&b).unwrap()).unwrap(), b);
        }
    }
}
