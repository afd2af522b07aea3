//! Reading a configured store URL: what the client talks to and the shop
//! domain that identifies the store (in webhooks too, so not behind the
//! `client` feature).

use catalog_core::{CatalogError, Result};
use url::Url;

/// `example.myshopify.com` => `https://example.myshopify.com/`; full URLs are
/// kept (with a trailing `/` so that paths join under them).
pub(crate) fn parse_base(raw: &str) -> Result<Url> {
    let raw = raw.trim();
    let with_scheme = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("https://{raw}")
    };
    let mut url = Url::parse(&with_scheme)
        .map_err(|e| CatalogError::Configuration(format!("invalid store URL {raw:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(CatalogError::Configuration(format!(
            "store URL {raw:?} must be http(s) with a host"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(CatalogError::Configuration(
            "store URL must not carry credentials".into(),
        ));
    }
    url.set_query(None);
    url.set_fragment(None);
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

/// The shop domain: the URL's host, lower-cased, with a non-default port kept.
pub(crate) fn store_identity(url: &Url) -> Result<String> {
    let host = url
        .host_str()
        .ok_or_else(|| CatalogError::Configuration("store URL has no host".into()))?
        .to_ascii_lowercase();
    Ok(match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host,
    })
}
