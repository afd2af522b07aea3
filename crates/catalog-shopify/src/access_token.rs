//! The trait an app implements to hand the client the access tokens it
//! keeps and renews itself. Outside `auth` so that [`crate::ShopifyAuth`]
//! names it in builds without the `client` feature too.

use catalog_core::Result;
use secrecy::SecretString;

/// Access tokens an app obtains and renews itself, for a client built with
/// [`crate::ShopifyAuth::Source`].
///
/// Why: tokens from the authorization-code grant (public apps) are the
/// app's to keep, and since 2026 expire. Shopify's expiring offline tokens
/// last 60 minutes and come with a refresh token that rotates on every
/// refresh, so the app must store each new one; public apps created from
/// April 2026 must use them. The app's own token store implements this
/// trait, and the client asks it for the current token before each request.
///
/// ```
/// use catalog_shopify::AccessTokenSource;
/// use catalog_shopify::catalog_core::secrecy::SecretString;
///
/// struct FromMyTokenStore;
///
/// #[catalog_shopify::catalog_core::async_trait]
/// impl AccessTokenSource for FromMyTokenStore {
///     async fn access_token(&self) -> catalog_shopify::catalog_core::Result<SecretString> {
///         // Read the shop's token, refreshing it first when it expires
///         // within a minute (and storing the new refresh token).
///         Ok(SecretString::from("shpua_…"))
///     }
/// }
/// ```
#[async_trait::async_trait]
pub trait AccessTokenSource: Send + Sync {
    /// The token to send now. Called before every request (cache it: this
    /// should not hit the network unless the token is about to expire).
    ///
    /// # Errors
    /// Any [`CatalogError`](catalog_core::CatalogError); the request is not sent and the caller gets it.
    async fn access_token(&self) -> Result<SecretString>;

    /// Shopify refused `token` (HTTP 401): renew it if you can. The client
    /// then asks [`AccessTokenSource::access_token`] once more and retries
    /// the request once; a second 401 is [`CatalogError::Unauthorized`](catalog_core::CatalogError::Unauthorized).
    /// The default does nothing.
    async fn refused(&self, token: &SecretString) {
        let _ = token;
    }
}
