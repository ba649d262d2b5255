//! Content digests (`sha256:<64 hex>`) and a writer that checks one while bytes go through it.

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::ImageError;

/// A content digest. Only `sha256` is accepted: it is what the OCI image spec requires
/// registries to support and what every registry minik met uses.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    /// 64 lower-case hex digits.
    hex: String,
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest {
            hex: hex::encode(Sha256::digest(bytes)),
        }
    }

    /// The 64 hex digits, without the algorithm: a file name in the store.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex digits, as `docker images` and `crictl images` show an image id.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

impl FromStr for Digest {
    type Err = ImageError;

    fn from_str(s: &str) -> Result<Digest, ImageError> {
        let invalid = |why: &str| ImageError::InvalidDigest {
            digest: s.to_string(),
            why: why.to_string(),
        };
        let (algorithm, hex) = s
            .split_once(':')
            .ok_or_else(|| invalid("expected ALGORITHM:HEX"))?;
        if algorithm != "sha256" {
            return Err(invalid("only sha256 digests are supported"));
        }
        if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(invalid("a sha256 digest is 64 lower-case hex digits"));
        }
        Ok(Digest {
            hex: hex.to_string(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Hashes and counts what is written through it, so that a blob is checked against its digest
/// while it is stored, never read twice.
pub struct Verifier<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W> Verifier<W> {
    pub fn new(inner: W) -> Verifier<W> {
        Verifier {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// Feeds bytes that went to the inner writer by another way (an async write).
    pub fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.written += bytes.len() as u64;
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    pub fn inner_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// The digest and size of everything written, and the inner writer.
    pub fn finish(self) -> (Digest, u64, W) {
        let digest = Digest {
            hex: hex::encode(self.hasher.finalize()),
        };
        (digest, self.written, self.inner)
    }

    /// Checks what was written against the expected digest (and size, when known).
    pub fn verify(self, expected: &Digest, size: Option<u64>) -> Result<W, ImageError> {
        let (actual, written, inner) = self.finish();
        if let Some(size) = size {
            if written != size {
                return Err(ImageError::SizeMismatch {
                    digest: expected.clone(),
                    expected: size,
                    actual: written,
                });
            }
        }
        if &actual != expected {
            return Err(ImageError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        Ok(inner)
    }
}

impl<W: Write> Write for Verifier<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_sha256() {
        let d = Digest::of(b"");
        assert_eq!(
            d.to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        assert_eq!(d.short(), "e3b0c44298fc");
    }

    #[test]
    fn refuses_what_is_not_a_sha256_digest() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85",
            "sha256:../../../../etc/passwd00000000000000000000000000000000000000000",
        ] {
            let e = bad.parse::<Digest>().unwrap_err();
            assert!(e.to_string().contains("digest"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_verifier_refuses_other_content_and_other_sizes() {
        let expected = Digest::of(b"hello");
        let mut v = Verifier::new(Vec::new());
        v.write_all(b"hello").unwrap();
        assert_eq!(v.verify(&expected, Some(5)).unwrap(), b"hello");

        let mut v = Verifier::new(Vec::new());
        v.write_all(b"hellO").unwrap();
        let e = v.verify(&expected, Some(5)).unwrap_err();
        assert!(matches!(e, ImageError::DigestMismatch { .. }), "{e}");

        let mut v = Verifier::new(Vec::new());
        v.write_all(b"hell").unwrap();
        let e = v.verify(&expected, Some(5)).unwrap_err();
        assert!(matches!(e, ImageError::SizeMismatch { .. }), "{e}");
    }
}
