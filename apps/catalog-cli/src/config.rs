//! Configuration: the webhook server's file, read the same way and by the
//! same code ([`catalog_config`]: `--config FILE`, then `CATALOG_*` variables
//! and the seed's aliases, with `.env` loaded first), into structs that keep only what the CLI needs
//! and ignore the server-only keys.
//!
//! Stores come from `[[shopify.stores]]` / `[[woocommerce.stores]]`. When a
//! platform lists none, one store is made from the seed's variables
//! (`SHOPIFY_STORE_URL`, `WOOCOMMERCE_STORE_URL`, ...); a listed store that
//! is the one those variables name and has no API credentials gets them there.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use catalog_shopify::{ShopifyAuth, ShopifyClient, StreamMode};
use catalog_woocommerce::{AuthMode, WooCommerceClient};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::error::{CliError, Kind};

/// The platforms the CLI knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Platform {
    /// Shopify (Admin GraphQL API, `X-Shopify-*` webhooks).
    Shopify,
    /// WooCommerce (REST API wc/v3, `X-WC-Webhook-*` webhooks).
    #[value(alias = "woo")]
    Woocommerce,
}

impl Platform {
    /// The id used in configuration sections and server routes.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Shopify => "shopify",
            Self::Woocommerce => "woocommerce",
        }
    }

    /// The display name.
    pub(crate) fn title(self) -> &'static str {
        match self {
            Self::Shopify => "Shopify",
            Self::Woocommerce => "WooCommerce",
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The parts of the server's configuration the CLI reads.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct FileConfig {
    #[serde(default)]
    server: ServerSection,
    #[serde(default)]
    admin: AdminSection,
    #[serde(default)]
    shopify: PlatformSection,
    #[serde(default)]
    woocommerce: PlatformSection,
}

#[derive(Debug, Deserialize)]
struct ServerSection {
    #[serde(default = "default_host")]
    host: String,
    #[serde(default = "default_port")]
    port: u16,
}

impl Default for ServerSection {
    fn default() -> Self {
        Self {
            host: default_host(),
            port: default_port(),
        }
    }
}

fn default_host() -> String {
    "127.0.0.1".to_owned()
}

fn default_port() -> u16 {
    8050
}

#[derive(Default, Deserialize)]
struct AdminSection {
    #[serde(default)]
    token: Option<SecretString>,
}

impl fmt::Debug for AdminSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminSection")
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

#[derive(Default, Deserialize)]
struct PlatformSection {
    #[serde(default)]
    webhook_secret: Option<SecretString>,
    #[serde(default)]
    stores: Vec<StoreSection>,
    #[serde(default)]
    default_currency: Option<String>,
    #[serde(default)]
    default_weight_unit: Option<String>,
}

impl fmt::Debug for PlatformSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlatformSection")
            .field("stores", &self.stores)
            .field("default_currency", &self.default_currency)
            .finish_non_exhaustive()
    }
}

/// One `[[shopify.stores]]` / `[[woocommerce.stores]]` entry: the server's
/// keys (`id`, `secrets`, `currency`) plus the optional API credentials.
#[derive(Clone, Default, Deserialize)]
struct StoreSection {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    store_url: Option<String>,
    #[serde(default)]
    secrets: Vec<SecretString>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    weight_unit: Option<String>,
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret: Option<SecretString>,
    #[serde(default)]
    access_token: Option<SecretString>,
    #[serde(default)]
    consumer_key: Option<SecretString>,
    #[serde(default)]
    consumer_secret: Option<SecretString>,
    #[serde(default)]
    auth: Option<AuthMode>,
}

impl fmt::Debug for StoreSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreSection")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("store_url", &self.store_url)
            .finish_non_exhaustive()
    }
}

/// A store the CLI can talk to, resolved from configuration.
#[derive(Clone)]
pub(crate) struct Store {
    /// Which platform.
    pub(crate) platform: Platform,
    /// What `--store` matches (defaults to the id).
    pub(crate) name: String,
    /// The store id as the server knows it (shop domain, site URL).
    pub(crate) id: String,
    /// Where the API is (defaults to the id).
    pub(crate) store_url: String,
    /// Where this store was configured, for messages.
    pub(crate) origin: Origin,
    section: StoreSection,
    platform_secret: Option<SecretString>,
    default_currency: Option<String>,
    default_weight_unit: Option<String>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("platform", &self.platform)
            .field("name", &self.name)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Where a store's settings came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// `[[<platform>.stores]]` entry number `n`.
    File(usize),
    /// The seed's environment variables.
    Env,
}

/// Everything loaded.
#[derive(Debug)]
pub(crate) struct Config {
    /// Every configured store.
    pub(crate) stores: Vec<Store>,
    server: ServerSection,
    admin: AdminSection,
    shopify_secret: Option<SecretString>,
    woocommerce_secret: Option<SecretString>,
}

/// Tuning that comes from flags rather than the file.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tuning {
    /// Retries of transient failures (429, 5xx, transport).
    pub(crate) retries: u32,
    /// Whole-request timeout.
    pub(crate) timeout: Duration,
    /// Shopify bulk export status poll interval.
    pub(crate) bulk_poll: Duration,
}

impl Config {
    /// Loads `.env`, then the layered configuration.
    pub(crate) fn load(file: Option<&Path>) -> Result<Self, CliError> {
        match dotenvy::dotenv() {
            Ok(_) => {}
            Err(e) if e.not_found() => {}
            Err(e) => {
                return Err(CliError::new(
                    Kind::Config,
                    "cannot read .env in the current directory: fix or remove it",
                )
                .with_detail(e.to_string()));
            }
        }
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(file, &env)
    }

    /// Loads with an explicit environment.
    pub(crate) fn load_from(
        file: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<Self, CliError> {
        // The server's layering and its errors, which never echo a value
        // (catalog_config), with the CLI's own wording around them.
        let layers = catalog_config::Layers {
            defaults: None,
            file,
            env,
        };
        let file_config: FileConfig = catalog_config::load(&layers).map_err(|e| match e {
            catalog_config::LoadError::MissingFile(path) => CliError::new(
                Kind::Config,
                format!(
                    "configuration file {} does not exist: fix --config",
                    path.display()
                ),
            ),
            other @ (catalog_config::LoadError::Alias { .. }
            | catalog_config::LoadError::Unreadable(..)) => {
                CliError::new(Kind::Config, other.to_string())
            }
            other => CliError::new(Kind::Config, format!("invalid configuration: {other}")),
        })?;
        Self::from_file_config(file_config, env)
    }

    fn from_file_config(fc: FileConfig, env: &[(String, String)]) -> Result<Self, CliError> {
        let var = |name: &str| {
            env.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut stores = Vec::new();
        for (platform, section) in [
            (Platform::Shopify, &fc.shopify),
            (Platform::Woocommerce, &fc.woocommerce),
        ] {
            let mut from_file: Vec<StoreSection> = section.stores.clone();
            let seed = seed_store(platform, &var);
            if from_file.is_empty() {
                if let Some(seed) = seed {
                    stores.push(Store::new(platform, seed, Origin::Env, section));
                }
                continue;
            }
            if let Some(seed) = seed
                && let Some(same) = from_file
                    .iter_mut()
                    .find(|s| same_store(platform, &s.id, &seed.id))
            {
                fill_credentials(same, seed);
            }
            for (i, s) in from_file.into_iter().enumerate() {
                if s.id.trim().is_empty() {
                    return Err(CliError::new(
                        Kind::Config,
                        format!("{platform}.stores[{i}].id must not be empty"),
                    ));
                }
                stores.push(Store::new(platform, s, Origin::File(i), section));
            }
        }
        Ok(Self {
            stores,
            server: fc.server,
            admin: fc.admin,
            shopify_secret: fc.shopify.webhook_secret,
            woocommerce_secret: fc.woocommerce.webhook_secret,
        })
    }

    /// A store filter for the server's events: the id, as the server
    /// records it, of the configured store `wanted` names (by name, URL or
    /// any spelling of its id); else `wanted` read by `platform`'s rules
    /// when one is given; else as given.
    pub(crate) fn store_filter(&self, wanted: &str, platform: Option<Platform>) -> String {
        match (self.select(Some(wanted), platform), platform) {
            (Ok(store), _) => store.recorded_id(),
            (Err(_), Some(p)) => recorded(p, wanted).unwrap_or_else(|| wanted.to_owned()),
            (Err(_), None) => wanted.to_owned(),
        }
    }

    /// Picks the store: by `--store` (name, id, store URL, or a platform name
    /// with a single store), else the only one configured (of `platform`
    /// when given).
    pub(crate) fn select(
        &self,
        wanted: Option<&str>,
        platform: Option<Platform>,
    ) -> Result<&Store, CliError> {
        let candidates: Vec<&Store> = self
            .stores
            .iter()
            .filter(|s| platform.is_none_or(|p| s.platform == p))
            .collect();
        if let Some(w) = wanted {
            let w_norm = w.trim().trim_end_matches('/').to_ascii_lowercase();
            let norm = |s: &str| s.trim().trim_end_matches('/').to_ascii_lowercase();
            // Rules in order, the first that matches anything decides; two
            // stores matched by one rule (two ids behind one store_url) is
            // an ambiguity, said as such, not a pick.
            let rules: [&dyn Fn(&Store) -> bool; 3] = [
                &|s| s.name == w,
                &|s| {
                    norm(&s.id) == w_norm || norm(&s.store_url) == w_norm || norm(&s.name) == w_norm
                },
                // The store as the platform names it, however spelt: a bare
                // domain, another scheme (`https://shop.example.com` and
                // `shop.example.com` are one WooCommerce store).
                &|s| same_store(s.platform, &s.id, w),
            ];
            for rule in rules {
                let hits: Vec<&Store> = candidates.iter().copied().filter(|s| rule(s)).collect();
                match hits.as_slice() {
                    [] => continue,
                    [only] => return Ok(only),
                    several => {
                        return Err(CliError::new(
                            Kind::Config,
                            format!(
                                "{} configured stores match {w:?}: use --store with one of their names ({})",
                                several.len(),
                                self.names(several)
                            ),
                        ));
                    }
                }
            }
            let by_platform: Vec<&&Store> = candidates
                .iter()
                .filter(|s| s.platform.as_str() == w_norm)
                .collect();
            if by_platform.len() == 1 {
                return Ok(by_platform[0]);
            }
            return Err(CliError::new(
                Kind::Config,
                format!(
                    "no configured store is named {w:?}: use one of {}",
                    self.names(&candidates)
                ),
            ));
        }
        match candidates.as_slice() {
            [only] => Ok(only),
            [] => Err(CliError::new(
                Kind::Config,
                match platform {
                    Some(p) => format!(
                        "no {} store is configured: add [[{p}.stores]] to the --config file or set {}",
                        p.title(),
                        seed_hint(p)
                    ),
                    None => format!(
                        "no store is configured: add [[shopify.stores]] or [[woocommerce.stores]] to the --config file, or set {} or {}",
                        seed_hint(Platform::Shopify),
                        seed_hint(Platform::Woocommerce)
                    ),
                },
            )),
            many => Err(CliError::new(
                Kind::Config,
                format!(
                    "{} stores are configured: pick one with --store ({})",
                    many.len(),
                    self.names(many)
                ),
            )),
        }
    }

    fn names(&self, stores: &[&Store]) -> String {
        if stores.is_empty() {
            return "none is configured".to_owned();
        }
        stores
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The platform-wide webhook secret (`shopify.webhook_secret`, ...).
    pub(crate) fn platform_secret(&self, platform: Platform) -> Option<&SecretString> {
        match platform {
            Platform::Shopify => self.shopify_secret.as_ref(),
            Platform::Woocommerce => self.woocommerce_secret.as_ref(),
        }
        .filter(|s| !s.expose_secret().is_empty())
    }

    /// The server's base URL from `[server]` (a wildcard host means this machine).
    pub(crate) fn server_url(&self) -> String {
        let host = match self.server.host.as_str() {
            "0.0.0.0" | "" => "127.0.0.1",
            "::" | "[::]" => "[::1]",
            h => h,
        };
        format!("http://{host}:{}", self.server.port)
    }

    /// `admin.token` (`CATALOG_ADMIN_TOKEN`).
    pub(crate) fn admin_token(&self) -> Option<&SecretString> {
        self.admin.token.as_ref()
    }
}

fn seed_hint(p: Platform) -> &'static str {
    match p {
        Platform::Shopify => {
            "SHOPIFY_STORE_URL with SHOPIFY_CLIENT_ID + SHOPIFY_CLIENT_SECRET (or SHOPIFY_ACCESS_TOKEN)"
        }
        Platform::Woocommerce => {
            "WOOCOMMERCE_STORE_URL with WOOCOMMERCE_CONSUMER_KEY + WOOCOMMERCE_CONSUMER_SECRET"
        }
    }
}

/// A store from the seed's variables, if its URL variable is set.
fn seed_store(platform: Platform, var: &dyn Fn(&str) -> Option<String>) -> Option<StoreSection> {
    match platform {
        Platform::Shopify => {
            let url = var("SHOPIFY_STORE_URL")?;
            Some(StoreSection {
                id: catalog_shopify::webhook::shop_domain(&url).unwrap_or_else(|_| url.clone()),
                store_url: Some(url),
                client_id: var("SHOPIFY_CLIENT_ID"),
                client_secret: var("SHOPIFY_CLIENT_SECRET").map(SecretString::from),
                access_token: var("SHOPIFY_ACCESS_TOKEN").map(SecretString::from),
                api_version: var("SHOPIFY_API_VERSION"),
                ..StoreSection::default()
            })
        }
        Platform::Woocommerce => {
            let url = var("WOOCOMMERCE_STORE_URL")?;
            Some(StoreSection {
                id: catalog_woocommerce::store_identity(&url).unwrap_or_else(|_| url.clone()),
                store_url: Some(url),
                consumer_key: var("WOOCOMMERCE_CONSUMER_KEY").map(SecretString::from),
                consumer_secret: var("WOOCOMMERCE_CONSUMER_SECRET").map(SecretString::from),
                ..StoreSection::default()
            })
        }
    }
}

/// Whether a configured store id and the seed's store are the same store.
fn same_store(platform: Platform, configured: &str, seed_id: &str) -> bool {
    let norm = |id: &str| match platform {
        Platform::Shopify => catalog_shopify::webhook::shop_domain(id)
            .unwrap_or_else(|_| id.trim().to_ascii_lowercase()),
        Platform::Woocommerce => catalog_woocommerce::store_identity(id)
            .unwrap_or_else(|_| id.trim().to_ascii_lowercase()),
    };
    norm(configured) == norm(seed_id)
}

/// Fills the credentials a configured store lacks from the seed's variables
/// naming the same store.
fn fill_credentials(store: &mut StoreSection, seed: StoreSection) {
    let has_shopify = store.access_token.is_some() || store.client_id.is_some();
    if !has_shopify {
        store.client_id = seed.client_id;
        if store.client_secret.is_none() {
            store.client_secret = seed.client_secret;
        }
        store.access_token = seed.access_token;
    }
    if store.consumer_key.is_none() && store.consumer_secret.is_none() {
        store.consumer_key = seed.consumer_key;
        store.consumer_secret = seed.consumer_secret;
    }
}

/// `id` as the server records a store of `platform`, when it can be read.
pub(crate) fn recorded(platform: Platform, id: &str) -> Option<String> {
    match platform {
        Platform::Shopify => catalog_shopify::webhook::shop_domain(id).ok(),
        Platform::Woocommerce => catalog_woocommerce::store_identity(id).ok(),
    }
}

/// The store URL without credentials, query or fragment, for messages.
pub(crate) fn redact_url(raw: &str) -> String {
    let with_scheme = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("https://{raw}")
    };
    match url::Url::parse(&with_scheme) {
        Ok(mut u) => {
            if !u.username().is_empty() || u.password().is_some() {
                let _ = u.set_username("");
                let _ = u.set_password(None);
            }
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "(invalid URL)".to_owned(),
    }
}

/// The catalog client for a store.
#[derive(Debug, Clone)]
pub(crate) enum Client {
    /// A Shopify store.
    Shopify(ShopifyClient),
    /// A WooCommerce store.
    Woocommerce(WooCommerceClient),
}

impl Client {
    /// The client as the platform-neutral trait.
    pub(crate) fn catalog(&self) -> &dyn catalog_core::Catalog {
        match self {
            Self::Shopify(c) => c,
            Self::Woocommerce(c) => c,
        }
    }
}

impl Store {
    fn new(
        platform: Platform,
        section: StoreSection,
        origin: Origin,
        platform_section: &PlatformSection,
    ) -> Self {
        let id = section.id.trim().to_owned();
        Self {
            platform,
            name: section
                .name
                .clone()
                .filter(|n| !n.trim().is_empty())
                .unwrap_or_else(|| id.clone()),
            store_url: section
                .store_url
                .clone()
                .filter(|u| !u.trim().is_empty())
                .unwrap_or_else(|| id.clone()),
            id,
            origin,
            platform_secret: platform_section.webhook_secret.clone(),
            default_currency: platform_section.default_currency.clone(),
            default_weight_unit: platform_section.default_weight_unit.clone(),
            section,
        }
    }

    /// Where to fix this store's settings, for messages.
    pub(crate) fn where_configured(&self) -> String {
        match self.origin {
            Origin::File(i) => format!("{}.stores[{i}] ({})", self.platform, self.name),
            Origin::Env => match self.platform {
                Platform::Shopify => "the SHOPIFY_* variables".to_owned(),
                Platform::Woocommerce => "the WOOCOMMERCE_* variables".to_owned(),
            },
        }
    }

    /// Which key holds the store URL, for messages.
    pub(crate) fn url_key(&self) -> String {
        match (self.platform, self.origin) {
            (_, Origin::File(_)) => format!("store_url (or id) in {}", self.where_configured()),
            (Platform::Shopify, Origin::Env) => "SHOPIFY_STORE_URL".to_owned(),
            (Platform::Woocommerce, Origin::Env) => "WOOCOMMERCE_STORE_URL".to_owned(),
        }
    }

    /// The store's id as the server records it (a shop domain; a
    /// WooCommerce site's https identity).
    pub(crate) fn recorded_id(&self) -> String {
        recorded(self.platform, &self.id).unwrap_or_else(|| self.id.clone())
    }

    /// Whether this store sends WooCommerce keys in a way WooCommerce
    /// ignores: Basic or query-string auth over plain `http://` (it reads
    /// them only on requests it sees as HTTPS), so a 401 is not the keys'
    /// fault.
    pub(crate) fn keys_ignored_over_http(&self) -> bool {
        self.platform == Platform::Woocommerce
            && matches!(
                self.section.auth,
                Some(AuthMode::Basic | AuthMode::QueryString)
            )
            && self
                .store_url
                .trim()
                .get(..7)
                .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
    }

    /// Which keys hold the API credentials, for messages.
    pub(crate) fn credential_keys(&self) -> String {
        match (self.platform, self.origin) {
            (Platform::Shopify, Origin::File(_)) => format!(
                "client_id + client_secret (or access_token) in {}",
                self.where_configured()
            ),
            (Platform::Shopify, Origin::Env) => {
                "SHOPIFY_CLIENT_ID + SHOPIFY_CLIENT_SECRET (or SHOPIFY_ACCESS_TOKEN)".to_owned()
            }
            (Platform::Woocommerce, Origin::File(_)) => format!(
                "consumer_key + consumer_secret in {}",
                self.where_configured()
            ),
            (Platform::Woocommerce, Origin::Env) => {
                "WOOCOMMERCE_CONSUMER_KEY + WOOCOMMERCE_CONSUMER_SECRET".to_owned()
            }
        }
    }

    /// The first secret that signs this store's webhooks: the store's own
    /// `secrets`, else the platform's `webhook_secret`, else (Shopify) the
    /// app's client secret.
    pub(crate) fn webhook_secret(&self) -> Option<&SecretString> {
        self.section
            .secrets
            .iter()
            .chain(self.platform_secret.iter())
            .chain(self.section.client_secret.iter())
            .find(|s| !s.expose_secret().is_empty())
    }

    fn currency(&self) -> Option<&str> {
        self.section
            .currency
            .as_deref()
            .or(self.default_currency.as_deref())
            .filter(|c| !c.trim().is_empty())
    }

    /// [`Self::currency`] as a code; an unusable one names the store.
    fn currency_code(&self) -> Result<Option<catalog_core::CurrencyCode>, CliError> {
        self.currency()
            .map(|c| {
                catalog_core::CurrencyCode::new(c).map_err(|e| {
                    CliError::new(
                        Kind::Config,
                        format!("currency of store {}: {e}", self.name),
                    )
                })
            })
            .transpose()
    }

    /// A catalog client for this store.
    pub(crate) fn client(&self, tuning: Tuning) -> Result<Client, CliError> {
        let missing = || {
            CliError::new(
                Kind::Config,
                format!(
                    "no {} API credentials for store {}: set {}",
                    self.platform.title(),
                    self.name,
                    self.credential_keys()
                ),
            )
        };
        let s = &self.section;
        match self.platform {
            Platform::Shopify => {
                let auth = match (&s.client_id, &s.client_secret, &s.access_token) {
                    (_, _, Some(token)) if !token.expose_secret().is_empty() => {
                        ShopifyAuth::access_token(token.clone())
                    }
                    (Some(id), Some(secret), _)
                        if !id.is_empty() && !secret.expose_secret().is_empty() =>
                    {
                        ShopifyAuth::client_credentials(id.clone(), secret.clone())
                    }
                    _ => return Err(missing()),
                };
                // Products are named by the store's id, as the server names
                // its deliveries; requests go to `store_url`.
                let mut b = ShopifyClient::builder()
                    .store_url(&self.id)
                    .base_url(&self.store_url)
                    .auth(auth)
                    .max_retries(tuning.retries)
                    .timeout(tuning.timeout)
                    .stream_mode(StreamMode::Paged)
                    .bulk_poll_interval(tuning.bulk_poll)
                    .user_agent(concat!("catalog-cli/", env!("CARGO_PKG_VERSION")));
                if let Some(v) = s.api_version.as_deref().filter(|v| !v.is_empty()) {
                    b = b.api_version(v);
                }
                if let Some(code) = self.currency_code()? {
                    b = b.currency(code);
                }
                b.build()
                    .map(Client::Shopify)
                    .map_err(|e| self.config_error(&e))
            }
            Platform::Woocommerce => {
                let (Some(key), Some(secret)) = (&s.consumer_key, &s.consumer_secret) else {
                    return Err(missing());
                };
                if key.expose_secret().is_empty() || secret.expose_secret().is_empty() {
                    return Err(missing());
                }
                let mut b = WooCommerceClient::builder()
                    .store_url(&self.id)
                    .base_url(&self.store_url)
                    .credentials(key.clone(), secret.clone())
                    .auth_mode(s.auth.unwrap_or_default())
                    .max_retries(tuning.retries)
                    .timeout(tuning.timeout)
                    .user_agent(concat!("catalog-cli/", env!("CARGO_PKG_VERSION")));
                if let Some(code) = self.currency_code()? {
                    b = b.currency(code);
                }
                // As the server reads weights (its settings check the unit).
                if let Some(unit) = self
                    .section
                    .weight_unit
                    .as_deref()
                    .or(self.default_weight_unit.as_deref())
                {
                    b = b.weight_unit(catalog_core::WeightUnit::known(unit).ok_or_else(|| {
                        CliError::new(
                            Kind::Config,
                            format!(
                                "store {}: weight_unit (or {}.default_weight_unit) must be kg, g, lbs or oz ({})",
                                self.name,
                                self.platform,
                                self.where_configured()
                            ),
                        )
                    })?);
                }
                b.build()
                    .map(Client::Woocommerce)
                    .map_err(|e| self.config_error(&e))
            }
        }
    }

    fn config_error(&self, e: &catalog_core::CatalogError) -> CliError {
        CliError::new(
            Kind::Config,
            format!(
                "store {} is not configured correctly ({}): {e}",
                self.name,
                self.where_configured()
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn seed_variables_make_one_store_per_platform() {
        let c = Config::load_from(
            None,
            &env(&[
                ("SHOPIFY_STORE_URL", "Shop.myshopify.com"),
                ("SHOPIFY_ACCESS_TOKEN", "shpat_x"),
                ("WOOCOMMERCE_STORE_URL", "http://127.0.0.1:9/"),
                ("WOOCOMMERCE_CONSUMER_KEY", "ck"),
                ("WOOCOMMERCE_CONSUMER_SECRET", "cs"),
                ("WOOCOMMERCE_WEBHOOK_SECRET", "whs"),
            ]),
        )
        .unwrap();
        assert_eq!(c.stores.len(), 2);
        let shop = c.select(Some("shopify"), None).unwrap();
        assert_eq!(shop.id, "shop.myshopify.com");
        assert!(shop.client(tuning()).is_ok());
        let woo = c.select(None, Some(Platform::Woocommerce)).unwrap();
        // The store's identity (https, as webhook deliveries name it); its
        // API is called at the URL as given.
        assert_eq!(woo.id, "https://127.0.0.1:9");
        assert_eq!(woo.store_url, "http://127.0.0.1:9/");
        assert_eq!(woo.webhook_secret().unwrap().expose_secret(), "whs");
        assert!(c.select(None, None).is_err());
        // No credential shows in Debug.
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("shpat_x") && !shown.contains("whs"),
            "{shown}"
        );
    }

    #[test]
    fn the_server_file_is_read_and_server_keys_ignored() {
        let c = from_file(
            r#"
[server]
port = 9123
body_limit = 5
[database]
url = "memory://"
[[shopify.stores]]
id = "a.myshopify.com"
name = "main"
secrets = ["whsec-a"]
access_token = "shpat_a"
[[shopify.stores]]
id = "b.myshopify.com"
client_id = "cid"
client_secret = "csecret"
"#,
        );
        assert_eq!(c.server_url(), "http://127.0.0.1:9123");
        let err = c.select(None, None).unwrap_err();
        assert!(err.message.contains("--store"), "{}", err.message);
        let a = c.select(Some("main"), None).unwrap();
        assert_eq!(a.webhook_secret().unwrap().expose_secret(), "whsec-a");
        let b = c.select(Some("b.myshopify.com"), None).unwrap();
        assert_eq!(b.webhook_secret().unwrap().expose_secret(), "csecret");
        assert!(b.client(tuning()).is_ok());
    }

    /// `--store` takes a store however the platform's rules spell it (an
    /// outside audit was refused `shop.example.com` for the configured
    /// `https://shop.example.com`).
    #[test]
    fn stores_are_picked_by_any_spelling_of_their_id() {
        let c = from_file(
            r#"
[[shopify.stores]]
id = "a.myshopify.com"
[[woocommerce.stores]]
id = "https://shop.example.com"
"#,
        );
        for spelling in [
            "shop.example.com",
            "http://shop.example.com",
            "https://shop.example.com/",
            "HTTPS://SHOP.EXAMPLE.COM",
        ] {
            let s = c.select(Some(spelling), None).unwrap();
            assert_eq!(s.id, "https://shop.example.com", "{spelling}");
        }
        for spelling in ["https://a.myshopify.com", "A.myshopify.com."] {
            let s = c.select(Some(spelling), None).unwrap();
            assert_eq!(s.id, "a.myshopify.com", "{spelling}");
        }
        assert!(c.select(Some("b.myshopify.com"), None).is_err());
    }

    /// Two stores behind one API address (two sites of one WordPress
    /// network through one proxy): `--store` with that address is an
    /// ambiguity to resolve by name, not a silent pick of the first.
    #[test]
    fn a_store_url_two_stores_share_is_ambiguous() {
        let c = from_file(
            r#"
[[woocommerce.stores]]
id = "https://example.com/shop"
name = "shop"
store_url = "http://127.0.0.1:9"
[[woocommerce.stores]]
id = "https://example.com"
name = "blog"
store_url = "http://127.0.0.1:9"
"#,
        );
        let err = c.select(Some("http://127.0.0.1:9"), None).unwrap_err();
        assert!(
            err.message.contains("2 configured stores match"),
            "{}",
            err.message
        );
        assert!(err.message.contains("shop, blog"), "{}", err.message);
        assert_eq!(
            c.select(Some("blog"), None).unwrap().id,
            "https://example.com"
        );
    }

    #[test]
    fn seed_credentials_fill_the_same_store_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[[shopify.stores]]\nid = \"a.myshopify.com\"\n[[shopify.stores]]\nid = \"b.myshopify.com\"\n",
        )
        .unwrap();
        let c = Config::load_from(
            Some(&path),
            &env(&[
                ("SHOPIFY_STORE_URL", "https://B.myshopify.com"),
                ("SHOPIFY_ACCESS_TOKEN", "shpat_b"),
            ]),
        )
        .unwrap();
        assert_eq!(c.stores.len(), 2);
        assert!(
            c.select(Some("b.myshopify.com"), None)
                .unwrap()
                .client(tuning())
                .is_ok()
        );
        let err = c
            .select(Some("a.myshopify.com"), None)
            .unwrap()
            .client(tuning())
            .unwrap_err();
        assert!(err.message.contains("shopify.stores[0]"), "{}", err.message);
    }

    #[test]
    fn missing_credentials_name_the_keys() {
        let c =
            Config::load_from(None, &env(&[("WOOCOMMERCE_STORE_URL", "shop.example")])).unwrap();
        let err = c.stores[0].client(tuning()).unwrap_err();
        assert_eq!(err.kind, Kind::Config);
        assert!(
            err.message.contains("WOOCOMMERCE_CONSUMER_KEY"),
            "{}",
            err.message
        );
    }

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact_url("https://user:pw@h.example/x?consumer_secret=cs#f"),
            "https://h.example/x"
        );
        assert_eq!(redact_url("shop.example"), "https://shop.example/");
    }

    /// The configuration read from a file holding `toml`.
    fn from_file(toml: &str) -> Config {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, toml).unwrap();
        Config::load_from(Some(&path), &[]).unwrap()
    }

    fn tuning() -> Tuning {
        Tuning {
            retries: 0,
            timeout: Duration::from_secs(5),
            bulk_poll: Duration::from_millis(10),
        }
    }
}
