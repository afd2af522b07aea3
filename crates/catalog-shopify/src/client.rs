//! The client: builder, HTTP with retries, GraphQL calls and product reads.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use catalog_core::body::{CappedBodyError, MAX_RESPONSE_BYTES, collect_capped};
use catalog_core::catalog::stream_pages;
use catalog_core::{
    Capabilities, Catalog, CatalogError, CurrencyCode, Cursor, Page, PageRequest, PlatformId,
    Product, Result, SkippedProduct,
};
use futures::stream::BoxStream;
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use url::Url;

use crate::auth::TokenProvider;
use crate::config::{DEFAULT_API_VERSION, ShopifyAuth, ShopifyConfig};
use crate::convert::{Context, numeric_id, product_from_graphql};
use crate::graphql::{self, GraphqlError, MediaNode, ProductNode, VariantNode, op};
use crate::store_url::{parse_base, store_identity};
use crate::throttle::{self, CostBucket, MAX_QUERY_COST, QueryCost, ThrottleStatus};

/// Header carrying the Admin API access token.
pub const ACCESS_TOKEN_HEADER: &str = "X-Shopify-Access-Token";

/// Largest `first` Shopify accepts on a connection.
pub const MAX_PAGE_SIZE: u32 = 250;

/// Page size of the follow-up queries that complete a product's variants or media.
const FOLLOW_UP_PAGE: u32 = 250;

/// Longest `Retry-After` we wait out; a longer one ends the call with
/// [`CatalogError::RateLimited`] naming the wait, since waiting less than
/// asked would only be refused again.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);

// ---- retries ----------------------------------------------------------------

/// Retry budget and backoff shape.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    max_retries: u32,
    base: Duration,
    max: Duration,
}

/// The retry budget of one call: throttling, 429, 5xx and transport failures
/// all draw from it.
#[derive(Debug)]
pub(crate) struct Retries {
    policy: RetryPolicy,
    used: u32,
}

impl Retries {
    /// The wait before the next attempt (`hint` when the server named one,
    /// else exponential backoff with jitter), or `None` when the budget is spent.
    pub(crate) fn next(&mut self, hint: Option<Duration>) -> Option<Duration> {
        if self.used >= self.policy.max_retries {
            return None;
        }
        let wait = hint.unwrap_or_else(|| {
            catalog_core::retry::backoff(self.policy.base, self.policy.max, self.used)
        });
        self.used += 1;
        Some(wait)
    }
}

/// The HTTP client with its retry policy.
#[derive(Clone)]
pub(crate) struct Http {
    client: reqwest::Client,
    policy: RetryPolicy,
}

pub(crate) fn transport(e: reqwest::Error) -> CatalogError {
    // Signed download URLs and proxy URLs must not leak into logs.
    CatalogError::Transport(Box::new(e.without_url()))
}

fn retry_after(response: &Response) -> Option<Duration> {
    let value = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    catalog_core::retry::retry_after(value, chrono::Utc::now())
}

impl Http {
    pub(crate) fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub(crate) fn retries(&self) -> Retries {
        Retries {
            policy: self.policy,
            used: 0,
        }
    }

    /// Sends a request, retrying 429 (after `Retry-After`), 5xx and transport
    /// failures with backoff. Requests that are not `idempotent` are only
    /// retried when the server cannot have acted on them (429, refused connection).
    /// Returns any other response for the caller to judge.
    pub(crate) async fn send(
        &self,
        retries: &mut Retries,
        idempotent: bool,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Response> {
        loop {
            let (error, hint) = match build().send().await {
                Err(e) => {
                    let retryable = idempotent || e.is_connect();
                    if !retryable {
                        return Err(transport(e));
                    }
                    (transport(e), None)
                }
                Ok(response) => {
                    let status = response.status();
                    if status == StatusCode::TOO_MANY_REQUESTS {
                        let after = retry_after(&response);
                        let error = CatalogError::RateLimited { retry_after: after };
                        if after.is_some_and(|a| a > MAX_RETRY_AFTER) {
                            return Err(error);
                        }
                        (error, after)
                    } else if status.is_server_error() && idempotent {
                        let message = error_message(response).await;
                        (
                            CatalogError::Http {
                                status: status.as_u16(),
                                code: None,
                                message,
                            },
                            None,
                        )
                    } else {
                        return Ok(response);
                    }
                }
            };
            let Some(wait) = retries.next(hint) else {
                return Err(error);
            };
            tracing::debug!(%error, wait_ms = wait.as_millis(), "retrying Shopify request");
            tokio::time::sleep(wait).await;
        }
    }
}

/// `error` with every occurrence of `secret` in its message masked.
pub(crate) fn without_secret(error: CatalogError, secret: &str) -> CatalogError {
    if secret.is_empty() {
        return error;
    }
    let clean = |m: String| {
        if m.contains(secret) {
            m.replace(secret, "[redacted]")
        } else {
            m
        }
    };
    match error {
        CatalogError::Http {
            status,
            code,
            message,
        } => CatalogError::Http {
            status,
            code,
            message: clean(message),
        },
        CatalogError::Unauthorized(m) => CatalogError::Unauthorized(clean(m)),
        CatalogError::NotFound(m) => CatalogError::NotFound(clean(m)),
        CatalogError::Configuration(m) => CatalogError::Configuration(clean(m)),
        other => other,
    }
}

/// Most bytes read of an error response: its message is shown as an
/// excerpt anyway.
const ERROR_BODY_BYTES: usize = 64 * 1024;

/// A short description of an error response body (credentials are masked
/// by the caller, which knows them: see [`without_secret`]).
async fn error_message(response: Response) -> String {
    #[derive(Deserialize)]
    struct Body {
        errors: Value,
    }
    let status = response.status();
    // Only an excerpt is kept: a longer error body reads as none.
    let declared = response.content_length();
    let bytes = collect_capped(response.bytes_stream(), declared, ERROR_BODY_BYTES)
        .await
        .unwrap_or_default();
    let text = match serde_json::from_slice::<Body>(&bytes) {
        Ok(Body {
            errors: Value::String(s),
        }) => s,
        Ok(Body { errors }) => errors.to_string(),
        // One line: an HTML page (a proxy's 502) named by its title.
        Err(_) => catalog_core::error::body_excerpt(&bytes),
    };
    let text: String = text.chars().take(300).collect();
    if text.trim().is_empty() {
        status.canonical_reason().unwrap_or("error").to_owned()
    } else {
        text
    }
}

// ---- builder ----------------------------------------------------------------

/// How [`Catalog::stream_products`] reads the whole catalog.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum StreamMode {
    /// Cursor-paged `products` queries, paced by the cost bucket (the default:
    /// starts at once, sees changes up to the moment each page is read).
    #[default]
    Paged,
    /// A bulk operation (`bulkOperationRunQuery`): not rate-limited, best for
    /// large catalogs, but starts only once Shopify has written the export.
    Bulk,
}

/// Builds a [`ShopifyClient`]. Obtain one with [`ShopifyClient::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct ShopifyClientBuilder {
    store_url: Option<String>,
    base_url: Option<String>,
    api_version: String,
    auth: Option<ShopifyAuth>,
    connect_timeout: Duration,
    timeout: Duration,
    user_agent: String,
    policy: RetryPolicy,
    page_size: u32,
    variants_per_product: u32,
    media_per_product: u32,
    currency: Option<CurrencyCode>,
    stream_mode: StreamMode,
    bulk: BulkOptions,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct BulkOptions {
    pub(crate) poll_interval: Duration,
    pub(crate) window: usize,
    pub(crate) group_objects: bool,
    pub(crate) download_timeout: Duration,
    pub(crate) max_line_bytes: usize,
}

impl Default for ShopifyClientBuilder {
    fn default() -> Self {
        Self {
            store_url: None,
            base_url: None,
            api_version: DEFAULT_API_VERSION.to_owned(),
            auth: None,
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            user_agent: concat!("catalog-shopify/", env!("CARGO_PKG_VERSION")).to_owned(),
            policy: RetryPolicy {
                max_retries: 6,
                base: Duration::from_millis(500),
                max: Duration::from_secs(30),
            },
            page_size: 16,
            variants_per_product: 20,
            media_per_product: 5,
            currency: None,
            stream_mode: StreamMode::Paged,
            bulk: BulkOptions {
                poll_interval: Duration::from_secs(2),
                window: 1000,
                group_objects: false,
                download_timeout: Duration::from_secs(3600),
                max_line_bytes: 16 * 1024 * 1024,
            },
        }
    }
}

impl ShopifyClientBuilder {
    /// The store: `example.myshopify.com` (HTTPS implied) or a full URL with
    /// scheme. Its host (lower-cased) is the store identity in products.
    pub fn store_url(mut self, store: impl Into<String>) -> Self {
        self.store_url = Some(store.into());
        self
    }

    /// Sends requests to this base URL instead of the store's (a fake server
    /// such as `http://127.0.0.1:PORT`, or a proxy). The store identity still
    /// comes from [`Self::store_url`] when one is given.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// Admin API version (default `2026-01`).
    pub fn api_version(mut self, version: impl Into<String>) -> Self {
        self.api_version = version.into();
        self
    }

    /// Authentication (see [`ShopifyAuth`]).
    pub fn auth(mut self, auth: ShopifyAuth) -> Self {
        self.auth = Some(auth);
        self
    }

    /// A static Admin API access token.
    pub fn access_token(self, token: impl Into<secrecy::SecretString>) -> Self {
        self.auth(ShopifyAuth::access_token(token))
    }

    /// Tokens from the app's own store (see [`crate::AccessTokenSource`]),
    /// for apps that hold tokens of the authorization-code grant, expiring
    /// offline tokens included.
    pub fn token_source(self, source: std::sync::Arc<dyn crate::AccessTokenSource>) -> Self {
        self.auth(ShopifyAuth::Source(source))
    }

    /// The client credentials grant.
    pub fn client_credentials(
        self,
        client_id: impl Into<String>,
        client_secret: impl Into<secrecy::SecretString>,
    ) -> Self {
        self.auth(ShopifyAuth::client_credentials(client_id, client_secret))
    }

    /// TCP/TLS connect timeout (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Whole-request timeout for API calls (default 30 s). Bulk downloads use
    /// [`Self::bulk_download_timeout`] instead.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The `User-Agent` header.
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// How many times one call may be retried after throttling (`THROTTLED`,
    /// 429), 5xx or transport failures before the error reaches the caller
    /// (default 6).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.policy.max_retries = retries;
        self
    }

    /// Backoff for 5xx and transport retries: `base * 2^n` capped at `max`,
    /// with jitter (defaults 500 ms and 30 s).
    pub fn retry_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.policy.base = base;
        self.policy.max = max.max(base);
        self
    }

    /// Products per page (default 16, at most 250). Lowered to what fits
    /// Shopify's 1000-point query cost limit by the documented cost rules
    /// (16 with the default variants and media per product), and lowered
    /// again, for the client's life, if Shopify prices a page higher and
    /// refuses it (`MAX_COST_EXCEEDED`: the page is retried smaller).
    pub fn page_size(mut self, size: u32) -> Self {
        self.page_size = size;
        self
    }

    /// Variants fetched with each product (default 20); a product with more
    /// is completed with follow-up queries.
    pub fn variants_per_product(mut self, n: u32) -> Self {
        self.variants_per_product = n;
        self
    }

    /// Media fetched with each product (default 5); more are completed with
    /// follow-up queries.
    pub fn media_per_product(mut self, n: u32) -> Self {
        self.media_per_product = n;
        self
    }

    /// The store currency, instead of asking the store for it once, on
    /// first use (`shop { currencyCode }`).
    pub fn currency(mut self, currency: CurrencyCode) -> Self {
        self.currency = Some(currency);
        self
    }

    /// How [`Catalog::stream_products`] reads the catalog (default [`StreamMode::Paged`]).
    pub fn stream_mode(mut self, mode: StreamMode) -> Self {
        self.stream_mode = mode;
        self
    }

    /// How often a running bulk operation is polled (default 2 s).
    pub fn bulk_poll_interval(mut self, interval: Duration) -> Self {
        self.bulk.poll_interval = interval;
        self
    }

    /// How many products the bulk reader keeps open for late child rows
    /// (default 1000; see [`ShopifyClient::bulk_export`]).
    pub fn bulk_window(mut self, products: usize) -> Self {
        self.bulk.window = products.max(1);
        self
    }

    /// Ask Shopify to group child rows directly under their parent
    /// (`groupObjects: true`; slower on Shopify's side, default false).
    pub fn bulk_group_objects(mut self, group: bool) -> Self {
        self.bulk.group_objects = group;
        self
    }

    /// Whole-download timeout of a bulk result file (default 1 h).
    pub fn bulk_download_timeout(mut self, timeout: Duration) -> Self {
        self.bulk.download_timeout = timeout;
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    /// [`CatalogError::Configuration`] when the store URL, authentication,
    /// currency or API version is missing or malformed.
    pub fn build(self) -> Result<ShopifyClient> {
        let config_err = |m: String| CatalogError::Configuration(m);
        let store_url = self.store_url.as_deref().or(self.base_url.as_deref());
        let store_url =
            store_url.ok_or_else(|| config_err("a Shopify store URL is required".into()))?;
        let store_url = parse_base(store_url)?;
        let base = match &self.base_url {
            Some(b) => parse_base(b)?,
            None => store_url.clone(),
        };
        let store = store_identity(&store_url)?;
        let version = self.api_version.trim();
        if version.is_empty()
            || !version
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(config_err(format!(
                "invalid Shopify API version {version:?}"
            )));
        }
        let graphql_url = base
            .join(&format!("admin/api/{version}/graphql.json"))
            .map_err(|e| config_err(format!("store URL: {e}")))?;
        // Shopify's cost limit applies per app and store: the app is named
        // by its client id, its token (hashed: the registry holds no
        // secret), or its token source.
        let (auth, app) = match self.auth {
            None => {
                return Err(config_err(
                    "Shopify authentication is required (client credentials or access token)"
                        .into(),
                ));
            }
            Some(ShopifyAuth::AccessToken { access_token }) => {
                let app = format!("token:{:016x}", crate::auth::fingerprint(&access_token));
                (TokenProvider::fixed(&access_token)?, app)
            }
            Some(ShopifyAuth::Source(source)) => {
                let app = format!("source:{:p}", std::sync::Arc::as_ptr(&source));
                (TokenProvider::Source(source), app)
            }
            Some(ShopifyAuth::ClientCredentials {
                client_id,
                client_secret,
            }) => {
                let url = base
                    .join("admin/oauth/access_token")
                    .map_err(|e| config_err(format!("store URL: {e}")))?;
                let app = format!("client:{client_id}");
                (TokenProvider::grant(client_id, client_secret, url)?, app)
            }
        };
        let currency = self.currency;
        let client = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .timeout(self.timeout)
            .user_agent(self.user_agent)
            // Never follow redirects: the access token header is custom, and
            // reqwest would forward it to whatever host a redirect names.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| config_err(format!("HTTP client: {}", e.without_url())))?;
        let variants = self.variants_per_product.clamp(1, MAX_PAGE_SIZE);
        let media = self.media_per_product.clamp(1, MAX_PAGE_SIZE);
        let max_first = (1..=MAX_PAGE_SIZE)
            .rev()
            .find(|&f| throttle::estimated_page_cost(f, variants, media) <= MAX_QUERY_COST)
            .ok_or_else(|| {
                config_err(format!(
                    "variants_per_product {variants} and media_per_product {media} exceed \
                     Shopify's {MAX_QUERY_COST}-point query cost limit even for one product"
                ))
            })?;
        let bucket = throttle::bucket_for(&format!("{base} {app}"));
        Ok(ShopifyClient {
            inner: Arc::new(Inner {
                http: Http {
                    client,
                    policy: self.policy,
                },
                store,
                graphql_url,
                api_version: version.to_owned(),
                auth,
                bucket,
                page_size: self.page_size.clamp(1, max_first),
                max_first: AtomicU32::new(max_first),
                variants_per_product: variants,
                media_per_product: media,
                currency: tokio::sync::OnceCell::new_with(currency),
                stream_mode: self.stream_mode,
                bulk: self.bulk,
            }),
        })
    }
}

// ---- the client -------------------------------------------------------------

/// A Shopify Admin API catalog client.
///
/// Cheap to clone: clones share the HTTP connection pool, the access token and
/// the cost bucket. `Debug` shows no credential.
#[derive(Clone)]
pub struct ShopifyClient {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) http: Http,
    pub(crate) store: String,
    graphql_url: Url,
    api_version: String,
    auth: TokenProvider,
    bucket: Arc<CostBucket>,
    page_size: u32,
    /// The largest page known to fit the query cost limit: the estimate,
    /// lowered when Shopify refuses a page for its cost.
    max_first: AtomicU32,
    variants_per_product: u32,
    media_per_product: u32,
    currency: tokio::sync::OnceCell<CurrencyCode>,
    stream_mode: StreamMode,
    pub(crate) bulk: BulkOptions,
}

impl fmt::Debug for ShopifyClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let i = &self.inner;
        f.debug_struct("ShopifyClient")
            .field("store", &i.store)
            .field("graphql_url", &i.graphql_url.as_str())
            .field("auth", &i.auth)
            .field("page_size", &i.page_size)
            .field("stream_mode", &i.stream_mode)
            .finish_non_exhaustive()
    }
}

/// A query Shopify refused for its cost (`MAX_COST_EXCEEDED`).
#[derive(Debug)]
struct CostRefused {
    /// The query's cost as Shopify computed it, when it said.
    cost: Option<f64>,
    message: String,
}

impl CostRefused {
    fn into_error(self) -> CatalogError {
        CatalogError::Configuration(format!(
            "{} (lower page_size, variants_per_product or media_per_product)",
            self.message
        ))
    }
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    errors: Option<Errors>,
    #[serde(default)]
    extensions: Option<Extensions>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Errors {
    List(Vec<GraphqlError>),
    Text(String),
}

#[derive(Deserialize)]
struct Extensions {
    #[serde(default)]
    cost: Option<QueryCost>,
}

fn prefixed(err: CatalogError, prefix: &str) -> CatalogError {
    match err {
        CatalogError::Decode { path, message } => CatalogError::Decode {
            path: if path.is_empty() || path == "." {
                prefix.to_owned()
            } else {
                format!("{prefix}.{path}")
            },
            message,
        },
        other => other,
    }
}

impl ShopifyClient {
    /// A builder with defaults (API version 2026-01, 10 s connect and 30 s
    /// request timeouts, 6 retries, 25 products per page).
    pub fn builder() -> ShopifyClientBuilder {
        ShopifyClientBuilder::default()
    }

    /// A client from configuration, with default tuning.
    ///
    /// # Errors
    /// As [`ShopifyClientBuilder::build`].
    pub fn from_config(config: &ShopifyConfig) -> Result<Self> {
        let mut builder = Self::builder()
            .store_url(&config.store_url)
            .api_version(&config.api_version)
            .auth(config.auth.clone());
        if let Some(currency) = &config.currency {
            builder = builder.currency(*currency);
        }
        builder.build()
    }

    /// The shop domain, as it appears in [`Product::store`].
    pub fn store(&self) -> &str {
        &self.inner.store
    }

    /// The Admin API version in use.
    pub fn api_version(&self) -> &str {
        &self.inner.api_version
    }

    /// What the client currently knows about the store's cost bucket
    /// (`None` before the first response).
    pub fn throttle_status(&self) -> Option<ThrottleStatus> {
        self.inner.bucket.status()
    }

    /// Runs one GraphQL operation and decodes its `data`.
    ///
    /// Paces itself with the store's cost bucket, retries `THROTTLED`, 429,
    /// 5xx and transport failures within the retry budget, and renews a
    /// client-credentials token once on 401.
    pub(crate) async fn graphql<T: DeserializeOwned>(
        &self,
        op: &'static str,
        query: &str,
        variables: Value,
        idempotent: bool,
    ) -> Result<T> {
        self.graphql_priced(op, query, variables, idempotent)
            .await?
            .map_err(CostRefused::into_error)
    }

    /// As [`ShopifyClient::graphql`], with a query Shopify refused for its
    /// cost (`MAX_COST_EXCEEDED`) apart, for a caller that can ask for less.
    async fn graphql_priced<T: DeserializeOwned>(
        &self,
        op: &'static str,
        query: &str,
        variables: Value,
        idempotent: bool,
    ) -> Result<std::result::Result<T, CostRefused>> {
        let inner = &*self.inner;
        let body = bytes::Bytes::from(
            serde_json::to_vec(&json!({ "query": query, "variables": variables }))
                .map_err(|e| CatalogError::Configuration(format!("GraphQL request: {e}")))?,
        );
        let mut retries = inner.http.retries();
        let mut renewed = false;
        loop {
            let permit =
                inner
                    .bucket
                    .acquire(op)
                    .await
                    .map_err(|wait| CatalogError::RateLimited {
                        retry_after: Some(wait),
                    })?;
            let token = inner.auth.token(&inner.http).await?;
            // Error bodies are quoted in errors: one that echoes the request
            // (a proxy's debug page) must not carry the token along.
            let secret = token.header.to_str().unwrap_or_default();
            let scrub = |e: CatalogError| without_secret(e, secret);
            let response = inner
                .http
                .send(&mut retries, idempotent, || {
                    inner
                        .http
                        .client()
                        .post(inner.graphql_url.clone())
                        .header(ACCESS_TOKEN_HEADER, token.header.clone())
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .header(reqwest::header::ACCEPT, "application/json")
                        .body(body.clone())
                })
                .await
                .map_err(scrub)?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED {
                if inner.auth.renewable() && !renewed {
                    tracing::debug!("Shopify answered 401: renewing the access token once");
                    inner.auth.invalidate(&token).await;
                    renewed = true;
                    continue;
                }
                let message = error_message(response).await;
                return Err(scrub(CatalogError::Unauthorized(format!(
                    "Shopify refused the access token (HTTP 401): {message}"
                ))));
            }
            if status == StatusCode::FORBIDDEN {
                let message = error_message(response).await;
                return Err(scrub(CatalogError::Unauthorized(format!(
                    "access denied (HTTP 403; does the app have read_products?): {message}"
                ))));
            }
            if !status.is_success() {
                return Err(scrub(CatalogError::Http {
                    status: status.as_u16(),
                    code: None,
                    message: error_message(response).await,
                }));
            }
            // The body is read here, after `send` has judged the status: a
            // connection cut in the middle of it is a transport failure like
            // any other, retried within the same budget when that is safe.
            let declared = response.content_length();
            let bytes = match collect_capped(response.bytes_stream(), declared, MAX_RESPONSE_BYTES)
                .await
            {
                Ok(bytes) => bytes,
                Err(CappedBodyError::Read(e)) => {
                    let error = transport(e);
                    let wait = if idempotent { retries.next(None) } else { None };
                    let Some(wait) = wait else {
                        return Err(error);
                    };
                    tracing::debug!(%error, wait_ms = wait.as_millis(), "retrying Shopify request");
                    drop(permit);
                    tokio::time::sleep(wait).await;
                    continue;
                }
                Err(too_large) => return Err(too_large.into_catalog_error(transport)),
            };
            let envelope: Envelope = catalog_core::json::decode(&bytes)?;
            let requested = envelope.extensions.and_then(|e| e.cost).map(|cost| {
                let paced = permit.observe(op, &cost);
                (cost.requested_query_cost, paced)
            });
            let errors = match envelope.errors {
                None => Vec::new(),
                Some(Errors::List(list)) => list,
                Some(Errors::Text(text)) => vec![GraphqlError {
                    message: text,
                    extensions: None,
                }],
            };
            if errors.iter().any(|e| e.code() == Some("THROTTLED")) {
                let wait = requested
                    .and_then(|(r, _)| r)
                    .and_then(|r| inner.bucket.time_until(r));
                let Some(backoff) = retries.next(None) else {
                    return Err(CatalogError::RateLimited { retry_after: wait });
                };
                // With a usable throttle status the bucket itself waits the
                // time the restore rate implies before the retry; without
                // one, back off.
                if !requested.is_some_and(|(_, paced)| paced) {
                    drop(permit);
                    tokio::time::sleep(backoff).await;
                }
                tracing::debug!(op, "THROTTLED by Shopify; retrying");
                continue;
            }
            // Shopify reports its own failures inside a 200 as
            // `INTERNAL_SERVER_ERROR`: as transient as a 5xx, and retried the
            // same way (queries only: a mutation may have been applied).
            if idempotent
                && errors
                    .iter()
                    .any(|e| e.code() == Some("INTERNAL_SERVER_ERROR"))
                && let Some(backoff) = retries.next(None)
            {
                tracing::debug!(op, "INTERNAL_SERVER_ERROR from Shopify; retrying");
                drop(permit);
                tokio::time::sleep(backoff).await;
                continue;
            }
            if let Some(refused) = errors
                .iter()
                .find(|e| e.code() == Some("MAX_COST_EXCEEDED"))
            {
                // Scrubbed as every other error text: the message is
                // Shopify's, and quoted to the caller.
                let message = match scrub(CatalogError::Configuration(refused.message.clone())) {
                    CatalogError::Configuration(m) => m,
                    other => other.to_string(),
                };
                return Ok(Err(CostRefused {
                    // Shopify's figure in the error, else the envelope's.
                    cost: refused.cost().or_else(|| requested.and_then(|(r, _)| r)),
                    message,
                }));
            }
            if let Some(first) = errors.first() {
                let code = first.code().map(str::to_owned);
                let message = first.message.clone();
                return Err(scrub(match code.as_deref() {
                    Some("ACCESS_DENIED") => CatalogError::Unauthorized(message),
                    // Shopify's own failure, after the retries: say so, as
                    // the HTTP status (200) does not.
                    Some("INTERNAL_SERVER_ERROR") => CatalogError::Http {
                        status: 500,
                        code,
                        message: format!(
                            "Shopify reported an internal error (in an HTTP 200 answer): {message}"
                        ),
                    },
                    _ => CatalogError::Http {
                        status: status.as_u16(),
                        code,
                        message,
                    },
                }));
            }
            let data = envelope.data.ok_or_else(|| CatalogError::Decode {
                path: "data".into(),
                message: "response has neither data nor errors".into(),
            })?;
            return catalog_core::json::decode_value(data)
                .map(Ok)
                .map_err(|e| prefixed(e, "data"));
        }
    }

    /// The store currency: configured, or asked once and cached.
    pub(crate) async fn currency(&self) -> Result<CurrencyCode> {
        self.inner
            .currency
            .get_or_try_init(|| async {
                let data: graphql::ShopData = self
                    .graphql(op::SHOP_CURRENCY, graphql::SHOP_CURRENCY, json!({}), true)
                    .await?;
                CurrencyCode::new(&data.shop.currency_code).map_err(|e| CatalogError::Decode {
                    path: "data.shop.currencyCode".into(),
                    message: e.to_string(),
                })
            })
            .await
            .cloned()
    }

    fn product_vars(&self) -> (u32, u32) {
        (
            self.inner.variants_per_product,
            self.inner.media_per_product,
        )
    }

    /// Maps a product node, completing variants and media past the first page.
    async fn complete(&self, raw: Value, currency: &CurrencyCode, path: &str) -> Result<Product> {
        match self.complete_node(raw, currency, path).await? {
            Completed::Product(product) => Ok(*product),
            Completed::Unreadable(e) => Err(e),
            Completed::Vanished(what) => Err(CatalogError::NotFound(what)),
        }
    }

    /// [`ShopifyClient::complete`], telling a product's own data that does
    /// not map ([`Completed::Unreadable`]: a listing skips it) from a
    /// request that failed (`Err`: the follow-up pages' server down or
    /// answering nonsense is not this product's, and ends a listing).
    async fn complete_node(
        &self,
        raw: Value,
        currency: &CurrencyCode,
        path: &str,
    ) -> Result<Completed> {
        let unreadable = |e: CatalogError| Ok(Completed::Unreadable(prefixed(e, path)));
        let mut node: ProductNode = match catalog_core::json::decode_value_ref(&raw) {
            Ok(node) => node,
            Err(e) => return unreadable(e),
        };
        let mut variants: Vec<VariantNode> = Vec::new();
        if let Some(conn) = node.variants.take() {
            let next = match conn.next_cursor() {
                Ok(next) => next.map(str::to_owned),
                Err(e) => return unreadable(e),
            };
            variants = conn.nodes;
            if let Some(cursor) = next
                && let Some(unreadable) =
                    own_data(self.rest_of_variants(&node.id, cursor, &mut variants).await)?
            {
                return Ok(unreadable);
            }
        }
        let mut media: Vec<MediaNode> = Vec::new();
        if let Some(conn) = node.media.take() {
            let next = match conn.next_cursor() {
                Ok(next) => next.map(str::to_owned),
                Err(e) => return unreadable(e),
            };
            media = conn.nodes;
            if let Some(cursor) = next
                && let Some(unreadable) =
                    own_data(self.rest_of_media(&node.id, cursor, &mut media).await)?
            {
                return Ok(unreadable);
            }
        }
        let ctx = Context {
            store: &self.inner.store,
            currency,
        };
        match product_from_graphql(node, variants, media, raw, ctx) {
            Ok(product) => Ok(Completed::Product(Box::new(product))),
            Err(e) => unreadable(e),
        }
    }

    async fn rest_of_variants(
        &self,
        id: &str,
        cursor: String,
        out: &mut Vec<VariantNode>,
    ) -> Result<()> {
        let pages = FollowUpPages {
            what: "variants",
            op: op::PRODUCT_VARIANTS,
            query: graphql::PRODUCT_VARIANTS,
        };
        self.rest_of(
            pages,
            id,
            cursor,
            |d: graphql::VariantsData| d.product.map(|p| p.variants),
            out,
        )
        .await
    }

    async fn rest_of_media(
        &self,
        id: &str,
        cursor: String,
        out: &mut Vec<MediaNode>,
    ) -> Result<()> {
        let pages = FollowUpPages {
            what: "media",
            op: op::PRODUCT_MEDIA,
            query: graphql::PRODUCT_MEDIA,
        };
        self.rest_of(
            pages,
            id,
            cursor,
            |d: graphql::MediaData| d.product.map(|p| p.media),
            out,
        )
        .await
    }

    /// Follows one product's `pages` from `cursor` to the end (see
    /// [`FollowUp`]), its nodes decoded one by one into `out`; `connection`
    /// picks the connection out of a page's data (`None`: the product is
    /// gone).
    async fn rest_of<D, T>(
        &self,
        pages: FollowUpPages,
        id: &str,
        mut cursor: String,
        connection: impl Fn(D) -> Option<graphql::Connection<Value>>,
        out: &mut Vec<T>,
    ) -> Result<()>
    where
        D: serde::de::DeserializeOwned,
        T: serde::de::DeserializeOwned,
    {
        let what = pages.what;
        let mut guard = FollowUp::new(what, id, &cursor);
        loop {
            let vars = json!({ "id": id, "first": FOLLOW_UP_PAGE, "after": cursor });
            let data: D = self
                .graphql(pages.op, pages.query, vars, true)
                .await
                .map_err(|e| of_follow_up(e, id, what))?;
            let conn =
                connection(data).ok_or_else(|| CatalogError::NotFound(format!("product {id}")))?;
            let next = conn
                .next_cursor()
                .map_err(|e| of_follow_up(e, id, what))?
                .map(str::to_owned);
            out.extend(own_nodes(id, what, conn.nodes)?);
            match guard.next(next)? {
                Some(n) => cursor = n,
                None => return Ok(()),
            }
        }
    }
}

/// One kind of a product's follow-up pages: its name in errors and paths,
/// its GraphQL operation and query.
#[derive(Clone, Copy)]
struct FollowUpPages {
    what: &'static str,
    op: &'static str,
    query: &'static str,
}

/// A follow-up request's failure, naming the product whose pages it was
/// for: it ends the listing, and "HTTP 502" alone does not say which
/// product's pages the store could not serve.
fn of_follow_up(e: CatalogError, product: &str, what: &str) -> CatalogError {
    let about = format!(
        "product {}'s {what} follow-up page",
        numeric_id(product).unwrap_or(product)
    );
    match e {
        CatalogError::Http {
            status,
            code,
            message,
        } => CatalogError::Http {
            status,
            code,
            message: format!("{about}: {message}"),
        },
        CatalogError::Decode { path, message } => CatalogError::Decode {
            path,
            message: format!("{about}: {message}"),
        },
        other => other,
    }
}

/// A follow-up page's nodes, decoded one by one. A node that does not
/// decode is the product's own data, not the page's: it comes back as
/// [`CatalogError::UnreadableProduct`] for the listing to skip the product
/// (a page that is not a connection at all is Shopify's, and ends it).
fn own_nodes<T: serde::de::DeserializeOwned>(
    product: &str,
    what: &str,
    nodes: Vec<Value>,
) -> Result<Vec<T>> {
    nodes
        .into_iter()
        .enumerate()
        .map(|(i, node)| {
            catalog_core::json::decode_value(node).map_err(|e| match e {
                CatalogError::Decode { path, message } => CatalogError::UnreadableProduct {
                    id: numeric_id(product).unwrap_or(product).to_owned(),
                    path: format!("data.product.{what}.nodes[{i}].{path}"),
                    message,
                },
                other => other,
            })
        })
        .collect()
}

/// A follow-up page's outcome for its product: a node of the product's
/// that did not decode makes it [`Completed::Unreadable`] (`Some`); a
/// request that failed is the listing's error.
fn own_data(followed: Result<()>) -> Result<Option<Completed>> {
    match followed {
        Ok(()) => Ok(None),
        Err(CatalogError::UnreadableProduct { path, message, .. }) => {
            Ok(Some(Completed::Unreadable(CatalogError::Decode {
                path,
                message,
            })))
        }
        // Deleted since it was listed: a listing leaves it out, as the
        // WooCommerce client does.
        Err(CatalogError::NotFound(what)) => Ok(Some(Completed::Vanished(what))),
        Err(e) => Err(e),
    }
}

/// A product node, completed.
enum Completed {
    Product(Box<Product>),
    /// Its data does not map to the model: this product's alone.
    Unreadable(CatalogError),
    /// Deleted between its page and its follow-up pages.
    Vanished(String),
}

/// Most follow-up pages of one product's variants or media: 64 pages of
/// 250 are 16,000, eight times Shopify's 2,048 variants a product (and
/// 250 media). Past it the server is not Shopify's, and a product that
/// never ends must not hold memory and requests for ever.
const MAX_FOLLOW_UP_PAGES: usize = 64;

/// Follows one product's variant or media pages: every cursor new, and a
/// bounded number of pages. Checking only the last cursor let a server
/// that alternated two cursors be followed for ever, its nodes piling up
/// (found by an outside audit).
struct FollowUp {
    what: &'static str,
    /// The product's numeric id, named in the errors.
    product: String,
    seen: std::collections::HashSet<String>,
}

impl FollowUp {
    fn new(what: &'static str, product_gid: &str, first: &str) -> Self {
        Self {
            what,
            product: numeric_id(product_gid).unwrap_or(product_gid).to_owned(),
            seen: std::iter::once(first.to_owned()).collect(),
        }
    }

    /// The cursor to ask for next, `None` at the end.
    fn next(&mut self, next: Option<String>) -> Result<Option<String>> {
        let Some(cursor) = next else {
            return Ok(None);
        };
        if self.seen.len() >= MAX_FOLLOW_UP_PAGES {
            return Err(self.error(&format!(
                "more than {MAX_FOLLOW_UP_PAGES} pages of {}: more than Shopify allows a product",
                self.what
            )));
        }
        if !self.seen.insert(cursor.clone()) {
            return Err(self.error("Shopify repeated a cursor"));
        }
        Ok(Some(cursor))
    }

    fn error(&self, message: &str) -> CatalogError {
        CatalogError::Decode {
            path: format!("data.product.{}.pageInfo.endCursor", self.what),
            message: format!("product {}: {message}", self.product),
        }
    }
}

/// `123` or `gid://shopify/Product/123` => the GID.
fn product_gid(id: &str) -> Option<String> {
    let id = id.trim();
    if id.starts_with("gid://shopify/Product/") && numeric_id(id).is_some() {
        Some(id.to_owned())
    } else if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) {
        Some(format!("gid://shopify/Product/{id}"))
    } else {
        None
    }
}

#[async_trait::async_trait]
impl Catalog for ShopifyClient {
    fn platform(&self) -> PlatformId {
        PlatformId::SHOPIFY
    }

    fn capabilities(&self) -> Capabilities {
        let caps =
            Capabilities::paged(self.inner.max_first.load(Ordering::Relaxed)).with_global_ids();
        match self.inner.stream_mode {
            StreamMode::Bulk => caps.with_bulk_export(),
            StreamMode::Paged => caps,
        }
    }

    /// Accepts a numeric id (`788032119674292922`) or a GID
    /// (`gid://shopify/Product/788032119674292922`); anything else, and
    /// `product: null`, is [`CatalogError::NotFound`].
    async fn get_product(&self, id: &str) -> Result<Product> {
        let gid = product_gid(id)
            .ok_or_else(|| CatalogError::NotFound(format!("{id:?} is not a Shopify product id")))?;
        let currency = self.currency().await?;
        let (variants, media) = self.product_vars();
        let vars = json!({ "id": gid, "variantsFirst": variants, "mediaFirst": media });
        let data: graphql::ProductData = self
            .graphql(op::GET_PRODUCT, &graphql::get_product(), vars, true)
            .await?;
        let raw = data
            .product
            .filter(|p| !p.is_null())
            .ok_or_else(|| CatalogError::NotFound(format!("product {gid}")))?;
        self.complete(raw, &currency, "data.product").await
    }

    /// One page of products in id order. `limit` is clamped to what fits in
    /// one query; the cursor is Shopify's `endCursor`.
    async fn list_page(&self, request: PageRequest) -> Result<Page<Product>> {
        let wanted = request.limit.unwrap_or(self.inner.page_size);
        let currency = self.currency().await?;
        let (variants, media) = self.product_vars();
        let data: graphql::ProductsData = loop {
            let first = wanted.clamp(1, self.inner.max_first.load(Ordering::Relaxed));
            let vars = json!({
                "first": first,
                "after": request.cursor.as_ref().map(Cursor::as_str),
                "variantsFirst": variants,
                "mediaFirst": media,
            });
            match self
                .graphql_priced(op::LIST_PRODUCTS, &graphql::list_products(), vars, true)
                .await?
            {
                Ok(data) => break data,
                // Shopify prices the page above its limit (manual field
                // costs, a schema change): smaller pages from now on.
                Err(refused) if first > 1 => {
                    let smaller = throttle::smaller_page(first, refused.cost);
                    self.inner.max_first.fetch_min(smaller, Ordering::Relaxed);
                    tracing::warn!(
                        first,
                        cost = refused.cost,
                        smaller,
                        "Shopify refused a page of products for its query cost; \
                         asking for fewer products a page"
                    );
                }
                Err(refused) => return Err(refused.into_error()),
            }
        };
        let mut items = Vec::with_capacity(data.products.nodes.len());
        let mut skipped = Vec::new();
        for (i, raw) in data.products.nodes.into_iter().enumerate() {
            let path = format!("data.products.nodes[{i}]");
            let id = raw
                .get("id")
                .and_then(Value::as_str)
                .map_or("?", |gid| numeric_id(gid).unwrap_or(gid))
                .to_owned();
            match self.complete_node(raw, &currency, &path).await? {
                Completed::Product(product) => items.push(*product),
                // This product's data: left out and named; the page goes on.
                Completed::Unreadable(e) => {
                    skipped.push(SkippedProduct::from_error(id, &e).ok_or(e)?);
                }
                Completed::Vanished(_) => {}
            }
        }
        let info = data.products.page_info;
        // More pages but no cursor to them: an error, not a silent end of
        // the listing.
        let next = match (info.has_next_page, info.end_cursor) {
            (false, _) => None,
            (true, Some(cursor)) => Some(Cursor::new(cursor)),
            (true, None) => {
                return Err(CatalogError::Decode {
                    path: "data.products.pageInfo.endCursor".into(),
                    message: "hasNextPage is true but endCursor is null".into(),
                });
            }
        };
        Ok(Page::new(items, next).with_skipped(skipped))
    }

    /// Paged reads by default; a bulk export when the client was built with
    /// [`StreamMode::Bulk`].
    fn stream_products(&self) -> BoxStream<'_, Result<Product>> {
        match self.inner.stream_mode {
            StreamMode::Bulk => self.bulk_export(),
            StreamMode::Paged => stream_pages(move |request| self.list_page(request), None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let u = parse_base("Example.myshopify.com").unwrap();
        assert_eq!(u.as_str(), "https://example.myshopify.com/");
        assert_eq!(store_identity(&u).unwrap(), "example.myshopify.com");
        let u = parse_base("http://127.0.0.1:8080").unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:8080/");
        assert_eq!(store_identity(&u).unwrap(), "127.0.0.1:8080");
        let u = parse_base("https://proxy.example/shopify").unwrap();
        assert_eq!(
            u.join("admin/api/2026-01/graphql.json").unwrap().as_str(),
            "https://proxy.example/shopify/admin/api/2026-01/graphql.json"
        );
        assert!(parse_base("ftp://x").is_err());
        assert!(parse_base("https://user:pw@x.myshopify.com").is_err());
    }

    #[test]
    fn product_ids() {
        assert_eq!(
            product_gid("788032119674292922").as_deref(),
            Some("gid://shopify/Product/788032119674292922")
        );
        assert_eq!(
            product_gid("gid://shopify/Product/1").as_deref(),
            Some("gid://shopify/Product/1")
        );
        assert_eq!(product_gid("gid://shopify/ProductVariant/1"), None);
        assert_eq!(product_gid("abc"), None);
    }

    #[test]
    fn backoff_grows_with_jitter_and_stops() {
        let mut r = Retries {
            policy: RetryPolicy {
                max_retries: 3,
                base: Duration::from_millis(100),
                max: Duration::from_millis(300),
            },
            used: 0,
        };
        let a = r.next(None).unwrap();
        assert!(a >= Duration::from_millis(50) && a <= Duration::from_millis(100));
        let b = r.next(None).unwrap();
        assert!(b >= Duration::from_millis(100) && b <= Duration::from_millis(200));
        assert_eq!(
            r.next(Some(Duration::from_secs(2))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(r.next(None), None);
    }

    #[test]
    fn builder_requires_store_and_auth_and_redacts() {
        assert!(ShopifyClient::builder().access_token("t").build().is_err());
        assert!(
            ShopifyClient::builder()
                .store_url("s.myshopify.com")
                .build()
                .is_err()
        );
        let c = ShopifyClient::builder()
            .store_url("S.myshopify.com")
            .client_credentials("id", "super-secret-value")
            .build()
            .unwrap();
        assert_eq!(c.store(), "s.myshopify.com");
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("super-secret-value"), "{dbg}");
        let c = ShopifyClient::builder()
            .store_url("s.myshopify.com")
            .access_token("shpat_abcdef")
            .build()
            .unwrap();
        assert!(!format!("{c:?}").contains("shpat_abcdef"));
    }

    #[test]
    fn page_size_is_clamped_under_the_cost_limit() {
        let c = ShopifyClient::builder()
            .store_url("s.myshopify.com")
            .access_token("t")
            .page_size(250)
            .build()
            .unwrap();
        let (v, m) = c.product_vars();
        assert!(
            throttle::estimated_page_cost(c.inner.page_size, v, m) <= MAX_QUERY_COST,
            "{}",
            c.inner.page_size
        );
    }
}
