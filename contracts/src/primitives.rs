//! Small value types every other crate shares.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch (UTC). The only notion of time in the
/// pure crates: callers pass `now` in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The timestamp `ms` milliseconds later, saturating at the maximum.
    pub fn saturating_add_ms(self, ms: u64) -> Self {
        Self(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later.
    pub fn saturating_ms_since(self, earlier: Self) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// `ms` as a human duration: one unit when it divides evenly and the count
/// stays small (`732 days`, `12 h`, `90 min`), else its parts (`4 d 4 h`).
pub fn human_duration_ms(ms: u64) -> String {
    const UNITS: [(u64, &str); 5] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "min"),
        (1_000, "s"),
        (1, "ms"),
    ];
    if ms == 0 {
        return "0 ms".to_owned();
    }
    // Days are the largest unit, so any count of them reads well.
    if ms.is_multiple_of(86_400_000) {
        let days = ms / 86_400_000;
        return format!("{days} {}", if days == 1 { "day" } else { "days" });
    }
    for (unit_ms, name) in &UNITS[1..] {
        if ms.is_multiple_of(*unit_ms) && ms / unit_ms < 100 {
            return format!("{} {name}", ms / unit_ms);
        }
    }
    let mut parts = Vec::new();
    let mut rest = ms;
    for (unit_ms, name) in UNITS {
        if rest >= unit_ms {
            parts.push(format!("{} {name}", rest / unit_ms));
            rest %= unit_ms;
        }
    }
    parts.join(" ")
}

/// Days since 1970-01-01 as `(year, month, day)` (Howard Hinnant's
/// `civil_from_days`, for days >= 0).
pub fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + u64::from(month <= 2), month, day)
}

/// `ms` since the Unix epoch as an RFC 3339 UTC instant:
/// `2027-03-31T00:00:00Z`, with `.mmm` only when it is not a whole second.
pub fn rfc3339_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rest = secs % 86_400;
    let (hour, minute, second) = (rest / 3600, rest % 3600 / 60, rest % 60);
    let fraction = match ms % 1000 {
        0 => String::new(),
        millis => format!(".{millis:03}"),
    };
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}Z")
}

/// A member organization's stable identity on the ledger: the blake3 hash of
/// the entry that admitted it (genesis or `AddMember`). It survives key
/// rotation, so grants name members, not keys. Computed by the ledger;
/// opaque here.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemberId(pub [u8; 32]);

impl fmt::Debug for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MemberId(")?;
        for b in &self.0[..6] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

crate::bytes32!(MemberId, "a 32-byte member id as a byte string");

/// Parses 64 hex digits (either case) into 32 bytes.
pub fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let bytes = s.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// Hex `Display` and serde as a CBOR byte string for a newtype over
/// `[u8; 32]` (ids and hashes); `$expecting` names it in decode errors.
/// One definition for every such type, here and in `ledger`.
#[macro_export]
macro_rules! bytes32 {
    ($ty:ident, $expecting:literal) => {
        impl ::core::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                for b in &self.0 {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }

        impl $crate::__serde::Serialize for $ty {
            fn serialize<S: $crate::__serde::Serializer>(
                &self,
                serializer: S,
            ) -> Result<S::Ok, S::Error> {
                serializer.serialize_bytes(&self.0)
            }
        }

        impl<'de> $crate::__serde::Deserialize<'de> for $ty {
            fn deserialize<D: $crate::__serde::Deserializer<'de>>(
                deserializer: D,
            ) -> Result<Self, D::Error> {
                struct Visitor;
                impl $crate::__serde::de::Visitor<'_> for Visitor {
                    type Value = $ty;
                    fn expecting(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_bytes<E: $crate::__serde::de::Error>(
                        self,
                        v: &[u8],
                    ) -> Result<$ty, E> {
                        <[u8; 32]>::try_from(v)
                            .map($ty)
                            .map_err(|_| E::invalid_length(v.len(), &self))
                    }
                }
                deserializer.deserialize_bytes(Visitor)
            }
        }
    };
}

/// `text` cut to at most `max` bytes, at a character boundary (whole if it
/// fits): for bounding what a peer or client sent before keeping it.
pub fn truncate_at_char(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod truncate_tests {
    use super::truncate_at_char;

    #[test]
    fn text_is_cut_at_a_character_boundary_and_never_past_its_bound() {
        assert_eq!(truncate_at_char("abc", 3), "abc");
        assert_eq!(truncate_at_char("abcd", 3), "abc");
        assert_eq!(truncate_at_char("éé", 3), "é");
        assert_eq!(truncate_at_char("é", 1), "");
    }
}
