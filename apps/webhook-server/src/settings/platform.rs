//! `[shopify]` and `[woocommerce]`: secrets, stores, currencies, weight units.

use std::fmt;

use anyhow::bail;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::refuse;
use super::secrets::check_secret;

/// `[shopify]` / `[woocommerce]`. Unknown keys are refused, here and in
/// store entries: a misspelt `[[shopify.store]]` would otherwise drop the
/// store list, and with it the refusal of unlisted stores. Store entries
/// also hold the `catalog` CLI's keys (API credentials), which the CLI
/// reads from the same file: a key the CLI adds must be added here too.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct PlatformSettings {
    /// The seed's single secret (`SHOPIFY_WEBHOOK_SECRET` / `SHOPIFY_CLIENT_SECRET`,
    /// `WOOCOMMERCE_WEBHOOK_SECRET`). When no store is listed, any store signed
    /// with it is accepted; listed stores without secrets of their own use it.
    #[serde(default)]
    pub webhook_secret: Option<SecretString>,
    /// Stores accepted, each with its own secrets (several during a rotation).
    /// When non-empty, deliveries from any other store are refused.
    #[serde(default)]
    pub stores: Vec<StoreSettings>,
    /// ISO 4217 currency of stores without their own `currency` (payload
    /// prices carry none). Shopify defaults to USD; WooCommerce events have
    /// no normalised product without a currency.
    #[serde(default)]
    pub default_currency: Option<String>,
    /// WooCommerce: the weight unit of stores without their own
    /// (`kg`, `g`, `lbs`, `oz`: the store's `woocommerce_weight_unit`).
    /// Payload weights are bare numbers; without a unit, variants carry no
    /// weight.
    #[serde(default)]
    pub default_weight_unit: Option<String>,
}

impl PlatformSettings {
    /// Whether anything is configured for this platform.
    pub fn is_configured(&self) -> bool {
        self.webhook_secret
            .as_ref()
            .is_some_and(|s| !s.expose_secret().is_empty())
            || !self.stores.is_empty()
    }
}

impl fmt::Debug for PlatformSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlatformSettings")
            .field(
                "webhook_secret",
                &self.webhook_secret.as_ref().map(|_| "[redacted]"),
            )
            .field("stores", &self.stores)
            .field("default_currency", &self.default_currency)
            .field("default_weight_unit", &self.default_weight_unit)
            .finish()
    }
}

impl PlatformSettings {
    /// Refuses empty or placeholder secrets, unnamed stores, and currencies or weight units the platform cannot have; `name` is the section.
    pub(super) fn validate(&self, name: &str) -> anyhow::Result<()> {
        if let Some(secret) = &self.webhook_secret {
            check_secret(&format!("{name}.webhook_secret"), secret)?;
        }
        for (i, store) in self.stores.iter().enumerate() {
            if store.id.trim().is_empty() {
                bail!("{name}.stores[{i}].id must not be empty");
            }
            if store.secrets.iter().any(|s| s.expose_secret().is_empty()) {
                bail!("{name}.stores[{i}].secrets must not contain an empty secret");
            }
            for secret in &store.secrets {
                check_secret(&format!("{name}.stores[{i}].secrets"), secret)?;
            }
            if let Some(secret) = &store.client_secret {
                check_secret(&format!("{name}.stores[{i}].client_secret"), secret)?;
            }
            if let Some(c) = &store.currency {
                catalog_core::CurrencyCode::new(c).map_err(|_| {
                    refuse(
                        &format!("{name}.stores[{i}].currency"),
                        "must be a three-letter ISO 4217 code such as EUR",
                    )
                })?;
            }
        }
        let weight_units = self
            .stores
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.weight_unit
                    .as_deref()
                    .map(|u| (format!("{name}.stores[{i}].weight_unit"), u))
            })
            .chain(
                self.default_weight_unit
                    .as_deref()
                    .map(|u| (format!("{name}.default_weight_unit"), u)),
            );
        for (key, unit) in weight_units {
            if name != "woocommerce" {
                return Err(refuse(
                    &key,
                    "is for WooCommerce stores only (their payloads carry weights without a unit)",
                ));
            }
            if catalog_core::WeightUnit::known(unit).is_none() {
                return Err(refuse(
                    &key,
                    "must be kg, g, lbs or oz (WooCommerce's weight units)",
                ));
            }
        }
        if let Some(c) = &self.default_currency {
            catalog_core::CurrencyCode::new(c).map_err(|_| {
                refuse(
                    &format!("{name}.default_currency"),
                    "must be a three-letter ISO 4217 code such as EUR",
                )
            })?;
        }
        Ok(())
    }
}

/// One `[[shopify.stores]]` / `[[woocommerce.stores]]` entry (unknown keys
/// refused, see [`PlatformSettings`]).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct StoreSettings {
    /// The store as the platform names it: Shopify shop domain
    /// (`example.myshopify.com`), WooCommerce site URL (`https://shop.example.com`).
    pub id: String,
    /// Accepted secrets, newest first; empty = the platform's `webhook_secret`
    /// and (Shopify) the entry's `client_secret`.
    #[serde(default)]
    pub secrets: Vec<SecretString>,
    /// The store's ISO 4217 currency, for the prices of its products
    /// (Shopify's and WooCommerce's webhook payloads carry none).
    #[serde(default)]
    pub currency: Option<String>,
    /// WooCommerce: the store's weight unit (`kg`, `g`, `lbs`, `oz`), for
    /// the weights of its products (payloads carry bare numbers).
    #[serde(default)]
    pub weight_unit: Option<String>,
    /// Catalog API access, read by the `catalog` CLI and ignored by the
    /// server (see `docs/cli.md`): the name `--store` picks.
    #[serde(default)]
    pub name: Option<String>,
    /// CLI: where the API is when not at `id` (a bare domain means https).
    #[serde(default)]
    pub store_url: Option<String>,
    /// CLI, Shopify: Admin API version (default 2026-01).
    #[serde(default)]
    pub api_version: Option<String>,
    /// CLI, Shopify: the app's client id (client credentials grant).
    #[serde(default)]
    pub client_id: Option<String>,
    /// CLI, Shopify: the app's client secret.
    #[serde(default)]
    pub client_secret: Option<SecretString>,
    /// CLI, Shopify: a static Admin API token, instead of client credentials.
    #[serde(default)]
    pub access_token: Option<SecretString>,
    /// CLI, WooCommerce: REST API consumer key.
    #[serde(default)]
    pub consumer_key: Option<SecretString>,
    /// CLI, WooCommerce: REST API consumer secret.
    #[serde(default)]
    pub consumer_secret: Option<SecretString>,
    /// CLI, WooCommerce: `auto`, `basic`, `query_string` or `oauth1`.
    #[serde(default)]
    pub auth: Option<String>,
}

impl StoreSettings {
    /// A store entry.
    pub fn new(id: impl Into<String>, secrets: Vec<SecretString>) -> Self {
        Self {
            id: id.into(),
            secrets,
            currency: None,
            weight_unit: None,
            name: None,
            store_url: None,
            api_version: None,
            client_id: None,
            client_secret: None,
            access_token: None,
            consumer_key: None,
            consumer_secret: None,
            auth: None,
        }
    }
}

impl fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreSettings")
            .field("id", &self.id)
            .field(
                "secrets",
                &format_args!("[{} redacted]", self.secrets.len()),
            )
            .finish()
    }
}
