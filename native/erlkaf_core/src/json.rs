//! A small JSON reader for librdkafka's statistics: it drives a [`Build`]er (the NIF
//! builds Erlang terms directly, without an intermediate tree), so the Erlang side needs
//! no JSON library. Strict RFC 8259 syntax; nesting is limited to [`MAX_DEPTH`].

/// What the parser produces, value by value. Objects and arrays arrive complete: their
/// members are built first, then assembled.
pub trait Build {
    /// A built value.
    type Value;
    /// A string (unescaped).
    fn string(&mut self, s: &str) -> Self::Value;
    /// An integer that fits in 64 bits.
    fn int(&mut self, i: i64) -> Self::Value;
    /// Any other number.
    fn float(&mut self, f: f64) -> Self::Value;
    /// `true` or `false`.
    fn bool(&mut self, b: bool) -> Self::Value;
    /// `null`.
    fn null(&mut self) -> Self::Value;
    /// An array of values, in order.
    fn array(&mut self, items: Vec<Self::Value>) -> Self::Value;
    /// An object: (key, value) pairs in document order; a later duplicate key wins.
    fn object(&mut self, members: Vec<(Self::Value, Self::Value)>) -> Self::Value;
}

/// Deepest nesting accepted (librdkafka's statistics nest about 5 levels).
pub const MAX_DEPTH: usize = 64;

/// Where and why parsing failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// Byte offset.
    pub at: usize,
    /// What was expected.
    pub what: &'static str,
}

/// Parses one JSON document.
pub fn parse<B: Build>(text: &str, b: &mut B) -> Result<B::Value, JsonError> {
    let mut p = Parser { s: text.as_bytes(), i: 0 };
    let v = p.value(b, 0)?;
    p.ws();
    if p.i != p.s.len() {
        return Err(p.err("end of document"));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn err(&self, what: &'static str) -> JsonError {
        JsonError { at: self.i, what }
    }

    fn ws(&mut self) {
        while matches!(self.s.get(self.i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        if self.s[self.i..].starts_with(word) {
            self.i += word.len();
            true
        } else {
            false
        }
    }

    fn value<B: Build>(&mut self, b: &mut B, depth: usize) -> Result<B::Value, JsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err("less nesting"));
        }
        self.ws();
        match self.s.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut members = Vec::new();
                if !self.eat(b'}') {
                    loop {
                        self.ws();
                        if self.s.get(self.i) != Some(&b'"') {
                            return Err(self.err("an object key"));
                        }
                        let k = self.string()?;
                        let key = b.string(&k);
                        if !self.eat(b':') {
                            return Err(self.err("':'"));
                        }
                        let v = self.value(b, depth + 1)?;
                        members.push((key, v));
                        if self.eat(b',') {
                            continue;
                        }
                        if self.eat(b'}') {
                            break;
                        }
                        return Err(self.err("',' or '}'"));
                    }
                }
                Ok(b.object(members))
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                if !self.eat(b']') {
                    loop {
                        items.push(self.value(b, depth + 1)?);
                        if self.eat(b',') {
                            continue;
                        }
                        if self.eat(b']') {
                            break;
                        }
                        return Err(self.err("',' or ']'"));
                    }
                }
                Ok(b.array(items))
            }
            Some(b'"') => {
                let s = self.string()?;
                Ok(b.string(&s))
            }
            Some(b't') if self.literal(b"true") => Ok(b.bool(true)),
            Some(b'f') if self.literal(b"false") => Ok(b.bool(false)),
            Some(b'n') if self.literal(b"null") => Ok(b.null()),
            Some(b'-' | b'0'..=b'9') => self.number(b),
            _ => Err(self.err("a value")),
        }
    }

    fn number<B: Build>(&mut self, b: &mut B) -> Result<B::Value, JsonError> {
        let start = self.i;
        let digits = |p: &mut Self| {
            let from = p.i;
            while matches!(p.s.get(p.i), Some(b'0'..=b'9')) {
                p.i += 1;
            }
            p.i > from
        };
        if self.s.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        if !digits(self) {
            return Err(self.err("digits"));
        }
        let mut float = false;
        if self.s.get(self.i) == Some(&b'.') {
            self.i += 1;
            float = true;
            if !digits(self) {
                return Err(self.err("digits after '.'"));
            }
        }
        if matches!(self.s.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            float = true;
            if matches!(self.s.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if !digits(self) {
                return Err(self.err("exponent digits"));
            }
        }
        // The slice holds only ASCII digits, signs, dots and exponent letters.
        let text = std::str::from_utf8(&self.s[start..self.i]).map_err(|_| self.err("a number"))?;
        if !float {
            if let Ok(i) = text.parse::<i64>() {
                return Ok(b.int(i));
            }
        }
        text.parse::<f64>().map(|f| b.float(f)).map_err(|_| JsonError { at: start, what: "a number" })
    }

    /// At an opening quote: the unescaped string.
    fn string(&mut self) -> Result<String, JsonError> {
        self.i += 1;
        let mut out = String::new();
        loop {
            let run = self.i;
            while !matches!(self.s.get(self.i), None | Some(b'"' | b'\\' | 0..=0x1f)) {
                self.i += 1;
            }
            out.push_str(std::str::from_utf8(&self.s[run..self.i]).map_err(|_| self.err("UTF-8"))?);
            match self.s.get(self.i) {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    let c = *self.s.get(self.i).ok_or_else(|| self.err("an escape"))?;
                    self.i += 1;
                    match c {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi) && self.s[self.i..].starts_with(b"\\u") {
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self.err("a low surrogate"));
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            out.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
                        }
                        _ => return Err(self.err("a valid escape")),
                    }
                }
                _ => return Err(self.err("a closing quote")),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let h = self.s.get(self.i..self.i + 4).ok_or_else(|| self.err("4 hex digits"))?;
        let v = std::str::from_utf8(h).ok().and_then(|h| u32::from_str_radix(h, 16).ok()).ok_or_else(|| self.err("4 hex digits"))?;
        self.i += 4;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone, PartialEq)]
    enum V {
        S(String),
        I(i64),
        F(f64),
        B(bool),
        N,
        A(Vec<V>),
        O(Vec<(V, V)>),
    }

    struct T;
    impl Build for T {
        type Value = V;
        fn string(&mut self, s: &str) -> V { V::S(s.into()) }
        fn int(&mut self, i: i64) -> V { V::I(i) }
        fn float(&mut self, f: f64) -> V { V::F(f) }
        fn bool(&mut self, b: bool) -> V { V::B(b) }
        fn null(&mut self) -> V { V::N }
        fn array(&mut self, items: Vec<V>) -> V { V::A(items) }
        fn object(&mut self, m: Vec<(V, V)>) -> V { V::O(m) }
    }

    #[test]
    fn librdkafka_shaped_document() {
        let doc = r#"{ "name": "rdkafka#producer-1", "ts":5016483227792, "time":1527060869,
            "msg_cnt":22710, "brokers":{ "localhost:9092/2": { "rtt": { "min":-1, "p99":0.5e1 },
            "toppars":{} } }, "topics":{}, "tx_d": [1, 2.5, true, false, null], "s":"a\"\u00e9\ud83d\ude00\n" }"#;
        let v = parse(doc, &mut T).unwrap();
        let V::O(m) = v else { panic!() };
        assert_eq!(m[0], (V::S("name".into()), V::S("rdkafka#producer-1".into())));
        assert_eq!(m[1].1, V::I(5016483227792));
        assert_eq!(m[6].1, V::A(vec![V::I(1), V::F(2.5), V::B(true), V::B(false), V::N]));
        assert_eq!(m[7].1, V::S("a\"é😀\n".into()));
        let V::O(b) = &m[4].1 else { panic!() };
        let V::O(b0) = &b[0].1 else { panic!() };
        assert_eq!(b0[0].1, V::O(vec![(V::S("min".into()), V::I(-1)), (V::S("p99".into()), V::F(5.0))]));
    }

    #[test]
    fn errors_name_the_place() {
        assert_eq!(parse("{\"a\" 1}", &mut T).unwrap_err(), JsonError { at: 5, what: "':'" });
        assert!(parse("[1,]", &mut T).is_err());
        assert!(parse("01x", &mut T).is_err());
        assert!(parse("\"\\x\"", &mut T).is_err());
        assert!(parse(&"[".repeat(100), &mut T).is_err());
        assert!(parse("[1] 2", &mut T).is_err());
        assert_eq!(parse("18446744073709551616", &mut T).unwrap(), V::F(18446744073709551616.0));
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(s in "\\PC{0,64}") {
            let _ = parse(&s, &mut T);
        }

        #[test]
        fn integers_and_strings_round_trip(i in any::<i64>(), s in "\\PC{0,20}") {
            let doc = format!("[{i}, {}]", escape(&s));
            prop_assert_eq!(parse(&doc, &mut T).unwrap(), V::A(vec![V::I(i), V::S(s)]));
        }
    }

    fn escape(s: &str) -> String {
        let mut o = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => o.push_str("\\\""),
                '\\' => o.push_str("\\\\"),
                c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
                c => o.push(c),
            }
        }
        o.push('"');
        o
    }
}
