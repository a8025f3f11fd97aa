//! The part of RFC 8941 (Structured Field Values) that RFC 9421 needs:
//! dictionaries whose members are inner lists of strings with parameters
//! (`Signature-Input`) or byte sequences (`Signature`, `Content-Digest`).
//! Strict: anything else is an error, never a guess.

use base64::Engine as _;

/// A bare item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    String(String),
    Token(String),
    Integer(i64),
    Boolean(bool),
    Bytes(Vec<u8>),
}

/// A dictionary member's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Member {
    Item(Item),
    InnerList(Vec<Item>),
}

/// A dictionary member with its parameters and its raw text (RFC 9421 signs
/// the `@signature-params` exactly as the sender serialized them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) key: String,
    pub(crate) value: Member,
    pub(crate) params: Vec<(String, Item)>,
    pub(crate) raw: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed structured field at byte {at}: {what}")]
pub(crate) struct ParseError {
    at: usize,
    what: &'static str,
}

/// Most dictionary members, inner-list items and parameters we parse.
const ITEMS_MAX: usize = 64;

struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
}

pub(crate) fn parse_dictionary(input: &str) -> Result<Vec<Entry>, ParseError> {
    let mut p = Parser {
        input: input.as_bytes(),
        pos: 0,
    };
    p.skip_sp();
    let mut entries = Vec::new();
    while p.pos < p.input.len() {
        if entries.len() == ITEMS_MAX {
            return Err(p.err("too many members"));
        }
        let key = p.key()?;
        let has_value = p.peek() == Some(b'=');
        if has_value {
            p.pos += 1;
        }
        let raw_start = p.pos;
        let value = match (has_value, p.peek()) {
            (false, _) => Member::Item(Item::Boolean(true)),
            (true, Some(b'(')) => Member::InnerList(p.inner_list()?),
            (true, _) => Member::Item(p.bare_item()?),
        };
        let params = p.params()?;
        let raw = String::from_utf8_lossy(&p.input[raw_start..p.pos]).into_owned();
        if entries.iter().any(|e: &Entry| e.key == key) {
            return Err(p.err("duplicate key"));
        }
        entries.push(Entry {
            key,
            value,
            params,
            raw,
        });
        p.skip_ows();
        match p.peek() {
            None => break,
            Some(b',') => {
                p.pos += 1;
                p.skip_ows();
                if p.peek().is_none() {
                    return Err(p.err("trailing comma"));
                }
            }
            Some(_) => return Err(p.err("expected ','")),
        }
    }
    Ok(entries)
}

impl Parser<'_> {
    fn err(&self, what: &'static str) -> ParseError {
        ParseError { at: self.pos, what }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn skip_sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn key(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        match self.peek() {
            Some(c) if c.is_ascii_lowercase() || c == b'*' => self.pos += 1,
            _ => return Err(self.err("expected a key")),
        }
        while let Some(c) = self.peek() {
            if c.is_ascii_lowercase()
                || c.is_ascii_digit()
                || matches!(c, b'_' | b'-' | b'.' | b'*')
            {
                self.pos += 1;
            } else {
                break;
            }
        }
        Ok(String::from_utf8_lossy(&self.input[start..self.pos]).into_owned())
    }

    fn inner_list(&mut self) -> Result<Vec<Item>, ParseError> {
        self.pos += 1; // '('
        let mut items = Vec::new();
        loop {
            self.skip_sp();
            if self.peek() == Some(b')') {
                self.pos += 1;
                return Ok(items);
            }
            if items.len() == ITEMS_MAX {
                return Err(self.err("too many items"));
            }
            let item = self.bare_item()?;
            // Parameters on individual components (e.g. ;sf, ;key) are not
            // supported: refuse rather than sign something else.
            if self.peek() == Some(b';') {
                return Err(self.err("component parameters are not supported"));
            }
            items.push(item);
            match self.peek() {
                Some(b' ' | b')') => {}
                _ => return Err(self.err("expected ' ' or ')'")),
            }
        }
    }

    fn params(&mut self) -> Result<Vec<(String, Item)>, ParseError> {
        let mut params: Vec<(String, Item)> = Vec::new();
        while self.peek() == Some(b';') {
            self.pos += 1;
            self.skip_sp();
            if params.len() == ITEMS_MAX {
                return Err(self.err("too many parameters"));
            }
            let key = self.key()?;
            let value = if self.peek() == Some(b'=') {
                self.pos += 1;
                self.bare_item()?
            } else {
                Item::Boolean(true)
            };
            if params.iter().any(|(k, _)| *k == key) {
                return Err(self.err("duplicate parameter"));
            }
            params.push((key, value));
        }
        Ok(params)
    }

    fn bare_item(&mut self) -> Result<Item, ParseError> {
        match self.peek() {
            Some(b'"') => self.string(),
            Some(b':') => self.bytes(),
            Some(b'?') => {
                self.pos += 1;
                match self.peek() {
                    Some(b'0') => {
                        self.pos += 1;
                        Ok(Item::Boolean(false))
                    }
                    Some(b'1') => {
                        self.pos += 1;
                        Ok(Item::Boolean(true))
                    }
                    _ => Err(self.err("bad boolean")),
                }
            }
            Some(c) if c == b'-' || c.is_ascii_digit() => self.integer(),
            Some(c) if c.is_ascii_alphabetic() || c == b'*' => self.token(),
            _ => Err(self.err("expected an item")),
        }
    }

    fn string(&mut self) -> Result<Item, ParseError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Item::String(out));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => out.push(c as char),
                        _ => return Err(self.err("bad escape")),
                    }
                    self.pos += 1;
                }
                Some(c) if (0x20..0x7f).contains(&c) => {
                    out.push(c as char);
                    self.pos += 1;
                }
                Some(_) => return Err(self.err("non-printable character in string")),
            }
        }
    }

    fn token(&mut self) -> Result<Item, ParseError> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&c) {
                self.pos += 1;
            } else {
                break;
            }
        }
        Ok(Item::Token(
            String::from_utf8_lossy(&self.input[start..self.pos]).into_owned(),
        ))
    }

    fn integer(&mut self) -> Result<Item, ParseError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let digits = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        let len = self.pos - digits;
        if len == 0 || len > 15 {
            return Err(self.err("integer must have 1 to 15 digits"));
        }
        if self.peek() == Some(b'.') {
            return Err(self.err("decimals are not supported"));
        }
        std::str::from_utf8(&self.input[start..self.pos])
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Item::Integer)
            .ok_or(self.err("bad integer"))
    }

    fn bytes(&mut self) -> Result<Item, ParseError> {
        self.pos += 1;
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c == b':' {
                break;
            }
            if !(c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=')) {
                return Err(self.err("bad base64 character"));
            }
            self.pos += 1;
        }
        if self.peek() != Some(b':') {
            return Err(self.err("unterminated byte sequence"));
        }
        let encoded = &self.input[start..self.pos];
        self.pos += 1;
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map(Item::Bytes)
            .map_err(|_| self.err("bad base64"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_a_signature_input_keeping_the_raw_member() {
        let input =
            r#"sig1=("@method" "@path");created=1618884473;keyid="k";nonce="n1", sig2=:AAEC:"#;
        let entries = parse_dictionary(input).unwrap();
        assert_eq!(entries[0].key, "sig1");
        assert_eq!(
            entries[0].raw,
            r#"("@method" "@path");created=1618884473;keyid="k";nonce="n1""#
        );
        assert_eq!(
            entries[0].value,
            Member::InnerList(vec![
                Item::String("@method".into()),
                Item::String("@path".into())
            ])
        );
        assert_eq!(
            entries[0].params[0],
            ("created".into(), Item::Integer(1618884473))
        );
        assert_eq!(entries[1].value, Member::Item(Item::Bytes(vec![0, 1, 2])));
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        for bad in [
            r#"sig1=("@method";sf)"#,
            "sig1=(\"a\"",
            "sig1=:!!:",
            "Sig1=:AA==:",
            "sig1=1.5",
            "sig1=:AA==:, sig1=:AA==:",
            "sig1=:AA==:,",
            "sig1=\"\u{1}\"",
        ] {
            assert!(parse_dictionary(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(input in ".{0,300}") {
            let _ = parse_dictionary(&input);
        }
    }
}
