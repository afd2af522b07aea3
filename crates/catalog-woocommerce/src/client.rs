//! The wc/v3 REST client: builder, requests with retries, products.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use catalog_core::body::{MAX_RESPONSE_BYTES, collect_capped};
use catalog_core::{
    Capabilities, Catalog, CatalogError, CurrencyCode, Cursor, Page, PageRequest, PlatformId,
    Product, Result, SkippedProduct, WeightUnit,
};
use futures::stream::{self, BoxStream, StreamExt};
use reqwest::header::{AUTHORIZATION, HeaderMap, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tokio::sync::{OnceCell, Semaphore};

use crate::AuthMode;
use crate::auth::Credentials;
use crate::config::{normalize_store_url, parse_store_url, store_identity};
use crate::convert::{Units, has_variations, product_from_wire};
use crate::pagination::{Keyed, Stitcher, Window};
use crate::wire::{SettingValue, WireProduct, WireVariation, WpError};

/// The largest `per_page` WooCommerce accepts.
pub const MAX_PER_PAGE: u32 = 100;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_CONCURRENCY: usize = 8;
const DEFAULT_MAX_RETRIES: u32 = 3;
const DEFAULT_RETRY_BASE: Duration = Duration::from_millis(250);
const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(30);
const DEFAULT_OVERLAP: u32 = 5;
/// Most variation pages read for one product (a million variations) when
/// its listing names none.
const MAX_VARIATION_PAGES: u64 = 10_000;

/// Variation pages to read at most for a product whose listing names
/// `listed` variations: those pages, and one more for variations added
/// since the listing. A server that promises more pages (a wrong
/// `X-WP-TotalPages`) is not followed past them.
fn variation_pages_cap(listed: usize) -> u64 {
    if listed == 0 {
        return MAX_VARIATION_PAGES;
    }
    let pages = listed.div_ceil(MAX_PER_PAGE as usize).saturating_add(1);
    u64::try_from(pages).map_or(MAX_VARIATION_PAGES, |p| p.min(MAX_VARIATION_PAGES))
}

/// Variation pages asked for in id order must follow one another: each
/// starts after the last id of the page before. A cache or proxy that
/// ignores `page` answers the first page again for every page, and was
/// followed up to the page cap, every copy held in memory (an outside
/// audit: 10,000 requests and 585 MB, then success).
#[derive(Debug, Default)]
struct PageOrder {
    last: Option<u64>,
}

impl PageOrder {
    fn check(&mut self, page: u64, variations: &[WireVariation]) -> Result<()> {
        let mut last = self.last;
        for v in variations {
            if last.is_some_and(|l| v.id <= l) {
                return Err(CatalogError::Decode {
                    path: format!("variations page {page}"),
                    message: format!(
                        "variation {} is not after variation {} of the page before, in id \
                         order: the server (or a cache in front of it) repeats or shuffles \
                         pages",
                        v.id,
                        last.unwrap_or_default()
                    ),
                });
            }
            last = Some(v.id);
        }
        self.last = last;
        Ok(())
    }
}

/// A WooCommerce wc/v3 catalog client. Cheap to clone (shared state).
///
/// ```no_run
/// use catalog_woocommerce::catalog_core::Catalog;
/// use futures::TryStreamExt;
/// # async fn run() -> catalog_core::Result<()> {
/// let client = catalog_woocommerce::WooCommerceClient::builder()
///     .store_url("https://shop.example.com")
///     .credentials("ck_…", "cs_…")
///     .build()?;
/// let products: Vec<_> = client.stream_products().try_collect().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct WooCommerceClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    api_base: String,
    store: String,
    credentials: Credentials,
    auth: AuthMode,
    currency: OnceCell<CurrencyCode>,
    weight_unit: Option<WeightUnit>,
    concurrency: usize,
    limiter: Semaphore,
    retry: RetryPolicy,
    per_page: u32,
    overlap: u32,
}

impl fmt::Debug for WooCommerceClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WooCommerceClient")
            .field("store", &self.inner.store)
            .field("auth", &self.inner.auth)
            .field("concurrency", &self.inner.concurrency)
            .field("per_page", &self.inner.per_page)
            .finish_non_exhaustive()
    }
}

/// How transient failures (429, 5xx, transport) are retried.
#[derive(Debug, Clone, Copy)]
struct RetryPolicy {
    max_retries: u32,
    base: Duration,
    max_delay: Duration,
}

impl RetryPolicy {
    /// Exponential backoff with "equal jitter": half fixed, half random.
    fn backoff(&self, attempt: u32) -> Duration {
        catalog_core::retry::backoff(self.base, self.max_delay, attempt)
    }
}

/// Builds a [`WooCommerceClient`]. Every timeout has a default; none can be
/// switched off.
#[derive(Debug, Clone)]
pub struct WooCommerceClientBuilder {
    store_url: Option<String>,
    base_url: Option<String>,
    credentials: Option<Credentials>,
    auth: AuthMode,
    currency: Option<CurrencyCode>,
    weight_unit: Option<WeightUnit>,
    timeout: Duration,
    connect_timeout: Duration,
    user_agent: String,
    concurrency: usize,
    retry: RetryPolicy,
    per_page: u32,
    overlap: u32,
}

impl Default for WooCommerceClientBuilder {
    fn default() -> Self {
        Self {
            store_url: None,
            base_url: None,
            credentials: None,
            auth: AuthMode::Auto,
            currency: None,
            weight_unit: None,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            user_agent: concat!("catalog-woocommerce/", env!("CARGO_PKG_VERSION")).to_owned(),
            concurrency: DEFAULT_CONCURRENCY,
            retry: RetryPolicy {
                max_retries: DEFAULT_MAX_RETRIES,
                base: DEFAULT_RETRY_BASE,
                max_delay: DEFAULT_RETRY_MAX,
            },
            per_page: MAX_PER_PAGE,
            overlap: DEFAULT_OVERLAP,
        }
    }
}

impl WooCommerceClientBuilder {
    /// The store's site URL: its identity (`Product::store`, matched against
    /// `X-WC-Webhook-Source`) and, unless [`Self::base_url`] is set, where
    /// requests go. A bare domain means `https`.
    #[must_use]
    pub fn store_url(mut self, url: impl Into<String>) -> Self {
        self.store_url = Some(url.into());
        self
    }

    /// Sends requests to this URL instead of the store URL (a proxy, or a
    /// fake server in tests). Full URL with scheme; a bare domain means https.
    /// When no store URL is set, this is also the store identity.
    #[must_use]
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// The REST API key pair.
    #[must_use]
    pub fn credentials(
        mut self,
        consumer_key: impl Into<SecretString>,
        consumer_secret: impl Into<SecretString>,
    ) -> Self {
        self.credentials = Some(Credentials::new(consumer_key, consumer_secret));
        self
    }

    /// How to authenticate (default [`AuthMode::Auto`]).
    #[must_use]
    pub fn auth_mode(mut self, mode: AuthMode) -> Self {
        self.auth = mode;
        self
    }

    /// The store currency. Without it, the client reads
    /// `settings/general/woocommerce_currency` once, on first use.
    #[must_use]
    pub fn currency(mut self, currency: CurrencyCode) -> Self {
        self.currency = Some(currency);
        self
    }

    /// The store weight unit (WooCommerce > Settings > Products,
    /// `woocommerce_weight_unit`). Without it variants carry no weight: the
    /// API sends bare numbers.
    #[must_use]
    pub fn weight_unit(mut self, unit: WeightUnit) -> Self {
        self.weight_unit = Some(unit);
        self
    }

    /// Whole-request timeout (default 30 s, must not be zero).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connect timeout (default 10 s).
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The `User-Agent` header.
    #[must_use]
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = user_agent.into();
        self
    }

    /// Most requests in flight at once (default 8, at least 1). `1` gives
    /// strictly sequential paging.
    #[must_use]
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// Retries of 429, 5xx and transport failures (default 3).
    #[must_use]
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.retry.max_retries = retries;
        self
    }

    /// Backoff for 429, 5xx and transport retries: `base * 2^n` capped at
    /// `max`, with jitter (defaults 250 ms and 30 s), as in
    /// `catalog-shopify`. A `Retry-After` longer than `max` ends the retries
    /// with [`CatalogError::RateLimited`] at once.
    #[must_use]
    pub fn retry_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.retry.base = base;
        self.retry.max_delay = max.max(base);
        self
    }

    /// First backoff delay.
    #[deprecated(
        since = "0.1.0",
        note = "use `retry_backoff(base, max)`, as in catalog-shopify"
    )]
    #[must_use]
    pub fn retry_base_delay(mut self, delay: Duration) -> Self {
        self.retry.base = delay;
        self
    }

    /// Longest wait between attempts.
    #[deprecated(
        since = "0.1.0",
        note = "use `retry_backoff(base, max)`, as in catalog-shopify"
    )]
    #[must_use]
    pub fn max_retry_delay(mut self, delay: Duration) -> Self {
        self.retry.max_delay = delay;
        self
    }

    /// Products per page, and per request when streaming (2..=100, default
    /// 100; WooCommerce's `per_page`).
    #[must_use]
    pub fn page_size(mut self, size: u32) -> Self {
        self.per_page = size;
        self
    }

    /// Products per page.
    #[deprecated(since = "0.1.0", note = "use `page_size`, as in catalog-shopify")]
    #[must_use]
    pub fn per_page(self, per_page: u32) -> Self {
        self.page_size(per_page)
    }

    /// How many products consecutive windows share (default 5, at least 1,
    /// less than the page size). More overlap absorbs more deletions during a
    /// listing without extra requests (see [`crate::pagination`]).
    #[must_use]
    pub fn page_overlap(mut self, overlap: u32) -> Self {
        self.overlap = overlap;
        self
    }

    /// Builds the client.
    ///
    /// # Errors
    /// [`CatalogError::Configuration`] without a store URL or credentials, or
    /// with an unusable URL or user agent.
    pub fn build(self) -> Result<WooCommerceClient> {
        let store_src = self
            .store_url
            .as_deref()
            .or(self.base_url.as_deref())
            .ok_or_else(|| CatalogError::Configuration("store_url is required".into()))?;
        // The identity (https whatever the scheme, as in webhook
        // deliveries) names the products; calls go to the URL as given.
        let store = store_identity(store_src).map_err(CatalogError::Configuration)?;
        let base = normalize_store_url(self.base_url.as_deref().unwrap_or(store_src))
            .map_err(CatalogError::Configuration)?;
        let scheme = parse_store_url(&base)
            .map_err(CatalogError::Configuration)?
            .scheme()
            .to_owned();
        let credentials = self.credentials.filter(|c| !c.is_blank()).ok_or_else(|| {
            CatalogError::Configuration("consumer_key and consumer_secret are required".into())
        })?;
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .user_agent(self.user_agent)
            // A redirect would resend query-string credentials to wherever it
            // points; report it instead (usually http→https or www).
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| {
                CatalogError::Configuration(format!("HTTP client: {}", e.without_url()))
            })?;
        if self.timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(CatalogError::Configuration(
                "timeouts must be greater than zero".into(),
            ));
        }
        let per_page = self.per_page.clamp(2, MAX_PER_PAGE);
        let concurrency = self.concurrency.max(1);
        Ok(WooCommerceClient {
            inner: Arc::new(Inner {
                http,
                api_base: format!("{base}/wp-json/wc/v3/"),
                store,
                credentials,
                auth: self.auth.resolve(&scheme),
                currency: match self.currency {
                    Some(c) => OnceCell::new_with(Some(c)),
                    None => OnceCell::new(),
                },
                weight_unit: self.weight_unit,
                concurrency,
                limiter: Semaphore::new(concurrency),
                retry: self.retry,
                per_page,
                overlap: self.overlap.clamp(1, per_page - 1),
            }),
        })
    }
}

/// A successful response.
struct Response {
    body: bytes::Bytes,
    total: Option<u64>,
    total_pages: Option<u64>,
}

/// A product as listed, with its raw JSON.
struct Listed {
    /// The product's id, read on its own: it places the product in the
    /// listing even when the rest of it does not decode.
    id: u64,
    /// The product, or why it does not decode (a field of the wrong type):
    /// that product is skipped, the listing goes on.
    wire: Result<WireProduct>,
    raw: serde_json::Value,
}

impl Keyed for Listed {
    fn key(&self) -> u64 {
        self.id
    }
}

/// The state a [`Cursor`] from [`WooCommerceClient::list_page`] carries.
#[derive(Debug, Serialize, Deserialize)]
struct CursorState {
    /// Offset of the next window.
    o: u64,
    /// Last id returned.
    l: Option<u64>,
    /// Page size (products per page).
    n: u32,
}

impl WooCommerceClient {
    /// A builder with defaults.
    pub fn builder() -> WooCommerceClientBuilder {
        WooCommerceClientBuilder::default()
    }

    /// The store identity used in [`Product::store`] (normalised site URL).
    pub fn store(&self) -> &str {
        &self.inner.store
    }

    /// The authentication mode in use (`Auto` resolved by scheme).
    pub fn auth_mode(&self) -> AuthMode {
        self.inner.auth
    }

    /// The store currency: configured, or read once from the store settings.
    ///
    /// # Errors
    /// Any request error, or [`CatalogError::Decode`] for an invalid code.
    pub async fn currency(&self) -> Result<CurrencyCode> {
        self.inner
            .currency
            .get_or_try_init(|| async {
                let resp = self
                    .get("settings/general/woocommerce_currency", &[])
                    .await
                    .map_err(|e| match e {
                        CatalogError::Unauthorized(m) => CatalogError::Unauthorized(format!(
                            "{m} (reading the store currency needs a key whose user can manage \
                             WooCommerce; or configure the currency)"
                        )),
                        other => other,
                    })?;
                let setting: SettingValue = catalog_core::json::decode(&resp.body)?;
                CurrencyCode::new(&setting.value).map_err(|e| CatalogError::Decode {
                    path: "value".into(),
                    message: e.to_string(),
                })
            })
            .await
            .cloned()
    }

    /// GETs `path` (relative to `/wp-json/wc/v3/`) with retries.
    async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Response> {
        let inner = &self.inner;
        let mut url = Url::parse(&format!("{}{path}", inner.api_base))
            .map_err(|e| CatalogError::Configuration(format!("request URL: {e}")))?;
        if !query.is_empty() {
            url.query_pairs_mut()
                .extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let mut attempt = 0u32;
        loop {
            let outcome = self.attempt(&url).await;
            let err = match outcome {
                Ok(r) => return Ok(r),
                Err(e) => e,
            };
            let (err, retry_after) = err;
            if !err.is_transient() || attempt >= inner.retry.max_retries {
                return Err(finalize(err, retry_after));
            }
            let wait = match retry_after {
                // Waiting less than asked would be refused again; waiting
                // longer than configured is not ours to decide.
                Some(ra) if ra > inner.retry.max_delay => return Err(finalize(err, Some(ra))),
                Some(ra) => ra,
                None => inner.retry.backoff(attempt),
            };
            tracing::debug!(path, attempt, wait_ms = wait.as_millis() as u64, error = %err, "retrying");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// One attempt. Auth is applied per attempt: OAuth needs a fresh nonce.
    async fn attempt(&self, url: &Url) -> Result<Response, (CatalogError, Option<Duration>)> {
        let inner = &self.inner;
        let _permit = inner
            .limiter
            .acquire()
            .await
            .map_err(|_| (CatalogError::Configuration("client shut down".into()), None))?;
        let authorized = inner.credentials.authorize(inner.auth, "GET", url);
        let mut req = inner.http.get(authorized.url);
        if let Some(h) = authorized.header {
            req = req.header(AUTHORIZATION, h);
        }
        let resp = req.send().await.map_err(|e| (transport(e), None))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let declared = resp.content_length();
        let body = collect_capped(resp.bytes_stream(), declared, MAX_RESPONSE_BYTES)
            .await
            .map(bytes::Bytes::from)
            .map_err(|e| (e.into_catalog_error(transport), None))?;
        tracing::debug!(path = url.path(), status = status.as_u16(), "wc request");
        if status.is_success() {
            return Ok(Response {
                body,
                total: header_u64(&headers, "x-wp-total"),
                total_pages: header_u64(&headers, "x-wp-totalpages"),
            });
        }
        let retry_after = retry_after(&headers);
        let error = match error_from_response(status, &body, &inner.credentials) {
            // WooCommerce reads Basic and query-string keys only when it sees
            // the request as HTTPS (`is_ssl()`): over http it ignores them.
            CatalogError::Unauthorized(m)
                if url.scheme() == "http"
                    && matches!(inner.auth, AuthMode::Basic | AuthMode::QueryString) =>
            {
                CatalogError::Unauthorized(format!(
                    "{m} (auth mode {:?} over http://: WooCommerce reads these keys only over \
                     HTTPS; use an https:// store URL, or auth mode oauth1 for http)",
                    inner.auth
                ))
            }
            other => other,
        };
        Err((error, retry_after))
    }

    /// One window of products ordered by id.
    async fn fetch_window(&self, offset: u64, per_page: u32) -> Result<Window<Listed>> {
        let resp = self
            .get(
                "products",
                &[
                    ("per_page", per_page.to_string()),
                    ("offset", offset.to_string()),
                    ("orderby", "id".into()),
                    ("order", "asc".into()),
                ],
            )
            .await?;
        let values: Vec<serde_json::Value> = catalog_core::json::decode(&resp.body)?;
        let items = values
            .into_iter()
            .enumerate()
            .map(|(i, raw)| {
                // Without a readable id a product cannot be placed in the
                // id order the listing walks: the window fails.
                let id = raw
                    .get("id")
                    .and_then(serde_json::Value::as_u64)
                    .ok_or_else(|| CatalogError::Decode {
                        path: format!("[{i}].id"),
                        message: "a listed product without a numeric id".into(),
                    })?;
                let wire = crate::wire::decode_listed(&raw).map_err(|e| prefix(e, i));
                Ok(Listed { id, wire, raw })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Window {
            offset,
            requested: per_page,
            items,
            total: resp.total,
        })
    }

    /// All variations of a variable product, every page (pages fetched
    /// concurrently once the first reports the page count).
    /// A product's variations, read in id order; `listed` is how many the
    /// product's own `variations` list names (0 when it names none).
    async fn fetch_variations(&self, product_id: u64, listed: usize) -> Result<Vec<WireVariation>> {
        let path = format!("products/{product_id}/variations");
        let cap = variation_pages_cap(listed);
        let mut order = PageOrder::default();
        let page = |n: u64| {
            let path = path.clone();
            async move {
                let resp = self
                    .get(
                        &path,
                        &[
                            ("per_page", MAX_PER_PAGE.to_string()),
                            ("page", n.to_string()),
                            ("orderby", "id".into()),
                            ("order", "asc".into()),
                        ],
                    )
                    .await?;
                // A page that is not a list is the store's failure; a
                // variation in it that does not decode is the product's
                // data (`UnreadableProduct`: the listing skips the product).
                let values: Vec<serde_json::Value> = catalog_core::json::decode(&resp.body)?;
                let vs = values
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let variation = v.get("id").and_then(serde_json::Value::as_u64);
                        crate::wire::decode_listed::<WireVariation>(&v).map_err(|e| match e {
                            CatalogError::Decode { path, message } => {
                                CatalogError::UnreadableProduct {
                                    id: product_id.to_string(),
                                    path: match variation {
                                        Some(v) => format!("variation {v}: {path}"),
                                        None => format!("variations page {n}[{i}]: {path}"),
                                    },
                                    message,
                                }
                            }
                            other => other,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok::<_, CatalogError>((vs, resp.total_pages))
            }
        };
        let (mut all, pages) = page(1).await?;
        order.check(1, &all)?;
        let Some(pages) = pages else {
            // No X-WP-TotalPages (a proxy or cache dropped it): one page
            // after another until a short one, rather than the first
            // hundred variations taken for all of them.
            let mut last = all.len();
            let mut n = 2_u64;
            while last >= MAX_PER_PAGE as usize && n <= cap {
                let (vs, _) = page(n).await?;
                order.check(n, &vs)?;
                last = vs.len();
                all.extend(vs);
                n += 1;
            }
            return Ok(all);
        };
        let pages = pages.min(cap);
        if pages > 1 {
            // In order, and stopped at the first page out of order: pages
            // are read a few at a time, not all before any is checked.
            let mut rest = stream::iter(2..=pages)
                .map(|n| {
                    let fetched = page(n);
                    async move { (n, fetched.await) }
                })
                .buffered(self.inner.concurrency);
            while let Some((n, fetched)) = rest.next().await {
                let (vs, _) = fetched?;
                order.check(n, &vs)?;
                all.extend(vs);
            }
        }
        Ok(all)
    }

    /// The currency and weight unit products are read with: the store's,
    /// asked once (not per product: a store-wide failure is not a product's).
    async fn units(&self) -> Result<Units> {
        Ok(Units {
            currency: self.currency().await?,
            weight: self.inner.weight_unit.clone(),
        })
    }

    /// Turns a listed product into a [`Product`], fetching variations.
    ///
    /// # Errors
    /// A request that fails (the variations endpoint down, or answering
    /// with something that is not variations): not this product's data,
    /// so the listing ends. Data that does not map is
    /// [`Completed::Unreadable`].
    async fn complete(&self, item: Listed, units: &Units) -> Result<Completed> {
        let wire = match item.wire {
            Ok(wire) => wire,
            Err(e) => return Ok(Completed::Unreadable(e)),
        };
        let variations = if has_variations(&wire) {
            match self.fetch_variations(wire.id, wire.variations.len()).await {
                Ok(v) => Some(v),
                Err(CatalogError::NotFound(_)) => return Ok(Completed::Vanished),
                // One of its variations does not decode: its own data.
                Err(CatalogError::UnreadableProduct { path, message, .. }) => {
                    return Ok(Completed::Unreadable(CatalogError::Decode {
                        path,
                        message,
                    }));
                }
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        Ok(
            match product_from_wire(&self.inner.store, units, wire, item.raw, variations) {
                Ok(product) => Completed::Product(Box::new(product)),
                Err(e) => Completed::Unreadable(e),
            },
        )
    }

    /// Completes a batch concurrently (the limiter bounds the requests), in
    /// order, dropping products that vanished. A product whose data cannot
    /// be read is [`CatalogError::UnreadableProduct`] in its place and the
    /// batch goes on; any other error ends it.
    async fn complete_all(&self, items: Vec<Listed>) -> Vec<Result<Product>> {
        let units = match self.units().await {
            Ok(units) => units,
            Err(e) => return vec![Err(e)],
        };
        let ids: Vec<u64> = items.iter().map(|i| i.id).collect();
        let results =
            futures::future::join_all(items.into_iter().map(|i| self.complete(i, &units))).await;
        let mut out = Vec::with_capacity(results.len());
        for (id, r) in ids.into_iter().zip(results) {
            match r {
                Ok(Completed::Product(p)) => out.push(Ok(*p)),
                Ok(Completed::Vanished) => {}
                Ok(Completed::Unreadable(e)) => {
                    match SkippedProduct::from_error(id.to_string(), &e) {
                        Some(skipped) => out.push(Err(skipped.into_error())),
                        None => {
                            out.push(Err(e));
                            break;
                        }
                    }
                }
                Err(e) => {
                    out.push(Err(e));
                    break;
                }
            }
        }
        out
    }

    /// Streams every product in id order, pages fetched concurrently (see
    /// [`crate::pagination`] for why nothing is skipped or repeated while the
    /// catalog changes). Ends after the first error.
    fn stream_all(&self) -> BoxStream<'static, Result<Product>> {
        let client = self.clone();
        let per_page = self.inner.per_page;
        let step = u64::from(per_page - self.inner.overlap);
        let conc = self.inner.concurrency;

        struct State {
            client: WooCommerceClient,
            stitcher: Stitcher,
            planned: Option<BoxStream<'static, Result<Window<Listed>>>>,
            done: bool,
        }
        let state = State {
            client: client.clone(),
            stitcher: Stitcher::new(step, None),
            planned: None,
            done: false,
        };
        let batches = stream::unfold(state, move |mut st| async move {
            if st.done {
                return None;
            }
            let window = match st.planned.as_mut() {
                None => {
                    let first = st.client.fetch_window(0, per_page).await;
                    if let Ok(w) = &first {
                        let total = w.total.unwrap_or(0);
                        let overlap = u64::from(per_page) - step;
                        // Planned lazily: `X-WP-Total` is the server's word
                        // (a proxy or plugin can send anything), and a plan
                        // of 1e12 offsets must not be built up front. The
                        // walk ends at the first short window anyway.
                        let offsets = (1_u64..)
                            .map_while(move |k| k.checked_mul(step))
                            .take_while(move |o| {
                                o.checked_add(overlap).is_some_and(|end| end < total)
                            });
                        let c = st.client.clone();
                        st.planned = Some(
                            stream::iter(offsets)
                                .map(move |o| {
                                    let c = c.clone();
                                    async move { c.fetch_window(o, per_page).await }
                                })
                                .buffered(conc)
                                .boxed(),
                        );
                    }
                    first
                }
                Some(planned) => match planned.next().await {
                    Some(w) => w,
                    None if st.stitcher.last_full && !st.stitcher.ended => {
                        let o = st.stitcher.next_offset();
                        st.client.fetch_window(o, per_page).await
                    }
                    None => return None,
                },
            };
            let result = match window {
                Ok(w) => {
                    let c = st.client.clone();
                    st.stitcher
                        .resolve(w, |o| {
                            let c = c.clone();
                            async move { c.fetch_window(o, per_page).await }
                        })
                        .await
                }
                Err(e) => Err(e),
            };
            if result.is_err() || st.stitcher.ended {
                st.done = true;
            }
            Some((result, st))
        });
        // Batches (one window each) are completed concurrently: every
        // variable product of a batch asks for its variations at once, and
        // up to `concurrency` batches are in progress, so the request limiter
        // (not the stream's ordering) is what bounds throughput. Buffering
        // single products instead would let one slow variable product at the
        // head hold every slot.
        let products = batches
            .map(move |batch| {
                let c = client.clone();
                async move {
                    match batch {
                        Ok(items) => c.complete_all(items).await,
                        Err(e) => vec![Err(e)],
                    }
                }
            })
            .buffered(conc)
            .flat_map(stream::iter);
        end_after_first_error(products)
    }
}

/// A listed product, completed.
enum Completed {
    Product(Box<Product>),
    /// Its data does not map to the model: this product's alone.
    Unreadable(CatalogError),
    /// Deleted between the listing and its variations.
    Vanished,
}

/// Stops a stream after its first error (which is still yielded), but for
/// [`CatalogError::UnreadableProduct`]: one product's data, after which the
/// listing goes on.
fn end_after_first_error<T: Send + 'static>(
    s: impl futures::Stream<Item = Result<T>> + Send + 'static,
) -> BoxStream<'static, Result<T>> {
    s.scan(false, |failed, item| {
        let out = if *failed {
            None
        } else {
            *failed =
                matches!(&item, Err(e) if !matches!(e, CatalogError::UnreadableProduct { .. }));
            Some(item)
        };
        futures::future::ready(out)
    })
    .boxed()
}

#[async_trait::async_trait]
impl Catalog for WooCommerceClient {
    fn platform(&self) -> PlatformId {
        PlatformId::WOOCOMMERCE
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::paged(MAX_PER_PAGE)
            .with_totals()
            .with_concurrent_pages()
    }

    /// Fetches `/products/{id}`; a variable product's variations too.
    async fn get_product(&self, id: &str) -> Result<Product> {
        let Ok(num) = id.trim().parse::<u64>() else {
            return Err(CatalogError::NotFound(format!(
                "product {id:?}: WooCommerce product ids are numbers"
            )));
        };
        let resp = self
            .get(&format!("products/{num}"), &[])
            .await
            .map_err(|e| match e {
                CatalogError::NotFound(m) => CatalogError::NotFound(format!("product {num}: {m}")),
                other => other,
            })?;
        let raw: serde_json::Value = catalog_core::json::decode(&resp.body)?;
        let wire: WireProduct = crate::wire::decode_listed(&raw)?;
        if wire.kind == "variation" {
            return Err(CatalogError::NotFound(format!(
                "product {num} is a variation of product {}; ask for the parent",
                wire.parent_id.unwrap_or_default()
            )));
        }
        let units = self.units().await?;
        let listed = Listed {
            id: wire.id,
            wire: Ok(wire),
            raw,
        };
        match self.complete(listed, &units).await? {
            Completed::Product(product) => Ok(*product),
            Completed::Unreadable(e) => Err(e),
            Completed::Vanished => Err(CatalogError::NotFound(format!(
                "product {num}: deleted while being read"
            ))),
        }
    }

    /// One page of products in id order: `limit` of them (default: the
    /// configured page size), at most 100 minus the page overlap (95 by
    /// default), fewer only on the last page or when a product is deleted
    /// while it is read. The cursor carries the next offset and the last id
    /// returned, so pages neither skip nor repeat products when the catalog
    /// changes between calls.
    async fn list_page(&self, request: PageRequest) -> Result<Page<Product>> {
        let state = match &request.cursor {
            Some(c) => c.decode::<CursorState>()?,
            None => CursorState {
                o: 0,
                l: None,
                n: request.limit.unwrap_or(self.inner.per_page),
            },
        };
        // Each window re-reads `overlap` products before the new ones (see
        // `pagination`), so it asks for `limit + overlap`.
        let overlap = self.inner.overlap.clamp(1, MAX_PER_PAGE - 1);
        let per_page = state.n.max(1).saturating_add(overlap).min(MAX_PER_PAGE);
        let step = per_page - overlap;
        let mut stitcher = Stitcher::new(u64::from(step), state.l).at_most(step as usize);
        let window = self.fetch_window(state.o, per_page).await?;
        let total = window.total;
        let items = stitcher
            .resolve(window, |o| self.fetch_window(o, per_page))
            .await?;
        let mut products = Vec::new();
        let mut skipped = Vec::new();
        for result in self.complete_all(items).await {
            match result {
                Ok(product) => products.push(product),
                Err(CatalogError::UnreadableProduct { id, path, message }) => {
                    skipped.push(SkippedProduct::new(id, path, message));
                }
                Err(e) => return Err(e),
            }
        }
        let next = if stitcher.ended {
            None
        } else {
            Some(Cursor::encode(&CursorState {
                o: stitcher.next_offset(),
                l: stitcher.last,
                n: step,
            })?)
        };
        Ok(Page::new(products, next)
            .with_total(total)
            .with_skipped(skipped))
    }

    fn stream_products(&self) -> BoxStream<'_, Result<Product>> {
        self.stream_all()
    }
}

/// Adds the list index to a decode error path.
fn prefix(e: CatalogError, i: usize) -> CatalogError {
    match e {
        CatalogError::Decode { path, message } => CatalogError::Decode {
            path: format!("[{i}].{path}"),
            message,
        },
        other => other,
    }
}

/// A transport error without its URL (which may carry credentials).
fn transport(e: reqwest::Error) -> CatalogError {
    CatalogError::Transport(Box::new(e.without_url()))
}

/// Turns a retried-out transient error into its final form.
fn finalize(err: CatalogError, retry_after: Option<Duration>) -> CatalogError {
    match err {
        CatalogError::Http { status: 429, .. } => CatalogError::RateLimited { retry_after },
        other => other,
    }
}

/// Maps an unsuccessful response to the core error, using WordPress's
/// `{code, message, data.status}` body when there is one.
fn error_from_response(status: StatusCode, body: &[u8], creds: &Credentials) -> CatalogError {
    let wp: Option<WpError> = serde_json::from_slice(body).ok();
    let message = match &wp {
        Some(e) if !e.message.is_empty() => creds.redact(&e.message),
        _ => excerpt(body, creds),
    };
    let code = wp.map(|e| e.code);
    match status.as_u16() {
        401 | 403 => CatalogError::Unauthorized(match &code {
            Some(c) => format!("{message} ({c})"),
            None => message,
        }),
        404 if matches!(
            code.as_deref(),
            Some("woocommerce_rest_product_invalid_id" | "woocommerce_rest_invalid_product_id")
        ) =>
        {
            CatalogError::NotFound(message)
        }
        s @ 300..=399 => CatalogError::Http {
            status: s,
            code,
            message: "the store redirected the request; check the store URL (http/https, www)"
                .into(),
        },
        s => CatalogError::Http {
            status: s,
            code,
            message,
        },
    }
}

/// A short, credential-free, one-line excerpt of a non-WordPress error
/// body (an HTML page is named by its title).
fn excerpt(body: &[u8], creds: &Credentials) -> String {
    let clean = creds.redact(&String::from_utf8_lossy(body));
    let cut = catalog_core::error::body_excerpt(clean.as_bytes());
    if cut.is_empty() {
        "(empty body)".into()
    } else {
        cut
    }
}

fn header_u64(h: &HeaderMap, name: &str) -> Option<u64> {
    h.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// `Retry-After` as seconds (whole or decimal) or an HTTP date.
fn retry_after(h: &HeaderMap) -> Option<Duration> {
    let v = h.get(RETRY_AFTER)?.to_str().ok()?;
    catalog_core::retry::retry_after(v, chrono::Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_mapping() {
        let creds = Credentials::new("ck_abc", "cs_topsecret");
        let e = error_from_response(
            StatusCode::UNAUTHORIZED,
            br#"{"code":"woocommerce_rest_authentication_error","message":"Consumer secret is invalid.","data":{"status":401}}"#,
            &creds,
        );
        assert!(
            matches!(&e, CatalogError::Unauthorized(m) if m.contains("Consumer secret is invalid."))
        );
        let e = error_from_response(
            StatusCode::NOT_FOUND,
            br#"{"code":"woocommerce_rest_product_invalid_id","message":"Invalid ID.","data":{"status":404}}"#,
            &creds,
        );
        assert!(matches!(e, CatalogError::NotFound(_)));
        let e = error_from_response(
            StatusCode::NOT_FOUND,
            br#"{"code":"rest_no_route","message":"No route was found matching the URL and request method","data":{"status":404}}"#,
            &creds,
        );
        assert!(
            matches!(e, CatalogError::Http { status: 404, code: Some(ref c), .. } if c == "rest_no_route")
        );
        let e = error_from_response(
            StatusCode::BAD_GATEWAY,
            b"<html>bad gateway for /x?consumer_secret=cs_topsecret</html>",
            &creds,
        );
        assert!(!e.to_string().contains("cs_topsecret"));
        assert!(e.is_transient());
        // A host's error page: one line, named by its title (an outside
        // audit saw nine lines of raw markup in the CLI's one-line error).
        let e = error_from_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            b"<!DOCTYPE html>\n<html lang=\"en-US\">\n<head>\n<title>WordPress &rsaquo; Error</title>\n</head>\n<body id=\"error-page\">\n<div class=\"wp-die-message\">There has been a critical error on this website.</div></body>\n</html>",
            &creds,
        );
        assert_eq!(
            e.to_string(),
            "HTTP 500: an HTML page: \"WordPress \u{203a} Error\""
        );
    }

    #[test]
    fn backoff_is_bounded_and_jittered() {
        let p = RetryPolicy {
            max_retries: 5,
            base: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for attempt in 0..20 {
            let d = p.backoff(attempt);
            assert!(d <= Duration::from_secs(1));
            let exp = (Duration::from_millis(100) * 2u32.pow(attempt.min(16)))
                .min(Duration::from_secs(1));
            assert!(d >= exp / 2);
        }
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
    }

    #[test]
    fn builder_validates() {
        assert!(WooCommerceClient::builder().build().is_err());
        assert!(
            WooCommerceClient::builder()
                .store_url("shop.example.com")
                .build()
                .is_err()
        );
        let c = WooCommerceClient::builder()
            .store_url("Shop.Example.com/")
            .credentials("ck", "cs")
            .build()
            .unwrap();
        assert_eq!(c.store(), "https://shop.example.com");
        assert_eq!(c.auth_mode(), AuthMode::Basic);
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("cs"), "{dbg}");
        let c = WooCommerceClient::builder()
            .store_url("http://shop.test")
            .credentials("ck", "cs")
            .build()
            .unwrap();
        assert_eq!(c.auth_mode(), AuthMode::OAuth1);
    }
}
