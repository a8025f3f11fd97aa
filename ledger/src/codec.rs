//! Canonical CBOR: one encoding per value, strictly decoded.
//!
//! The chain hashes and signs encoded bytes, so every value has exactly one
//! encoding (RFC 8949 core deterministic encoding, with struct fields in
//! declaration order rather than sorted) and the decoder refuses every other
//! form. Decoding runs in four steps:
//! 1. a size check, before any work;
//! 2. a structural pass over the raw bytes that refuses indefinite lengths,
//!    non-shortest integers and lengths, floats and simple values other than
//!    `false`/`true`/`null`, tags, invalid UTF-8, duplicate map keys, nesting
//!    deeper than the limit, more items than the limit, lengths the input
//!    cannot hold (so a claimed 2^60-element array allocates nothing), and
//!    trailing bytes;
//! 3. serde decoding with ciborium;
//! 4. re-encoding the value and requiring the very same bytes, which
//!    catches what step 2 cannot know (e.g. struct fields out of order).
//!
//! A gotcha for types that go on the wire: serde encodes `Vec<u8>` and
//! `[u8; N]` as arrays of integers; fixed-size byte values (hashes, ids,
//! signatures) implement `serialize_bytes` by hand to be CBOR byte strings.

use std::collections::HashSet;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Largest encoded value accepted by [`decode`].
pub const ENCODED_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Deepest nesting accepted by [`decode`].
pub const DEPTH_MAX: u32 = 32;
/// Most data items (of any kind, nested included) accepted by [`decode`].
pub const ITEMS_MAX: u32 = 4 * 1024 * 1024;

/// Limits for [`decode_with_limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest input.
    pub bytes_max: usize,
    /// Deepest nesting.
    pub depth_max: u32,
    /// Most data items.
    pub items_max: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            bytes_max: ENCODED_BYTES_MAX,
            depth_max: DEPTH_MAX,
            items_max: ITEMS_MAX,
        }
    }
}

/// A value could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot encode as CBOR: {0}")]
pub struct EncodeError(String);

impl EncodeError {
    /// An encoding error with a message (for wrapping a lower-level one).
    pub fn from_message(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// Why bytes are not the canonical encoding of a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Larger than the limit.
    #[error("{len} bytes exceed the {max}-byte limit")]
    TooLarge {
        /// Input length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The input ends inside an item.
    #[error("truncated at byte {at}")]
    Truncated {
        /// Offset.
        at: usize,
    },
    /// Bytes follow the single top-level item.
    #[error("{extra} trailing bytes after the value")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// An indefinite-length item.
    #[error("indefinite-length item at byte {at}")]
    IndefiniteLength {
        /// Offset.
        at: usize,
    },
    /// An integer or length not in its shortest form, or a reserved
    /// additional-information value.
    #[error("non-shortest or reserved head at byte {at}")]
    NonShortest {
        /// Offset.
        at: usize,
    },
    /// A float, undefined, a simple value or a break.
    #[error("float or simple value at byte {at}; only false, true and null are allowed")]
    Simple {
        /// Offset.
        at: usize,
    },
    /// A tag.
    #[error("tag at byte {at}; tags are not used")]
    Tag {
        /// Offset.
        at: usize,
    },
    /// A text string that is not UTF-8.
    #[error("invalid UTF-8 in the text string at byte {at}")]
    Utf8 {
        /// Offset.
        at: usize,
    },
    /// A map repeats a key.
    #[error("duplicate map key at byte {at}")]
    DuplicateKey {
        /// Offset of the repeated key.
        at: usize,
    },
    /// Nested deeper than the limit.
    #[error("nested deeper than {max}")]
    TooDeep {
        /// The limit.
        max: u32,
    },
    /// More items than the limit.
    #[error("more than {max} items")]
    TooManyItems {
        /// The limit.
        max: u32,
    },
    /// A declared length or count the input cannot hold.
    #[error(
        "item at byte {at} declares {declared} elements or bytes; only {remaining} bytes remain"
    )]
    LengthOverrun {
        /// Offset.
        at: usize,
        /// The declared length or count.
        declared: u64,
        /// Bytes left in the input.
        remaining: usize,
    },
    /// Well-formed CBOR, but not of the expected shape.
    #[error("not the expected value: {0}")]
    Shape(String),
    /// Decodes, but re-encodes differently: not canonical (e.g. fields out
    /// of order).
    #[error("not the canonical encoding of the value")]
    NonCanonical,
}

/// Encodes `value` canonically.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(value, &mut out).map_err(|e| EncodeError(e.to_string()))?;
    // Our own encoder must produce what our decoder accepts.
    debug_assert_eq!(
        validate(&out, &Limits::default()),
        Ok(()),
        "non-canonical encoding"
    );
    Ok(out)
}

/// Decodes `bytes`, which must be the canonical encoding of a `T`, with the
/// default [`Limits`].
pub fn decode<T: DeserializeOwned + Serialize>(bytes: &[u8]) -> Result<T, DecodeError> {
    decode_with_limits(bytes, &Limits::default())
}

/// Decodes with explicit limits.
pub fn decode_with_limits<T: DeserializeOwned + Serialize>(
    bytes: &[u8],
    limits: &Limits,
) -> Result<T, DecodeError> {
    validate(bytes, limits)?;
    let value: T =
        ciborium::de::from_reader(bytes).map_err(|e| DecodeError::Shape(e.to_string()))?;
    let again = encode(&value).map_err(|e| DecodeError::Shape(e.to_string()))?;
    if again != bytes {
        return Err(DecodeError::NonCanonical);
    }
    Ok(value)
}

/// The structural pass (step 2): accepts exactly one canonical data item.
pub fn validate(bytes: &[u8], limits: &Limits) -> Result<(), DecodeError> {
    if bytes.len() > limits.bytes_max {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max: limits.bytes_max,
        });
    }
    let mut walker = Walker {
        bytes,
        pos: 0,
        items: 0,
        limits,
    };
    walker.item(0)?;
    if walker.pos != bytes.len() {
        return Err(DecodeError::TrailingBytes {
            extra: bytes.len() - walker.pos,
        });
    }
    Ok(())
}

struct Walker<'a> {
    bytes: &'a [u8],
    pos: usize,
    items: u32,
    limits: &'a Limits,
}

impl Walker<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(DecodeError::Truncated { at: self.pos })?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    /// Reads a head: (major type, argument). Refuses indefinite lengths and
    /// non-shortest arguments.
    fn head(&mut self) -> Result<(u8, u64), DecodeError> {
        let at = self.pos;
        let initial = self.take(1)?[0];
        let major = initial >> 5;
        let info = initial & 0x1f;
        // Floats (and simple values in the extension byte) are major 7 with
        // an argument; refuse them before reading it as an integer.
        if major == 7 && info >= 24 {
            return Err(DecodeError::Simple { at });
        }
        let value = match info {
            0..=23 => u64::from(info),
            24 => {
                let v = u64::from(self.take(1)?[0]);
                if v < 24 {
                    return Err(DecodeError::NonShortest { at });
                }
                v
            }
            25 => {
                let b = self.take(2)?;
                let v = u64::from(u16::from_be_bytes([b[0], b[1]]));
                if v <= 0xff {
                    return Err(DecodeError::NonShortest { at });
                }
                v
            }
            26 => {
                let b = self.take(4)?;
                let v = u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                if v <= 0xffff {
                    return Err(DecodeError::NonShortest { at });
                }
                v
            }
            27 => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                let v = u64::from_be_bytes(a);
                if v <= 0xffff_ffff {
                    return Err(DecodeError::NonShortest { at });
                }
                v
            }
            31 if (2..=5).contains(&major) => return Err(DecodeError::IndefiniteLength { at }),
            _ => return Err(DecodeError::NonShortest { at }),
        };
        Ok((major, value))
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn item(&mut self, depth: u32) -> Result<(), DecodeError> {
        if depth > self.limits.depth_max {
            return Err(DecodeError::TooDeep {
                max: self.limits.depth_max,
            });
        }
        self.items += 1;
        if self.items > self.limits.items_max {
            return Err(DecodeError::TooManyItems {
                max: self.limits.items_max,
            });
        }
        let at = self.pos;
        let (major, arg) = self.head()?;
        let overrun = |remaining| DecodeError::LengthOverrun {
            at,
            declared: arg,
            remaining,
        };
        match major {
            0 | 1 => Ok(()),
            2 | 3 => {
                let len = usize::try_from(arg).map_err(|_| overrun(self.remaining()))?;
                if len > self.remaining() {
                    return Err(overrun(self.remaining()));
                }
                let content = self.take(len)?;
                if major == 3 && std::str::from_utf8(content).is_err() {
                    return Err(DecodeError::Utf8 { at });
                }
                Ok(())
            }
            4 => {
                // Each element takes at least one byte.
                if arg > self.remaining() as u64 {
                    return Err(overrun(self.remaining()));
                }
                for _ in 0..arg {
                    self.item(depth + 1)?;
                }
                Ok(())
            }
            5 => {
                if arg.saturating_mul(2) > self.remaining() as u64 {
                    return Err(overrun(self.remaining()));
                }
                // A set, not a list: a peer's map of n keys must not cost
                // n² comparisons (found by fuzzing; see the test below).
                let mut keys: HashSet<&[u8]> = HashSet::new();
                for _ in 0..arg {
                    let key_at = self.pos;
                    self.item(depth + 1)?;
                    let key = &self.bytes[key_at..self.pos];
                    if !keys.insert(key) {
                        return Err(DecodeError::DuplicateKey { at: key_at });
                    }
                    self.item(depth + 1)?;
                }
                Ok(())
            }
            6 => Err(DecodeError::Tag { at }),
            _ => match arg {
                // false, true, null
                20..=22 => Ok(()),
                _ => Err(DecodeError::Simple { at }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone, PartialEq)]
    struct Bytes32([u8; 32]);
    quorate_contracts::bytes32!(Bytes32, "32 bytes");

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    enum Kind {
        Unit,
        Number(u64),
        Pair { a: i64, b: String },
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Sample {
        n: u64,
        i: i64,
        text: String,
        id: Bytes32,
        list: Vec<u32>,
        maybe: Option<u16>,
        map: BTreeMap<String, u64>,
        kind: Kind,
        flag: bool,
    }

    fn sample() -> impl Strategy<Value = Sample> {
        (
            any::<u64>(),
            any::<i64>(),
            ".{0,20}",
            any::<[u8; 32]>(),
            proptest::collection::vec(any::<u32>(), 0..8),
            any::<Option<u16>>(),
            proptest::collection::btree_map(".{0,5}", any::<u64>(), 0..5),
            prop_oneof![
                Just(Kind::Unit),
                any::<u64>().prop_map(Kind::Number),
                (any::<i64>(), ".{0,5}").prop_map(|(a, b)| Kind::Pair { a, b })
            ],
            any::<bool>(),
        )
            .prop_map(|(n, i, text, id, list, maybe, map, kind, flag)| Sample {
                n,
                i,
                text,
                id: Bytes32(id),
                list,
                maybe,
                map,
                kind,
                flag,
            })
    }

    fn reject(bytes: &[u8]) -> DecodeError {
        validate(bytes, &Limits::default()).unwrap_err()
    }

    #[test]
    fn every_non_canonical_form_is_refused_with_its_own_error() {
        assert!(matches!(
            reject(&[0x18, 0x05]),
            DecodeError::NonShortest { .. }
        )); // 5 in 2 bytes
        assert!(matches!(
            reject(&[0x19, 0x00, 0xff]),
            DecodeError::NonShortest { .. }
        ));
        assert!(matches!(
            reject(&[0x1a, 0, 0, 0xff, 0xff]),
            DecodeError::NonShortest { .. }
        ));
        assert!(matches!(
            reject(&[0x1b, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]),
            DecodeError::NonShortest { .. }
        ));
        assert!(matches!(reject(&[0x1c]), DecodeError::NonShortest { .. })); // reserved
        assert!(matches!(
            reject(&[0x9f, 0x01, 0xff]),
            DecodeError::IndefiniteLength { .. }
        ));
        assert!(matches!(
            reject(&[0x5f, 0x41, 0x00, 0xff]),
            DecodeError::IndefiniteLength { .. }
        ));
        assert!(matches!(
            reject(&[0xf9, 0x3c, 0x00]),
            DecodeError::Simple { .. }
        )); // half float 1.0
        assert!(matches!(
            reject(&[0xfb, 0, 0, 0, 0, 0, 0, 0, 0]),
            DecodeError::Simple { .. }
        ));
        assert!(matches!(reject(&[0xf7]), DecodeError::Simple { .. })); // undefined
        assert!(matches!(reject(&[0xff]), DecodeError::Simple { .. })); // break
        assert!(matches!(reject(&[0xc1, 0x00]), DecodeError::Tag { .. }));
        assert!(matches!(
            reject(&[0x62, 0xc3, 0x28]),
            DecodeError::Utf8 { .. }
        ));
        assert!(matches!(
            reject(&[0xa2, 0x61, 0x61, 0x01, 0x61, 0x61, 0x02]),
            DecodeError::DuplicateKey { .. }
        ));
        assert!(matches!(
            reject(&[0x01, 0x02]),
            DecodeError::TrailingBytes { extra: 1 }
        ));
        assert!(matches!(
            reject(&[0x82, 0x01]),
            DecodeError::LengthOverrun { .. }
        ));
        assert!(matches!(
            reject(&[0x83, 0x01, 0x19, 0x01]),
            DecodeError::Truncated { .. }
        ));
        assert!(matches!(reject(&[]), DecodeError::Truncated { .. }));
        // An array claiming 2^60 elements is refused before any allocation.
        let huge = [0x9b, 0x10, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(reject(&huge), DecodeError::LengthOverrun { .. }));
        let long_bytes = [0x5a, 0x00, 0x01, 0x00, 0x00];
        assert!(matches!(
            reject(&long_bytes),
            DecodeError::LengthOverrun { .. }
        ));
        let mut deep = vec![0x81; 40];
        deep.push(0x00);
        assert!(matches!(reject(&deep), DecodeError::TooDeep { .. }));
        let limits = Limits {
            bytes_max: 2,
            ..Limits::default()
        };
        assert!(matches!(
            validate(&[0x83, 1, 2, 3], &limits),
            Err(DecodeError::TooLarge { .. })
        ));
    }

    /// A canonical map of `n` distinct unsigned keys (5-byte heads), each
    /// with a `null` value, then `extra` appended as one more entry's key.
    fn wide_map(n: u32, extra: Option<u32>) -> Vec<u8> {
        let count = n + u32::from(extra.is_some());
        let mut out = vec![0xba];
        out.extend_from_slice(&count.to_be_bytes());
        for key in (0..n).map(|i| i + 0x1_0000).chain(extra) {
            out.push(0x1a);
            out.extend_from_slice(&key.to_be_bytes());
            out.push(0xf6);
        }
        out
    }

    #[test]
    fn a_wide_map_is_validated_in_linear_time() {
        // Fuzzing found that duplicate keys were looked for in a list: a
        // 60 KB map of 10,000 keys (under a peer request's 64 KiB limit)
        // took seconds, and an 8 MiB gossip message would have taken days.
        // 200,000 keys (1.2 MB) took minutes that way; with a set, well
        // under a second even unoptimized.
        let (done, wait) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let wide = wide_map(200_000, None);
            let repeated = wide_map(200_000, Some(0x1_0000 + 123));
            let _ = done.send((
                validate(&wide, &Limits::default()),
                validate(&repeated, &Limits::default()),
            ));
        });
        let (wide, repeated) = wait
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("validating a 200,000-key map took over 20 s");
        assert_eq!(wide, Ok(()));
        // The repeated key is the last entry's: 5 + 200,000 × 6 bytes in.
        assert_eq!(
            repeated,
            Err(DecodeError::DuplicateKey {
                at: 5 + 200_000 * 6
            })
        );
    }

    #[test]
    fn fields_out_of_order_are_not_canonical() {
        #[derive(Debug, Serialize, Deserialize)]
        struct Ab {
            a: u8,
            b: u8,
        }
        // {"b": 1, "a": 2}: well-formed, decodes, but re-encodes as {"a", "b"}.
        let swapped = [0xa2, 0x61, b'b', 0x01, 0x61, b'a', 0x02];
        assert_eq!(
            decode::<Ab>(&swapped).unwrap_err(),
            DecodeError::NonCanonical
        );
        let canonical = encode(&Ab { a: 2, b: 1 }).unwrap();
        assert_eq!(canonical, [0xa2, 0x61, b'a', 0x02, 0x61, b'b', 0x01]);
    }

    #[test]
    fn a_value_of_the_wrong_shape_is_refused() {
        let bytes = encode(&"text").unwrap();
        assert!(matches!(decode::<u64>(&bytes), Err(DecodeError::Shape(_))));
    }

    proptest! {
        #[test]
        fn round_trips_and_reencodes_identically(value in sample()) {
            let bytes = encode(&value).unwrap();
            let back: Sample = decode(&bytes).unwrap();
            prop_assert_eq!(&back, &value);
            prop_assert_eq!(encode(&back).unwrap(), bytes);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode::<Sample>(&bytes);
        }

        #[test]
        fn mutated_encodings_never_panic_and_never_decode_to_a_different_canonical_form(
            value in sample(),
            at in any::<usize>(),
            byte in any::<u8>(),
        ) {
            let mut bytes = encode(&value).unwrap();
            let i = at % bytes.len();
            bytes[i] = byte;
            if let Ok(decoded) = decode::<Sample>(&bytes) {
                // Anything accepted is canonical: it re-encodes to the input.
                prop_assert_eq!(encode(&decoded).unwrap(), bytes);
            }
        }
    }
}
