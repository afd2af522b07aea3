//! Encodes JSON the way PHP's `json_encode($value)` (flags 0, as
//! `wp_json_encode` calls it) does: compact, `/` escaped as `\/`, every
//! non-ASCII character as `\uXXXX` (lower-case hex, surrogate pairs above
//! U+FFFF). Works on JSON *text* so key order and number spelling are kept.

/// Re-encodes JSON text (e.g. a pretty-printed docs sample) PHP-style.
pub(crate) fn php_json_encode(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut chars = json.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                // Decode the string, then re-encode it PHP-style.
                let mut s = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => match chars.next() {
                            Some('n') => s.push('\n'),
                            Some('t') => s.push('\t'),
                            Some('r') => s.push('\r'),
                            Some('b') => s.push('\u{8}'),
                            Some('f') => s.push('\u{c}'),
                            Some('u') => {
                                let hex: String = chars.by_ref().take(4).collect();
                                let hi = u32::from_str_radix(&hex, 16).expect("hex");
                                let code = if (0xD800..0xDC00).contains(&hi) {
                                    assert_eq!(chars.next(), Some('\\'));
                                    assert_eq!(chars.next(), Some('u'));
                                    let hex: String = chars.by_ref().take(4).collect();
                                    let lo = u32::from_str_radix(&hex, 16).expect("hex");
                                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                                } else {
                                    hi
                                };
                                s.push(char::from_u32(code).expect("scalar"));
                            }
                            Some(other) => s.push(other),
                            None => panic!("truncated escape"),
                        },
                        c => s.push(c),
                    }
                }
                out.push_str(&php_string(&s));
            }
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// A JSON string literal as PHP writes it.
pub(crate) fn php_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || (c as u32) >= 0x80 => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[test]
fn encodes_like_php() {
    assert_eq!(
        php_json_encode(r#"{ "a": "http://x/y", "b": "Café €😀", "n": [1, 2.50] }"#),
        r#"{"a":"http:\/\/x\/y","b":"Caf\u00e9 \u20ac\ud83d\ude00","n":[1,2.50]}"#
    );
    // Escapes in the input are decoded first, then re-encoded.
    assert_eq!(
        php_json_encode(r#"["\u00e9\n\"\/"]"#),
        r#"["\u00e9\n\"\/"]"#
    );
    // The result is still JSON meaning the same thing.
    let src = r#"{"name":"Größe – L/XL","price":"21.99"}"#;
    let a: serde_json::Value = serde_json::from_str(src).unwrap();
    let b: serde_json::Value = serde_json::from_str(&php_json_encode(src)).unwrap();
    assert_eq!(a, b);
}
