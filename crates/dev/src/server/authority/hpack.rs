//! HPACK (RFC 7541) for the `:authority` front: a decoder that follows the client's dynamic
//! table, and an encoder that never touches the peer's.
//!
//! Representations, integers, strings and the dynamic table are decoded here, so the caps apply
//! as each field is decoded (an HPACK bomb stops at the first field over the list cap). Huffman
//! strings go to `loona_hpack`'s Huffman decoder, built once per connection. Its whole-block
//! decoder is not used: it rebuilds the Huffman tables for every string, so a 64 KiB block of
//! one-byte Huffman strings cost 0.42 s of CPU (release build); here it costs 0.7 ms, and the
//! worst 64 KiB block (one long Huffman string) 8 ms.

use std::collections::VecDeque;
use std::fmt;

use loona_hpack::huffman::{HuffmanDecoder, HuffmanDecoderError};

/// RFC 7541 §4.1: an entry's size is its name and value lengths plus 32.
pub(super) const ENTRY_OVERHEAD: usize = 32;

/// Why a header block is not valid HPACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum HpackError {
    /// The block ends inside a representation.
    #[error("header block ends inside a field representation")]
    Truncated,
    /// An integer needs more octets than any value the block could use (RFC 7541 §5.1).
    #[error("integer encoding is too long")]
    IntegerTooLong,
    /// Index 0, or past the end of the static and dynamic tables (RFC 7541 §2.3.3).
    #[error("index {index} is not in the header table")]
    BadIndex {
        /// The index as the block encodes it (1-based, static table first).
        index: usize,
    },
    /// A Huffman string is not valid (RFC 7541 §5.2).
    #[error("huffman string is invalid: {reason}")]
    Huffman {
        /// What the Huffman decoder found, as a fixed phrase (`EOS symbol in the string`).
        reason: &'static str,
    },
    /// A dynamic table size update above what the server allows (RFC 7541 §6.3).
    #[error("dynamic table size update to {size} exceeds the limit of {max}")]
    TableSizeAboveLimit {
        /// The size the peer asked for, in octets (RFC 7541 §4.1).
        size: usize,
        /// The largest size the peer may set, in octets.
        max: usize,
    },
    /// A dynamic table size update after the first field of a block (RFC 7541 §4.2).
    #[error("dynamic table size update after a header field")]
    LateTableSizeUpdate,
    /// The decoded list exceeds the cap; decoding stopped at the field that crossed it.
    #[error("decoded header list exceeds {max} bytes")]
    ListTooLarge {
        /// The cap passed to the decoder, in RFC 9113 §6.5.2 bytes (name + value + 32 per field).
        max: usize,
    },
}

/// One decoded header field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Field {
    pub(super) name: Vec<u8>,
    pub(super) value: Vec<u8>,
    /// Sent as "never indexed" (RFC 7541 §6.2.3), which an intermediary must keep.
    pub(super) never_indexed: bool,
}

/// The decoding side of one connection's HPACK context.
pub(super) struct Decoder {
    /// Newest first: index 62 is `dynamic[0]`.
    dynamic: VecDeque<Field>,
    size: usize,
    max_size: usize,
    limit: usize,
    huffman: Option<HuffmanDecoder>,
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("entries", &self.dynamic.len())
            .field("size", &self.size)
            .field("max_size", &self.max_size)
            .finish_non_exhaustive()
    }
}

impl Decoder {
    /// A decoder whose peer may use a dynamic table of up to `limit` bytes (the server's
    /// `SETTINGS_HEADER_TABLE_SIZE`), which is also the initial size.
    pub(super) fn new(limit: usize) -> Self {
        Self {
            dynamic: VecDeque::new(),
            size: 0,
            max_size: limit,
            limit,
            huffman: None,
        }
    }

    /// Decodes one complete header block, stopping at the first field that makes the list
    /// (RFC 9113 §6.5.2 sizes) exceed `max_list`.
    ///
    /// # Errors
    /// [`HpackError`]; the context is then unusable and the connection must close.
    pub(super) fn decode(
        &mut self,
        block: &[u8],
        max_list: usize,
    ) -> Result<Vec<Field>, HpackError> {
        let mut input = Input { bytes: block };
        let mut fields = Vec::new();
        let mut list_size = 0usize;
        let mut any_field = false;
        while let Some(&first) = input.bytes.first() {
            let field = if first & 0x80 != 0 {
                let index = input.integer(7)?;
                self.entry(index)?.clone()
            } else if first & 0xc0 == 0x40 {
                let field = self.literal(&mut input, 6)?;
                self.insert(field.clone());
                field
            } else if first & 0xe0 == 0x20 {
                if any_field {
                    return Err(HpackError::LateTableSizeUpdate);
                }
                let size = input.integer(5)?;
                if size > self.limit {
                    return Err(HpackError::TableSizeAboveLimit {
                        size,
                        max: self.limit,
                    });
                }
                self.max_size = size;
                self.evict();
                continue;
            } else {
                // 0000 (without indexing) and 0001 (never indexed).
                let mut field = self.literal(&mut input, 4)?;
                field.never_indexed = first & 0x10 != 0;
                field
            };
            any_field = true;
            list_size =
                list_size.saturating_add(field.name.len() + field.value.len() + ENTRY_OVERHEAD);
            if list_size > max_list {
                return Err(HpackError::ListTooLarge { max: max_list });
            }
            fields.push(field);
        }
        Ok(fields)
    }

    fn literal(&mut self, input: &mut Input<'_>, prefix_bits: u32) -> Result<Field, HpackError> {
        let index = input.integer(prefix_bits)?;
        let name = match index {
            0 => self.string(input)?,
            index => self.entry(index)?.name.clone(),
        };
        let value = self.string(input)?;
        Ok(Field {
            name,
            value,
            never_indexed: false,
        })
    }

    fn string(&mut self, input: &mut Input<'_>) -> Result<Vec<u8>, HpackError> {
        let huffman = input.bytes.first().is_some_and(|b| b & 0x80 != 0);
        let len = input.integer(7)?;
        let raw = input.take(len)?;
        if !huffman {
            return Ok(raw.to_vec());
        }
        // Huffman output is at most 8/5 of its input, so the block cap bounds it; a string
        // alone over the list cap fails the list check right after.
        self.huffman
            .get_or_insert_with(HuffmanDecoder::new)
            .decode(raw)
            .map_err(|e| HpackError::Huffman {
                reason: match e {
                    HuffmanDecoderError::PaddingTooLarge => "padding longer than 7 bits",
                    HuffmanDecoderError::InvalidPadding => "padding is not the EOS prefix",
                    HuffmanDecoderError::EOSInString => "EOS symbol in the string",
                    _ => "undecodable",
                },
            })
    }

    fn entry(&self, index: usize) -> Result<&Field, HpackError> {
        let bad = HpackError::BadIndex { index };
        match index {
            0 => Err(bad),
            i if i <= STATIC_TABLE.len() => STATIC_FIELDS.get(i - 1).ok_or(bad),
            i => self.dynamic.get(i - STATIC_TABLE.len() - 1).ok_or(bad),
        }
    }

    /// RFC 7541 §4.4: evict from the oldest end; an entry larger than the table empties it
    /// and is not added.
    fn insert(&mut self, field: Field) {
        let size = field.name.len() + field.value.len() + ENTRY_OVERHEAD;
        if size > self.max_size {
            self.dynamic.clear();
            self.size = 0;
            return;
        }
        self.size += size;
        self.dynamic.push_front(field);
        self.evict();
    }

    fn evict(&mut self) {
        while self.size > self.max_size {
            let Some(old) = self.dynamic.pop_back() else {
                self.size = 0;
                break;
            };
            self.size -= old.name.len() + old.value.len() + ENTRY_OVERHEAD;
        }
    }
}

struct Input<'a> {
    bytes: &'a [u8],
}

impl<'a> Input<'a> {
    /// RFC 7541 §5.1. Values above `u32::MAX` are refused: nothing in a capped block needs them.
    fn integer(&mut self, prefix_bits: u32) -> Result<usize, HpackError> {
        let (&first, mut rest) = self.bytes.split_first().ok_or(HpackError::Truncated)?;
        let max_prefix = (1u64 << prefix_bits) - 1;
        let mut value = u64::from(first) & max_prefix;
        if value == max_prefix {
            let mut shift = 0u32;
            loop {
                let (&byte, tail) = rest.split_first().ok_or(HpackError::Truncated)?;
                rest = tail;
                value += u64::from(byte & 0x7f) << shift;
                if value > u64::from(u32::MAX) {
                    return Err(HpackError::IntegerTooLong);
                }
                if byte & 0x80 == 0 {
                    break;
                }
                shift += 7;
                if shift > 28 {
                    return Err(HpackError::IntegerTooLong);
                }
            }
        }
        self.bytes = rest;
        usize::try_from(value).map_err(|_| HpackError::IntegerTooLong)
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], HpackError> {
        if len > self.bytes.len() {
            return Err(HpackError::Truncated);
        }
        let (now, rest) = self.bytes.split_at(len);
        self.bytes = rest;
        Ok(now)
    }
}

/// RFC 7541 §6.2.2 (or §6.2.3 for a never-indexed field) with a literal name: neither side's
/// dynamic table changes.
pub(super) fn encode_literal(out: &mut Vec<u8>, field: &Field) {
    out.push(if field.never_indexed { 0x10 } else { 0x00 });
    encode_raw_string(out, &field.name);
    encode_raw_string(out, &field.value);
}

/// [`encode_literal`] for a field that may be indexed by others.
#[cfg(test)]
pub(super) fn encode_literal_without_indexing(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    let field = Field {
        name: name.to_vec(),
        value: value.to_vec(),
        never_indexed: false,
    };
    encode_literal(out, &field);
}

/// RFC 7541 §5.2 without Huffman coding.
fn encode_raw_string(out: &mut Vec<u8>, s: &[u8]) {
    encode_integer(out, s.len(), 7, 0x00);
    out.extend_from_slice(s);
}

/// RFC 7541 §5.1: `value` with an N-bit prefix, the first octet's high bits set to `flags`.
pub(super) fn encode_integer(out: &mut Vec<u8>, value: usize, prefix_bits: u32, flags: u8) {
    let max_prefix = (1usize << prefix_bits) - 1;
    if value < max_prefix {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max_prefix as u8);
    let mut rest = value - max_prefix;
    while rest >= 0x80 {
        out.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    out.push(rest as u8);
}

static STATIC_FIELDS: std::sync::LazyLock<Vec<Field>> = std::sync::LazyLock::new(|| {
    STATIC_TABLE
        .iter()
        .map(|(name, value)| Field {
            name: name.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            never_indexed: false,
        })
        .collect()
});

/// RFC 7541 Appendix A, indices 1 to 61.
pub(super) const STATIC_TABLE: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];
