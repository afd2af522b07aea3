//! The platforms compiled in (cargo features `shopify`, `woocommerce`), each
//! with its webhook source and the secrets of the stores it accepts.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use anyhow::bail;

use catalog_core::webhook::{HmacVerifier, WebhookSource};
use catalog_core::{PlatformId, Topic};
use secrecy::SecretString;

use crate::settings::{PlatformSettings, Settings};

/// Which secrets authenticate which store.
#[derive(Debug, Clone)]
pub enum Verifiers {
    /// No secret configured: every delivery is refused (503), never accepted unsigned.
    Unconfigured,
    /// Only the platform-wide secret: any store signed with it is accepted.
    AnyStore(HmacVerifier),
    /// Listed stores only, by normalised store id.
    Stores(HashMap<String, HmacVerifier>),
}

/// Why no verifier was found for a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifierLookup {
    /// No secret at all for the platform.
    Unconfigured,
    /// Stores are listed and this one is not.
    UnknownStore,
}

/// Normalises a store id for comparison: trimmed, no trailing `/`, scheme
/// and host in lower case. A path keeps its case, as the store ids of
/// events do (a WooCommerce site in a sub-directory): one rule for secrets
/// and for deduplication.
pub fn normalise_store(store: &str) -> String {
    let store = store.trim().trim_end_matches('/');
    let host_from = store.find("://").map_or(0, |i| i + 3);
    let path_from = store[host_from..]
        .find('/')
        .map_or(store.len(), |i| host_from + i);
    format!(
        "{}{}",
        store[..path_from].to_ascii_lowercase(),
        &store[path_from..]
    )
}

impl Verifiers {
    /// Builds the verifiers from a platform's settings.
    ///
    /// # Errors
    /// When a secret is empty (names the key).
    pub fn from_settings(name: &str, s: &PlatformSettings) -> anyhow::Result<Self> {
        Self::from_settings_with(name, s, |id| Ok(id.to_owned()), |secrets| secrets)
    }

    /// As [`Verifiers::from_settings`], with the platform's own normalisation
    /// of configured store ids (WooCommerce: a bare domain means `https://`)
    /// and of secrets (WooCommerce: a secret with HTML entities is also
    /// accepted decoded, the form it signs with).
    ///
    /// # Errors
    /// When a secret is empty or a store id is invalid (names the key).
    pub fn from_settings_with(
        name: &str,
        s: &PlatformSettings,
        normalise: impl Fn(&str) -> Result<String, String>,
        signing: impl Fn(Vec<SecretString>) -> Vec<SecretString>,
    ) -> anyhow::Result<Self> {
        use secrecy::ExposeSecret;
        let shared = s
            .webhook_secret
            .as_ref()
            .filter(|v| !v.expose_secret().is_empty());
        if s.stores.is_empty() {
            return Ok(match shared {
                Some(secret) => Self::AnyStore(
                    HmacVerifier::new(signing(vec![secret.clone()]))
                        .map_err(|e| anyhow::anyhow!("{name}.webhook_secret: {e}"))?,
                ),
                None => Self::Unconfigured,
            });
        }
        let mut map = HashMap::new();
        let mut first_entry: HashMap<String, usize> = HashMap::new();
        // Shopify signs webhooks with the app's client secret, so a Shopify
        // store's `client_secret` (the CLI's credential) verifies them too.
        // No other platform's: a credential of its API is not its webhook
        // secret, and must not open the webhook routes.
        let client_secret_signs = name == "shopify";
        for (i, store) in s.stores.iter().enumerate() {
            let secrets = if store.secrets.is_empty() {
                shared
                    .into_iter()
                    .chain(store.client_secret.iter().filter(|_| client_secret_signs))
                    .filter(|v| !v.expose_secret().is_empty())
                    .cloned()
                    .collect::<Vec<_>>()
            } else {
                store.secrets.clone()
            };
            let verifier = HmacVerifier::new(signing(secrets)).map_err(|e| {
                anyhow::anyhow!(
                    "{name}.stores[{i}].secrets: {e} (give the store `secrets`{}, or set {name}.webhook_secret)",
                    if client_secret_signs { ", a `client_secret`" } else { "" }
                )
            })?;
            let id =
                normalise(&store.id).map_err(|e| anyhow::anyhow!("{name}.stores[{i}].id: {e}"))?;
            let key = normalise_store(&id);
            // Two entries for one store would leave only the last one's
            // secrets in force (a rotation half-configured, silently).
            if let Some(first) = first_entry.insert(key.clone(), i) {
                bail!(
                    "{name}.stores[{i}].id names the same store as {name}.stores[{first}].id ({key}): give each store one entry, with all its secrets in `secrets`"
                );
            }
            map.insert(key, verifier);
        }
        Ok(Self::Stores(map))
    }

    /// The verifier for a claimed store.
    ///
    /// # Errors
    /// [`VerifierLookup`] when the store cannot be authenticated.
    pub fn for_store(&self, store: &str) -> Result<&HmacVerifier, VerifierLookup> {
        match self {
            Self::Unconfigured => Err(VerifierLookup::Unconfigured),
            Self::AnyStore(v) => Ok(v),
            Self::Stores(map) => map
                .get(&normalise_store(store))
                .ok_or(VerifierLookup::UnknownStore),
        }
    }

    /// How stores are authenticated, for anyone who asks (`GET /`): no
    /// store ids and no secret counts (which would list the tenants and
    /// show a rotation in progress); those are in the start-up log.
    pub fn summary(&self) -> String {
        match self {
            Self::Unconfigured => "no secret configured: deliveries refused".to_owned(),
            Self::AnyStore(_) => "any store signed with the platform secret".to_owned(),
            Self::Stores(map) if map.len() == 1 => "1 configured store".to_owned(),
            Self::Stores(map) => format!("{} configured stores", map.len()),
        }
    }

    /// A description for the start-up log (store ids, never secrets).
    pub fn describe(&self) -> String {
        match self {
            Self::Unconfigured => "no secret configured: deliveries refused".to_owned(),
            Self::AnyStore(v) => format!(
                "any store signed with the platform secret ({})",
                secrets(v.secret_count())
            ),
            Self::Stores(map) => {
                let mut ids: Vec<_> = map
                    .iter()
                    .map(|(id, v)| format!("{id} ({})", secrets(v.secret_count())))
                    .collect();
                ids.sort();
                format!("stores: {}", ids.join(", "))
            }
        }
    }
}

fn secrets(n: usize) -> String {
    if n == 1 {
        "1 secret".to_owned()
    } else {
        format!("{n} secrets")
    }
}

/// One platform: how to read its deliveries and whom to trust.
#[derive(Clone)]
pub struct PlatformEntry {
    /// The platform's source.
    pub source: Arc<dyn WebhookSource>,
    /// Route actions accepted under `/webhooks/{platform}/products/{action}`.
    pub actions: &'static [&'static str],
    /// Signature header names (lower case); a request repeating one is refused.
    pub signature_headers: &'static [&'static str],
    /// Headers that name the store, topic and event (lower case); a request
    /// repeating one is refused, like a repeated signature: a proxy and we
    /// could read different values.
    pub identity_headers: &'static [&'static str],
    /// Secrets per store.
    pub verifiers: Verifiers,
    /// Signature refusals, warned about at most once a minute.
    pub refusals: Arc<crate::log_budget::LogBudget>,
    /// Deliveries from stores not configured, warned about at most once a
    /// minute.
    pub unknown_stores: Arc<crate::log_budget::LogBudget>,
}

impl fmt::Debug for PlatformEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlatformEntry")
            .field("platform", &self.source.platform())
            .field("actions", &self.actions)
            .field("verifiers", &self.verifiers.describe())
            .finish()
    }
}

impl PlatformEntry {
    /// An entry: the platform's webhook source, its route actions
    /// (`/webhooks/{platform}/products/{action}`), the headers that carry
    /// its signature, the headers that say which store, topic and event a
    /// delivery is (a request repeating any of these two lists gets 400: a
    /// proxy and this server could read different values), and its secrets.
    pub fn new(
        source: Arc<dyn WebhookSource>,
        actions: &'static [&'static str],
        signature_headers: &'static [&'static str],
        identity_headers: &'static [&'static str],
        verifiers: Verifiers,
    ) -> Self {
        Self {
            source,
            actions,
            signature_headers,
            identity_headers,
            verifiers,
            refusals: Arc::default(),
            unknown_stores: Arc::default(),
        }
    }

    /// The platform id.
    pub fn id(&self) -> PlatformId {
        self.source.platform()
    }

    /// The topic of a route action, if this platform has that route.
    pub fn topic_for_action(&self, action: &str) -> Option<Topic> {
        if self.actions.contains(&action) {
            Topic::from_action(action)
        } else {
            None
        }
    }
}

/// The platforms this server accepts, looked up by id.
#[derive(Debug, Clone, Default)]
pub struct Platforms {
    entries: Vec<PlatformEntry>,
}

/// Shopify's route actions.
pub const SHOPIFY_ACTIONS: &[&str] = &["create", "update", "delete"];
/// Shopify's signature headers (classic and the newer unprefixed one).
pub const SHOPIFY_SIGNATURE_HEADERS: &[&str] = &["x-shopify-hmac-sha256", "shopify-hmac-sha256"];
/// Shopify's store, topic and event headers, classic and unprefixed.
pub const SHOPIFY_IDENTITY_HEADERS: &[&str] = &[
    "x-shopify-topic",
    "shopify-topic",
    "x-shopify-shop-domain",
    "shopify-shop-domain",
    "x-shopify-event-id",
    "shopify-event-id",
    "x-shopify-webhook-id",
    "shopify-webhook-id",
    "x-shopify-triggered-at",
    "shopify-triggered-at",
];
/// WooCommerce's store, topic and delivery headers.
pub const WOOCOMMERCE_IDENTITY_HEADERS: &[&str] = &[
    "x-wc-webhook-topic",
    "x-wc-webhook-resource",
    "x-wc-webhook-event",
    "x-wc-webhook-source",
    "x-wc-webhook-id",
    "x-wc-webhook-delivery-id",
];
/// WooCommerce's route actions.
pub const WOOCOMMERCE_ACTIONS: &[&str] = &["create", "update", "delete", "restore"];
/// WooCommerce's signature header.
pub const WOOCOMMERCE_SIGNATURE_HEADERS: &[&str] = &["x-wc-webhook-signature"];

impl Platforms {
    /// The platforms from explicit entries (tests, library users).
    pub fn new(entries: Vec<PlatformEntry>) -> Self {
        Self { entries }
    }

    /// Every compiled-in platform, with the configured secrets.
    ///
    /// # Errors
    /// When a platform is configured but was compiled out, or a secret is bad.
    #[allow(clippy::vec_init_then_push)] // the pushes depend on features
    pub fn from_settings(settings: &Settings) -> anyhow::Result<Self> {
        #[cfg_attr(
            not(any(feature = "shopify", feature = "woocommerce")),
            allow(unused_mut)
        )]
        let mut entries: Vec<PlatformEntry> = Vec::with_capacity(2);
        #[cfg(feature = "shopify")]
        entries.push(PlatformEntry::new(
            Arc::new(shopify_source(&settings.shopify)?),
            SHOPIFY_ACTIONS,
            SHOPIFY_SIGNATURE_HEADERS,
            SHOPIFY_IDENTITY_HEADERS,
            {
                warn_about_whitespace("shopify", &settings.shopify, true);
                Verifiers::from_settings_with(
                    "shopify",
                    &settings.shopify,
                    catalog_shopify::webhook::shop_domain,
                    trim_secrets,
                )?
            },
        ));
        #[cfg(not(feature = "shopify"))]
        if settings.shopify.is_configured() {
            anyhow::bail!(
                "[shopify] is configured (shopify.* keys or SHOPIFY_WEBHOOK_SECRET) but webhook-server was built without the `shopify` feature"
            );
        }
        #[cfg(feature = "woocommerce")]
        entries.push(PlatformEntry::new(
            Arc::new(woocommerce_source(&settings.woocommerce)?),
            WOOCOMMERCE_ACTIONS,
            WOOCOMMERCE_SIGNATURE_HEADERS,
            WOOCOMMERCE_IDENTITY_HEADERS,
            {
                warn_about_whitespace("woocommerce", &settings.woocommerce, false);
                Verifiers::from_settings_with(
                    "woocommerce",
                    &settings.woocommerce,
                    catalog_woocommerce::store_identity,
                    catalog_woocommerce::signing_secrets,
                )?
            },
        ));
        #[cfg(not(feature = "woocommerce"))]
        if settings.woocommerce.is_configured() {
            anyhow::bail!(
                "[woocommerce] is configured (woocommerce.* keys or WOOCOMMERCE_WEBHOOK_SECRET) but webhook-server was built without the `woocommerce` feature"
            );
        }
        let _ = settings;
        Ok(Self { entries })
    }

    /// The platform with this id.
    pub fn get(&self, id: &str) -> Option<&PlatformEntry> {
        self.entries.iter().find(|e| e.id().as_str() == id)
    }

    /// All platforms.
    pub fn iter(&self) -> impl Iterator<Item = &PlatformEntry> {
        self.entries.iter()
    }
}

/// Shopify's secrets without the whitespace a paste can bring along (a
/// newline from a file, a space): Shopify's client secrets have none, and
/// with it every delivery would be refused, until Shopify deletes the
/// subscription after 8 failures.
#[cfg(feature = "shopify")]
fn trim_secrets(secrets: Vec<SecretString>) -> Vec<SecretString> {
    use secrecy::ExposeSecret;
    secrets
        .into_iter()
        .map(|s| SecretString::from(s.expose_secret().trim()))
        .collect()
}

/// Warns, naming the key and never the value, of a secret with leading or
/// trailing whitespace: removed for Shopify (`trimmed`), whose secrets have
/// none; for WooCommerce taken both as written and trimmed
/// (`catalog_woocommerce::signing_secrets`).
#[cfg(any(feature = "shopify", feature = "woocommerce"))]
fn warn_about_whitespace(name: &str, s: &PlatformSettings, trimmed: bool) {
    use secrecy::ExposeSecret;
    let padded = |v: &SecretString| {
        let v = v.expose_secret();
        !v.trim().is_empty() && v.trim() != v
    };
    let mut keys: Vec<String> = Vec::new();
    if s.webhook_secret.as_ref().is_some_and(padded) {
        keys.push(format!("{name}.webhook_secret"));
    }
    for (i, store) in s.stores.iter().enumerate() {
        if store.secrets.iter().any(padded) {
            keys.push(format!("{name}.stores[{i}].secrets"));
        }
        if store.client_secret.as_ref().is_some_and(padded) {
            keys.push(format!("{name}.stores[{i}].client_secret"));
        }
    }
    for key in keys {
        if trimmed {
            tracing::warn!(key = %key, "a secret with leading or trailing whitespace: removed (Shopify secrets have none; a paste error?)");
        } else {
            tracing::warn!(key = %key, "a secret with leading or trailing whitespace: deliveries signed with it as written or trimmed are both accepted (WooCommerce's admin screen trims secrets; one generated over its REST API may begin or end with a space)");
        }
    }
}

#[cfg(feature = "shopify")]
fn shopify_source(s: &PlatformSettings) -> anyhow::Result<catalog_shopify::ShopifyWebhookSource> {
    let mut source = catalog_shopify::ShopifyWebhookSource::new();
    if let Some(code) = &s.default_currency {
        source = source
            .with_default_currency(code)
            .map_err(|e| anyhow::anyhow!("shopify.default_currency: {e}"))?;
    }
    for (i, store) in s.stores.iter().enumerate() {
        if let Some(code) = &store.currency {
            source = source
                .with_store_currency(&store.id, code)
                .map_err(|e| anyhow::anyhow!("shopify.stores[{i}].currency: {e}"))?;
        }
    }
    Ok(source)
}

#[cfg(feature = "woocommerce")]
fn woocommerce_source(
    s: &PlatformSettings,
) -> anyhow::Result<catalog_woocommerce::WooCommerceWebhookSource> {
    use catalog_core::CurrencyCode;
    let currency = |key: String, code: &str| {
        CurrencyCode::new(code).map_err(|e| anyhow::anyhow!("{key}: {e}"))
    };
    let mut source = catalog_woocommerce::WooCommerceWebhookSource::new();
    if let Some(code) = &s.default_currency {
        source =
            source.with_default_currency(currency("woocommerce.default_currency".into(), code)?);
    }
    // Units are checked by `Settings::validate`.
    if let Some(unit) = s
        .default_weight_unit
        .as_deref()
        .and_then(catalog_core::WeightUnit::known)
    {
        source = source.with_weight_unit(unit);
    }
    for (i, store) in s.stores.iter().enumerate() {
        if let Some(code) = &store.currency {
            source = source.with_store_currency(
                &store.id,
                currency(format!("woocommerce.stores[{i}].currency"), code)?,
            );
        }
        if let Some(unit) = store
            .weight_unit
            .as_deref()
            .and_then(catalog_core::WeightUnit::known)
        {
            source = source.with_store_weight_unit(&store.id, unit);
        }
    }
    Ok(source)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::StoreSettings;

    #[test]
    fn store_ids_compare_by_host_case_insensitively_and_path_exactly() {
        assert_eq!(normalise_store(" A.MyShopify.com/ "), "a.myshopify.com");
        assert_eq!(
            normalise_store("HTTPS://Sub.Example.com/SHOP/"),
            "https://sub.example.com/SHOP"
        );
        assert_ne!(
            normalise_store("https://sub.example.com/SHOP"),
            normalise_store("https://sub.example.com/shop")
        );
    }

    #[test]
    fn store_lists_restrict_and_fall_back_to_the_shared_secret() {
        let mut s = PlatformSettings::default();
        assert!(matches!(
            Verifiers::from_settings("shopify", &s).unwrap(),
            Verifiers::Unconfigured
        ));
        s.webhook_secret = Some("shared".into());
        let any = Verifiers::from_settings("shopify", &s).unwrap();
        assert!(any.for_store("whatever.myshopify.com").is_ok());
        s.stores = vec![
            StoreSettings::new("A.myshopify.com", vec![]),
            StoreSettings::new("https://b.example/", vec!["x".into(), "y".into()]),
        ];
        let listed = Verifiers::from_settings("shopify", &s).unwrap();
        assert_eq!(
            listed.for_store("a.myshopify.com").unwrap().secret_count(),
            1
        );
        assert_eq!(
            listed
                .for_store("https://b.example")
                .unwrap()
                .secret_count(),
            2
        );
        assert_eq!(
            listed.for_store("c.myshopify.com").unwrap_err(),
            VerifierLookup::UnknownStore
        );
        assert!(!listed.describe().contains("shared"));
    }

    #[test]
    fn a_listed_store_without_any_secret_is_a_config_error() {
        let s = PlatformSettings {
            stores: vec![StoreSettings::new("a.myshopify.com", vec![])],
            ..PlatformSettings::default()
        };
        let err = Verifiers::from_settings("shopify", &s).unwrap_err();
        assert!(err.to_string().contains("shopify.stores[0].secrets"));
    }

    #[cfg(not(feature = "shopify"))]
    #[test]
    fn configuring_compiled_out_shopify_stops_start_up() {
        let env = vec![("SHOPIFY_WEBHOOK_SECRET".to_owned(), "x".to_owned())];
        let s = Settings::load_from(None, &env).unwrap();
        let err = Platforms::from_settings(&s).unwrap_err();
        assert!(
            err.to_string().contains("without the `shopify` feature"),
            "{err}"
        );
        // A [shopify] table in the file counts too.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[[shopify.stores]]\nid = \"a.myshopify.com\"\nsecrets = [\"s\"]\n",
        )
        .unwrap();
        let s = Settings::load_from(Some(&path), &[]).unwrap();
        assert!(Platforms::from_settings(&s).is_err());
    }

    #[cfg(not(feature = "woocommerce"))]
    #[test]
    fn configuring_compiled_out_woocommerce_stops_start_up() {
        let env = vec![("WOOCOMMERCE_WEBHOOK_SECRET".to_owned(), "x".to_owned())];
        let s = Settings::load_from(None, &env).unwrap();
        let err = Platforms::from_settings(&s).unwrap_err();
        assert!(
            err.to_string()
                .contains("without the `woocommerce` feature"),
            "{err}"
        );
    }
}
