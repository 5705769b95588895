//! A one-pass reader for the common case of an envelope: a JSON object whose attribute names
//! have no escapes and appear once. It finds where each attribute's value is (checking the whole
//! document is JSON, `data` included) without serde's per-field machinery.
//!
//! It only ever answers for input that serde_json would read to the same spans: anything it is
//! not sure of (an escaped or repeated attribute name, deep nesting, any syntax error) answers
//! `None`, and the caller reads the input with serde_json, which then gives its usual answer or
//! error. So this module changes how fast an envelope is read, never what is accepted or what
//! an error says.

/// Where each attribute's value is in the text (the value's JSON, without the whitespace
/// around it), or `None` when serde_json must read the input.
pub(super) fn attributes(text: &str) -> Option<Spans<'_>> {
    let mut scanner = Scanner {
        bytes: text.as_bytes(),
        at: 0,
    };
    let mut spans = Spans::default();
    scanner.whitespace();
    scanner.expect(b'{')?;
    scanner.whitespace();
    if scanner.peek() == Some(b'}') {
        scanner.at += 1;
    } else {
        loop {
            scanner.expect(b'"')?;
            let key_start = scanner.at;
            if scanner.string()? {
                return None; // an escaped name: serde_json decodes it
            }
            let key = &text[key_start..scanner.at - 1];
            scanner.whitespace();
            scanner.expect(b':')?;
            scanner.whitespace();
            let start = scanner.at;
            scanner.value(0)?;
            if let Some(slot) = spans.slot(key) {
                if slot.is_some() {
                    return None; // a repeated attribute: serde_json's error names it
                }
                *slot = Some(&text[start..scanner.at]);
            }
            scanner.whitespace();
            match scanner.next()? {
                b',' => scanner.whitespace(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    scanner.whitespace();
    (scanner.at == text.len()).then_some(spans)
}

/// The raw JSON of each attribute herald reads (`null` included), as serde_json would capture
/// it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Spans<'a> {
    pub(super) specversion: Option<&'a str>,
    pub(super) id: Option<&'a str>,
    pub(super) source: Option<&'a str>,
    pub(super) event_type: Option<&'a str>,
    pub(super) subject: Option<&'a str>,
    pub(super) time: Option<&'a str>,
    pub(super) datacontenttype: Option<&'a str>,
    pub(super) dataschema: Option<&'a str>,
    pub(super) kind: Option<&'a str>,
    pub(super) schemaversion: Option<&'a str>,
    pub(super) correlationid: Option<&'a str>,
    pub(super) causationid: Option<&'a str>,
    pub(super) aggregateversion: Option<&'a str>,
    pub(super) partitionkey: Option<&'a str>,
    pub(super) data: Option<&'a str>,
}

impl<'a> Spans<'a> {
    fn slot(&mut self, key: &str) -> Option<&mut Option<&'a str>> {
        Some(match key {
            "specversion" => &mut self.specversion,
            "id" => &mut self.id,
            "source" => &mut self.source,
            "type" => &mut self.event_type,
            "subject" => &mut self.subject,
            "time" => &mut self.time,
            "datacontenttype" => &mut self.datacontenttype,
            "dataschema" => &mut self.dataschema,
            "kind" => &mut self.kind,
            "schemaversion" => &mut self.schemaversion,
            "correlationid" => &mut self.correlationid,
            "causationid" => &mut self.causationid,
            "aggregateversion" => &mut self.aggregateversion,
            "partitionkey" => &mut self.partitionkey,
            "data" => &mut self.data,
            _ => return None,
        })
    }
}

/// Nesting this deep goes to serde_json (whose limit is 128).
const MAX_DEPTH: usize = 64;

struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    fn whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.peek() {
            self.at += 1;
        }
    }

    /// One JSON value, checked and skipped.
    fn value(&mut self, depth: usize) -> Option<()> {
        match self.next()? {
            b'"' => self.string().map(drop),
            b'{' => self.object(depth + 1),
            b'[' => self.array(depth + 1),
            b't' => self.literal(b"rue"),
            b'f' => self.literal(b"alse"),
            b'n' => self.literal(b"ull"),
            b'-' => self.number(),
            b'0'..=b'9' => {
                self.at -= 1;
                self.number()
            }
            _ => None,
        }
    }

    fn literal(&mut self, rest: &[u8]) -> Option<()> {
        let end = self.at + rest.len();
        (self.bytes.get(self.at..end)? == rest).then(|| self.at = end)
    }

    fn object(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.whitespace();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Some(());
        }
        loop {
            self.expect(b'"')?;
            self.string()?;
            self.whitespace();
            self.expect(b':')?;
            self.whitespace();
            self.value(depth)?;
            self.whitespace();
            match self.next()? {
                b',' => self.whitespace(),
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    fn array(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.whitespace();
        if self.peek() == Some(b']') {
            self.at += 1;
            return Some(());
        }
        loop {
            self.value(depth)?;
            self.whitespace();
            match self.next()? {
                b',' => self.whitespace(),
                b']' => return Some(()),
                _ => return None,
            }
        }
    }

    /// A number as JSON writes them: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    /// (the sign already read).
    fn number(&mut self) -> Option<()> {
        match self.next()? {
            b'0' => {}
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.digit()?;
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.digit()?;
            self.digits();
        }
        Some(())
    }

    fn digit(&mut self) -> Option<()> {
        self.next()?.is_ascii_digit().then_some(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
    }

    /// The rest of a string (the opening quote read), up to and past its closing quote.
    /// Whether it had escapes. The text is UTF-8 already: only quotes, backslashes and control
    /// characters matter, and they are found eight bytes at a time.
    fn string(&mut self) -> Option<bool> {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGH: u64 = 0x8080_8080_8080_8080;
        let mut escaped = false;
        loop {
            // Skip eight bytes at a time while none of them is special.
            while let Some(chunk) = self.bytes.get(self.at..self.at + 8) {
                let mut word = [0; 8];
                word.copy_from_slice(chunk);
                let word = u64::from_le_bytes(word);
                let quote = word ^ (ONES * u64::from(b'"'));
                let backslash = word ^ (ONES * u64::from(b'\\'));
                let special = (quote.wrapping_sub(ONES) & !quote)
                    | (backslash.wrapping_sub(ONES) & !backslash)
                    | (word.wrapping_sub(ONES * 0x20) & !word);
                if special & HIGH != 0 {
                    // The lowest flagged byte is the first special one (the borrows of the
                    // subtraction only flag bytes after it).
                    self.at += (special & HIGH).trailing_zeros() as usize / 8;
                    break;
                }
                self.at += 8;
            }
            match self.next()? {
                b'"' => return Some(escaped),
                b'\\' => {
                    escaped = true;
                    match self.next()? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                        b'u' => {
                            for _ in 0..4 {
                                self.next()?.is_ascii_hexdigit().then_some(())?;
                            }
                        }
                        _ => return None,
                    }
                }
                0..=0x1f => return None,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_attribute_and_skips_the_rest() {
        let text = r#" { "id" : "a\"b", "data": {"x": [1, -2.5e3, true, null, "\u00e9"]},
            "other": {"id": 1}, "subject": null, "schemaversion": 2 } "#;
        let spans = attributes(text).unwrap();
        assert_eq!(spans.id, Some(r#""a\"b""#));
        assert_eq!(
            spans.data,
            Some(r#"{"x": [1, -2.5e3, true, null, "\u00e9"]}"#)
        );
        assert_eq!(spans.subject, Some("null"));
        assert_eq!(spans.schemaversion, Some("2"));
        assert_eq!(spans.source, None);
        assert!(attributes("{}").is_some());
    }

    #[test]
    fn leaves_what_it_is_not_sure_of_to_serde_json() {
        for text in [
            r#"{"id": "a", "id": "b"}"#,
            r#"{"\u0069d": "a"}"#,
            r#"{"id": "a",}"#,
            r#"{"id": "a"} x"#,
            r#"{"data": [1,]}"#,
            r#"{"data": 01}"#,
            r#"{"data": 1.}"#,
            r#"{"data": -}"#,
            r#"{"data": tru}"#,
            r#"{"data": "\x"}"#,
            r#"{"data": "\u12g4"}"#,
            "{\"data\": \"tab\there\"}",
            r#"{"data": "open}"#,
            r#"[1, 2]"#,
            "",
        ] {
            assert!(attributes(text).is_none(), "{text}");
        }
        let deep = format!("{{\"data\": {}{}}}", "[".repeat(100), "]".repeat(100));
        assert!(attributes(&deep).is_none());
    }
}
