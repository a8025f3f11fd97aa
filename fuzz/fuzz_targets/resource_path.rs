//! Resource paths and patterns from outside (gateway URLs, listing
//! prefixes, grant proposals): `ResourcePath::parse`, `ResourcePattern::parse`.
//!
//! Properties: a parsed path has no traversal: no `.` or `..` segment, no
//! empty segment (so no leading, trailing or double `/`), only
//! `[A-Za-z0-9._-]` in segments, within the byte and segment limits; it
//! prints back as the input and survives canonical CBOR; a parsed pattern
//! prints back as the input and parses again to itself; a prefix pattern
//! matches only paths strictly under it, and an exact one only itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quorate_contracts::model::{PATH_BYTES_MAX, PATH_SEGMENTS_MAX};
use quorate_contracts::{ResourcePath, ResourcePattern};
use quorate_fuzz::round_trip;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Input: a path or pattern, optionally a newline and a path to match.
    let (first, second) = text.split_once('\n').unwrap_or((text, ""));
    let path = ResourcePath::parse(first);
    if let Ok(path) = &path {
        check_path(path, first);
    }
    if let Ok(pattern) = ResourcePattern::parse(first) {
        let printed = pattern.to_string();
        assert_eq!(printed, first, "a pattern prints differently");
        assert_eq!(ResourcePattern::parse(&printed).as_ref(), Ok(&pattern));
        let cbor = quorate_ledger::codec::encode(&pattern).expect("cbor");
        assert_eq!(
            round_trip::<ResourcePattern>(&cbor).as_ref(),
            Some(&pattern)
        );
        if let Ok(candidate) = ResourcePath::parse(second) {
            check_path(&candidate, second);
            let matches = pattern.matches(&candidate);
            match &pattern {
                ResourcePattern::All => assert!(matches),
                ResourcePattern::Exact(p) => assert_eq!(matches, *p == candidate),
                ResourcePattern::Prefix(p) => assert_eq!(
                    matches,
                    second.len() > p.as_str().len() + 1
                        && second.starts_with(p.as_str())
                        && second.as_bytes()[p.as_str().len()] == b'/'
                ),
            }
        }
    } else {
        assert!(path.is_err(), "an exact path is always a pattern");
    }
});

fn check_path(path: &ResourcePath, text: &str) {
    assert_eq!(path.to_string(), text);
    assert_eq!(path.as_str(), text);
    assert!(!text.is_empty() && text.len() <= PATH_BYTES_MAX);
    let segments: Vec<&str> = text.split('/').collect();
    assert!(segments.len() <= PATH_SEGMENTS_MAX);
    for segment in segments {
        assert!(!segment.is_empty(), "empty segment in {text:?}");
        assert!(segment != "." && segment != "..", "traversal in {text:?}");
        assert!(
            segment
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')),
            "character outside the alphabet in {text:?}"
        );
    }
    let cbor = quorate_ledger::codec::encode(path).expect("cbor");
    assert_eq!(round_trip::<ResourcePath>(&cbor).as_ref(), Some(path));
}
