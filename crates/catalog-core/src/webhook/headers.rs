use super::WebhookError;

/// Reads request headers, whatever the HTTP library.
///
/// One method, so it can be implemented for actix-web's, hyper's or reqwest's
/// header maps (which use different `http` crate versions) and for plain maps.
/// Implementations must match names case-insensitively (HTTP/2 lower-cases
/// them) and return `None` for values that are not valid UTF-8.
pub trait HeaderLookup {
    /// The first value of the header, if present and UTF-8.
    fn get(&self, name: &str) -> Option<&str>;
}

/// A small owned header list with case-insensitive lookup, for tests, tools and
/// callers that have no header map of their own.
///
/// ```
/// use catalog_core::webhook::{HeaderLookup, Headers};
/// let h = Headers::new().with("X-Shopify-Topic", "products/create");
/// assert_eq!(h.get("x-shopify-topic"), Some("products/create"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a header (builder style).
    #[must_use]
    pub fn with(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.insert(name, value);
        self
    }

    /// Adds a header.
    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.0.push((name.into(), value.into()));
    }

    /// Iterates over the headers in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

impl HeaderLookup for Headers {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl<T: HeaderLookup + ?Sized> HeaderLookup for &T {
    fn get(&self, name: &str) -> Option<&str> {
        (**self).get(name)
    }
}

/// A header that must be present and non-blank; the value is trimmed.
///
/// # Errors
/// [`WebhookError::MissingHeader`] when absent, [`WebhookError::InvalidHeader`]
/// when blank.
pub fn required_header<'h>(
    headers: &'h dyn HeaderLookup,
    name: &'static str,
) -> Result<&'h str, WebhookError> {
    match headers.get(name) {
        None => Err(WebhookError::MissingHeader(name)),
        Some(v) if v.trim().is_empty() => Err(WebhookError::InvalidHeader {
            name,
            reason: "empty".into(),
        }),
        Some(v) => Ok(v.trim()),
    }
}

/// The signature header's value, trimmed: absent is
/// [`WebhookError::MissingSignature`] and blank is
/// [`WebhookError::EmptySignature`], both authentication failures (401),
/// where [`required_header`] gives the 400s of a malformed request.
///
/// # Errors
/// As above.
pub fn signature_header<'h>(
    headers: &'h dyn HeaderLookup,
    name: &'static str,
) -> Result<&'h str, WebhookError> {
    match headers.get(name) {
        None => Err(WebhookError::MissingSignature(name)),
        Some(v) if v.trim().is_empty() => Err(WebhookError::EmptySignature),
        Some(v) => Ok(v.trim()),
    }
}

/// A header that may be absent; a blank value counts as absent. Trimmed.
pub fn optional_header<'h>(headers: &'h dyn HeaderLookup, name: &str) -> Option<&'h str> {
    headers.get(name).map(str::trim).filter(|v| !v.is_empty())
}
