//! The protobuf wire format, read without a schema: varints, tags, length-delimited slices and
//! fixed-width numbers (<https://protobuf.dev/programming-guides/encoding/>). Every read checks
//! the bounds; a malformed input is an error naming what was wrong, never a panic.

/// How a field's value is laid out on the wire (the low three bits of its tag).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WireType {
    Varint,
    Fixed64,
    LengthDelimited,
    Fixed32,
}

impl WireType {
    pub(crate) fn name(self) -> &'static str {
        match self {
            WireType::Varint => "varint",
            WireType::Fixed64 => "64-bit",
            WireType::LengthDelimited => "length-delimited",
            WireType::Fixed32 => "32-bit",
        }
    }
}

/// A cursor over one message's bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn varint(&mut self) -> Result<u64, String> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err("a varint runs past the end of the data".into());
            };
            self.pos += 1;
            // The tenth byte may only carry the top bit of a 64-bit value.
            if i == 9 && byte > 1 {
                return Err("a varint is longer than 64 bits".into());
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a varint is longer than 10 bytes".into())
    }

    /// The next field's number and wire type.
    pub(crate) fn tag(&mut self) -> Result<(u32, WireType), String> {
        let tag = self.varint()?;
        let number = tag >> 3;
        if number == 0 || number > (1 << 29) - 1 {
            return Err(format!("field number {number} is out of range"));
        }
        let wire = match tag & 7 {
            0 => WireType::Varint,
            1 => WireType::Fixed64,
            2 => WireType::LengthDelimited,
            5 => WireType::Fixed32,
            3 | 4 => {
                return Err(format!(
                    "field {number} uses groups (wire types 3 and 4), which Kubernetes never sends"
                ))
            }
            other => return Err(format!("field {number} has invalid wire type {other}")),
        };
        Ok((number as u32, wire))
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = self.varint()?;
        let remaining = (self.buf.len() - self.pos) as u64;
        if len > remaining {
            return Err(format!(
                "a length-delimited value of {len} bytes runs past the end of the data ({remaining} bytes left)"
            ));
        }
        let start = self.pos;
        self.pos += len as usize;
        Ok(&self.buf[start..self.pos])
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let Some(slice) = self.buf.get(self.pos..self.pos + N) else {
            return Err(format!(
                "a {}-bit value runs past the end of the data",
                N * 8
            ));
        };
        self.pos += N;
        let mut out = [0u8; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    pub(crate) fn fixed64(&mut self) -> Result<u64, String> {
        self.fixed::<8>().map(u64::from_le_bytes)
    }

    pub(crate) fn fixed32(&mut self) -> Result<u32, String> {
        self.fixed::<4>().map(u32::from_le_bytes)
    }

    /// Steps over a value of the given wire type; whether it was a zero value (0, or nothing
    /// for a string, bytes or an empty message).
    pub(crate) fn skip(&mut self, wire: WireType) -> Result<bool, String> {
        match wire {
            WireType::Varint => self.varint().map(|v| v == 0),
            WireType::Fixed64 => self.fixed64().map(|v| v == 0),
            WireType::LengthDelimited => self.bytes().map(<[u8]>::is_empty),
            WireType::Fixed32 => self.fixed32().map(|v| v == 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_decode_and_overlong_ones_fail() {
        assert_eq!(Reader::new(&[0x96, 0x01]).varint(), Ok(150));
        assert_eq!(Reader::new(&[0x00]).varint(), Ok(0));
        // -1 as an int32/int64 is ten bytes on the wire.
        let minus_one = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(Reader::new(&minus_one).varint(), Ok(u64::MAX));
        let too_long = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert!(Reader::new(&too_long).varint().is_err());
        assert!(Reader::new(&[0x80]).varint().is_err());
    }

    #[test]
    fn lengths_past_the_end_are_errors() {
        let err = Reader::new(&[0x05, 1, 2]).bytes().unwrap_err();
        assert!(err.contains("5 bytes"), "{err}");
        assert_eq!(Reader::new(&[0x02, 1, 2]).bytes(), Ok(&[1u8, 2][..]));
        assert!(Reader::new(&[1, 2, 3]).fixed32().is_err());
    }

    #[test]
    fn tags_name_groups_and_bad_wire_types() {
        assert_eq!(
            Reader::new(&[0x0a]).tag(),
            Ok((1, WireType::LengthDelimited))
        );
        assert!(Reader::new(&[0x0b]).tag().unwrap_err().contains("groups"));
        assert!(Reader::new(&[0x0e])
            .tag()
            .unwrap_err()
            .contains("wire type 6"));
        assert!(Reader::new(&[0x02])
            .tag()
            .unwrap_err()
            .contains("out of range"));
    }
}
