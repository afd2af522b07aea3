//! Bounded excerpts of input in error messages.
//!
//! Why: decoders quote the value they could not read in full
//! (`invalid type: string "…", expected u64`), and a payload's values are
//! customer data of any length. Error messages end up in log lines and in
//! stored event rows, which must carry enough to recognise the problem, not
//! the body itself.

/// Characters of a quoted value kept in a message.
pub(crate) const QUOTED_MAX: usize = 40;

/// Characters of a whole message kept.
pub(crate) const MESSAGE_MAX: usize = 300;

/// The first [`QUOTED_MAX`] characters of `input`, and `…` when there were
/// more: what an error that names a bad value keeps of it.
pub(crate) fn value(input: &str) -> String {
    match input.char_indices().nth(QUOTED_MAX) {
        Some((cut, _)) => format!("{}…", &input[..cut]),
        None => input.to_owned(),
    }
}

/// `message` with every double-quoted run cut to [`QUOTED_MAX`] characters
/// (`…` marking the cut) and the whole cut to [`MESSAGE_MAX`].
///
/// Quotes inside a quoted run are expected escaped (`\"`), as `{:?}`
/// formatting and serde's messages write them.
pub(crate) fn message(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(MESSAGE_MAX + 8));
    let mut kept = 0usize;
    let mut quoted: Option<usize> = None;
    let mut escaped = false;
    for c in message.chars() {
        if kept == MESSAGE_MAX {
            out.push('…');
            return out;
        }
        match quoted {
            Some(len) if c == '"' && !escaped => {
                if len > QUOTED_MAX {
                    out.push('…');
                }
                quoted = None;
            }
            Some(len) => {
                escaped = c == '\\' && !escaped;
                quoted = Some(len + 1);
                if len >= QUOTED_MAX {
                    continue;
                }
            }
            None if c == '"' => {
                quoted = Some(0);
                escaped = false;
            }
            None => {}
        }
        out.push(c);
        kept += 1;
    }
    if quoted.is_some_and(|len| len > QUOTED_MAX) {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_quoted_values_are_cut_short_ones_kept() {
        let long = "PII-".repeat(500);
        let m = message(&format!(
            "invalid type: string {long:?}, expected a product"
        ));
        assert_eq!(
            m,
            format!(
                "invalid type: string \"{}…\", expected a product",
                &long[..QUOTED_MAX]
            )
        );
        let short = "invalid type: string \"abc\", expected u64 at line 1 column 9";
        assert_eq!(message(short), short);
    }

    #[test]
    fn escaped_quotes_stay_inside_the_value() {
        let inner = format!("a\"{}", "x".repeat(100));
        let m = message(&format!("bad {inner:?} here"));
        assert!(m.ends_with("…\" here"), "{m}");
        assert!(m.len() < 60, "{m}");
    }

    #[test]
    fn whole_messages_and_values_are_bounded() {
        let m = message(&"word ".repeat(1000));
        assert_eq!(m.chars().count(), MESSAGE_MAX + 1);
        assert!(m.ends_with('…'));
        // An unterminated quote is cut all the same.
        let m = message(&format!("bad \"{}", "é".repeat(100)));
        assert_eq!(m.chars().count(), 5 + QUOTED_MAX + 1);
        assert_eq!(value("short"), "short");
        assert_eq!(value(&"é".repeat(41)), format!("{}…", "é".repeat(40)));
    }
}
