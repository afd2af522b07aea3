//! Pages, opaque cursors and `Link` header parsing.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::CatalogError;

/// An opaque position in a listing, handed back to get the next page.
///
/// Platforms put whatever they need in it (a GraphQL `endCursor`, a page number
/// and a snapshot bound). Callers only store it and pass it back; it is plain
/// URL-safe text so it can travel in query strings and JSON.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Cursor(String);

impl Cursor {
    /// Wraps a platform's own cursor text verbatim.
    pub fn new(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    /// Encodes structured cursor state as URL-safe base64 of its JSON.
    ///
    /// # Errors
    /// [`CatalogError::Configuration`] if the state cannot be serialised (it
    /// contains a map with non-string keys, for instance).
    ///
    /// ```
    /// use catalog_core::Cursor;
    /// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    /// struct State { page: u32, max_id: u64 }
    /// let c = Cursor::encode(&State { page: 3, max_id: 900 })?;
    /// assert_eq!(c.decode::<State>()?, State { page: 3, max_id: 900 });
    /// # Ok::<(), catalog_core::CatalogError>(())
    /// ```
    pub fn encode<T: Serialize>(state: &T) -> Result<Self, CatalogError> {
        let json = serde_json::to_vec(state)
            .map_err(|e| CatalogError::Configuration(format!("cursor state: {e}")))?;
        Ok(Self(URL_SAFE_NO_PAD.encode(json)))
    }

    /// Decodes state written by [`Cursor::encode`].
    ///
    /// # Errors
    /// [`CatalogError::Configuration`] when the cursor was not made by
    /// `encode` for this type (tampered, truncated, or from another platform).
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, CatalogError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(self.0.as_bytes())
            .map_err(|_| CatalogError::Configuration("malformed cursor".into()))?;
        serde_json::from_slice(&bytes)
            .map_err(|_| CatalogError::Configuration("cursor not valid for this listing".into()))
    }

    /// The cursor text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What page of a listing to fetch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PageRequest {
    /// Items per page; `None` lets the platform choose its default. Platforms
    /// clamp it to what they support.
    pub limit: Option<u32>,
    /// Where to continue; `None` for the first page.
    pub cursor: Option<Cursor>,
}

impl PageRequest {
    /// The first page with the platform's default size.
    pub fn first() -> Self {
        Self::default()
    }

    /// Sets the page size.
    #[must_use]
    pub fn with_limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    /// Continues after a previous page.
    #[must_use]
    pub fn after(mut self, cursor: Cursor) -> Self {
        self.cursor = Some(cursor);
        self
    }
}

/// One page of results.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Page<T> {
    /// The items, in listing order.
    pub items: Vec<T>,
    /// The cursor of the next page; `None` on the last page.
    pub next: Option<Cursor>,
    /// The total number of items, when the platform reports it.
    pub total: Option<u64>,
    /// Products of this page whose data could not be read, left out of
    /// `items` (see [`SkippedProduct`]).
    pub skipped: Vec<SkippedProduct>,
}

/// A product left out of a page because its data could not be read (a
/// price that is not a number, a variant list that never ends): one bad
/// product does not make the rest of the catalog unreadable.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SkippedProduct {
    /// The platform's id of the product (`"?"` when even that is unreadable).
    pub id: String,
    /// The JSON path that failed.
    pub path: String,
    /// What was wrong there.
    pub message: String,
}

impl SkippedProduct {
    /// Product `id`, left out for what is wrong at `path`.
    pub fn new(id: impl Into<String>, path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            path: path.into(),
            message: message.into(),
        }
    }

    /// The product `id` left out for a decoding failure; `None` for any
    /// other error (a transport failure, throttling), which is not the
    /// product's and ends the listing.
    ///
    /// Call it only with the failure to map the product's own data (its
    /// listed JSON, its variant rows): a request that fails while reading
    /// a product (the store's currency, its variant pages answered with a
    /// maintenance page) is the store's, not the product's, and must end
    /// the listing, or one outage reads as every product unreadable.
    pub fn from_error(id: impl Into<String>, error: &crate::CatalogError) -> Option<Self> {
        match error {
            crate::CatalogError::Decode { path, message }
            | crate::CatalogError::UnreadableProduct { path, message, .. } => {
                Some(Self::new(id, path.clone(), message.clone()))
            }
            _ => None,
        }
    }

    /// As the error a product stream yields in the product's place.
    pub fn into_error(self) -> crate::CatalogError {
        crate::CatalogError::UnreadableProduct {
            id: self.id,
            path: self.path,
            message: self.message,
        }
    }
}

impl<T> Page<T> {
    /// A page with its next cursor.
    pub fn new(items: Vec<T>, next: Option<Cursor>) -> Self {
        Self {
            items,
            next,
            total: None,
            skipped: Vec::new(),
        }
    }

    /// Adds the products left out of the page.
    #[must_use]
    pub fn with_skipped(mut self, skipped: Vec<SkippedProduct>) -> Self {
        self.skipped = skipped;
        self
    }

    /// Adds the total the platform reported.
    #[must_use]
    pub fn with_total(mut self, total: Option<u64>) -> Self {
        self.total = total;
        self
    }
}

impl<T> IntoIterator for Page<T> {
    type Item = T;
    type IntoIter = std::vec::IntoIter<T>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

/// Finds the `rel="next"` target in an RFC 8288 `Link` header value, as sent by
/// Shopify REST and WordPress/WooCommerce.
///
/// ```
/// let link = r#"<https://s.example/wp-json/wc/v3/products?page=1>; rel="prev", <https://s.example/wp-json/wc/v3/products?page=3>; rel="next""#;
/// assert_eq!(
///     catalog_core::page::parse_link_next(link).as_deref(),
///     Some("https://s.example/wp-json/wc/v3/products?page=3"),
/// );
/// ```
pub fn parse_link_next(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (target, params) = part.trim().split_once(';')?;
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let is_next = params.split(';').any(|p| {
            let Some((key, value)) = p.trim().split_once('=') else {
                return false;
            };
            key.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|rel| rel.eq_ignore_ascii_case("next"))
        });
        is_next.then(|| target.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_next_variants() {
        assert_eq!(
            parse_link_next(r#"<https://a/x?page_info=abc&limit=50>; rel="next""#).as_deref(),
            Some("https://a/x?page_info=abc&limit=50")
        );
        assert_eq!(parse_link_next(r#"<https://a/p>; rel="previous""#), None);
        assert_eq!(
            parse_link_next(r#"<https://a/p>; rel=next"#).as_deref(),
            Some("https://a/p")
        );
        assert_eq!(
            parse_link_next(r#"<https://a/p>;REL="prev next""#).as_deref(),
            Some("https://a/p")
        );
        assert_eq!(parse_link_next(""), None);
        assert_eq!(parse_link_next("garbage; rel=next"), None);
    }

    #[test]
    fn cursor_rejects_foreign_text() {
        let c = Cursor::new("not base64 !!");
        assert!(c.decode::<u32>().is_err());
        let other = Cursor::encode(&"a string").unwrap();
        assert!(other.decode::<u32>().is_err());
    }
}
