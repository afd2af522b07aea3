//! JSON decoding that says where it failed.
//!
//! Decoding is on the hot path of every webhook delivery, so the success path
//! is plain `serde_json`; only when that fails is the input decoded a second
//! time with path tracking (`serde_path_to_error`) to name the failing field.

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::CatalogError;

/// Decodes JSON, reporting the path of the first field that failed
/// (`data.products.nodes[3].variants.nodes[0].price`) in [`CatalogError::Decode`].
///
/// # Errors
/// [`CatalogError::Decode`] when the bytes are not JSON of the expected shape.
///
/// ```
/// #[derive(serde::Deserialize, Debug)]
/// struct Wire { id: u64 }
/// let err = catalog_core::json::decode::<Vec<Wire>>(br#"[{"id":1},{"id":"x"}]"#).unwrap_err();
/// assert!(err.to_string().contains("[1].id"));
/// ```
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CatalogError> {
    // RFC 8259 lets a parser ignore a byte order mark, and a PHP file saved
    // with one (a WordPress plugin) puts it before every answer.
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    serde_json::from_slice(bytes).map_err(|fast| {
        if let Some(not_json) = not_json(bytes) {
            return not_json;
        }
        let de = &mut serde_json::Deserializer::from_slice(bytes);
        match serde_path_to_error::deserialize::<_, T>(de) {
            Err(err) => decode_error(err),
            // The value itself was read: what failed is after it (a second
            // document, trailing characters), which only the whole-input
            // decode checks. Its own message says where.
            Ok(_) => CatalogError::Decode {
                path: String::new(),
                message: crate::excerpt::message(&fast.to_string()),
            },
        }
    })
}

/// The UTF-8 byte order mark.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// A clearer error than serde's "expected value at line 1 column 1" for a
/// body that is not JSON at all: an empty one, or an HTML page (a login,
/// maintenance or error page served with status 200).
fn not_json(bytes: &[u8]) -> Option<CatalogError> {
    let first = bytes.iter().position(|b| !b.is_ascii_whitespace());
    let message = match first.map(|i| &bytes[i..]) {
        None => "the body is empty, not JSON".to_owned(),
        Some(rest) if rest.starts_with(b"<") => format!(
            "the body is not JSON but {} (a login, maintenance or error page?)",
            crate::error::body_excerpt(rest)
        ),
        Some(_) => return None,
    };
    Some(CatalogError::Decode {
        path: String::new(),
        message,
    })
}

/// Like [`decode`], from an already parsed [`serde_json::Value`].
///
/// # Errors
/// [`CatalogError::Decode`] when the value is not of the expected shape.
// Takes the value by value for callers that are done with it; the work is the
// same as `decode_value_ref`.
#[allow(clippy::needless_pass_by_value)]
pub fn decode_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, CatalogError> {
    decode_value_ref(&value)
}

/// Like [`decode_value`], borrowing the value: no copy of the document is
/// made, so a caller can keep the [`serde_json::Value`] (e.g. as `raw`).
///
/// # Errors
/// [`CatalogError::Decode`] when the value is not of the expected shape.
pub fn decode_value_ref<'v, T: Deserialize<'v>>(
    value: &'v serde_json::Value,
) -> Result<T, CatalogError> {
    T::deserialize(value).map_err(|_| match serde_path_to_error::deserialize::<_, T>(value) {
        Err(err) => decode_error(err),
        Ok(_) => CatalogError::Decode {
            path: String::new(),
            message: "inconsistent JSON decoding".into(),
        },
    })
}

fn decode_error(err: serde_path_to_error::Error<serde_json::Error>) -> CatalogError {
    CatalogError::Decode {
        path: err.path().to_string(),
        // Bounded: serde quotes the value it could not read in full.
        message: crate::excerpt::message(&err.into_inner().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Wire {
        id: u64,
        tags: Vec<String>,
    }

    #[test]
    fn paths_are_named_from_bytes_and_values() {
        let bad = br#"{"id": 1, "tags": ["a", 2]}"#;
        let CatalogError::Decode { path, .. } = decode::<Wire>(bad).unwrap_err() else {
            panic!("expected a decode error")
        };
        assert_eq!(path, "tags[1]");
        let value: serde_json::Value = serde_json::from_slice(bad).unwrap();
        let CatalogError::Decode { path, .. } = decode_value_ref::<Wire>(&value).unwrap_err()
        else {
            panic!("expected a decode error")
        };
        assert_eq!(path, "tags[1]");
        assert!(matches!(
            decode::<Wire>(b"{"),
            Err(CatalogError::Decode { .. })
        ));
    }

    /// The value decodes, what follows it does not: the error says so and
    /// where (an outside audit saw "inconsistent JSON decoding" instead).
    #[test]
    fn what_follows_the_value_is_named() {
        for body in [
            &br#"{"id": 1, "tags": []} xx"#[..],
            br#"{"id": 1, "tags": []}{"id": 2, "tags": []}"#,
        ] {
            let CatalogError::Decode { path, message } = decode::<Wire>(body).unwrap_err() else {
                panic!("expected a decode error")
            };
            assert_eq!(path, "");
            assert!(
                message.starts_with("trailing characters at line 1 column 2"),
                "{message}"
            );
        }
    }

    #[test]
    fn a_byte_order_mark_is_ignored_and_pages_are_named() {
        let with_bom = b"\xEF\xBB\xBF{\"id\": 7, \"tags\": []}";
        assert_eq!(decode::<Wire>(with_bom).unwrap().id, 7);
        for (body, expected) in [
            (
                &b"<!DOCTYPE html><html><title>Maintenance</title>"[..],
                "not JSON but an HTML page: \"Maintenance\"",
            ),
            (&b"  \n"[..], "empty"),
            (&b""[..], "empty"),
        ] {
            let err = decode::<Wire>(body).unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
        // Other malformed JSON keeps serde's message with its position.
        let err = decode::<Wire>(b"{\"id\": 7,").unwrap_err().to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn good_input_decodes_on_the_fast_path() {
        let good = br#"{"id": 18446744073709551615, "tags": []}"#;
        let wire: Wire = decode(good).unwrap();
        assert_eq!(wire.id, u64::MAX);
        let value: serde_json::Value = serde_json::from_slice(good).unwrap();
        assert_eq!(decode_value_ref::<Wire>(&value).unwrap(), wire);
    }
}
