//! `catalog webhook sign|send`: the headers a platform would send for a body,
//! and a signed delivery to a local server.

use std::time::Duration;

use catalog_core::webhook::sign;
use rand::Rng as _;
use secrecy::{ExposeSecret as _, SecretString};

use crate::config::{Config, Platform, redact_url};
use crate::error::{CliError, Kind, error_chain};
use crate::output;

/// Shopify's sample `products/create` body (`/work/shared/platforms/shopify`).
pub(crate) const SHOPIFY_PRODUCT_SAMPLE: &str =
    include_str!("../samples/shopify-products-create.json");
/// Shopify's sample `products/delete` body.
pub(crate) const SHOPIFY_DELETE_SAMPLE: &str =
    include_str!("../samples/shopify-products-delete.json");
/// WooCommerce's documented product 794 (the body of `product.*` deliveries).
pub(crate) const WOOCOMMERCE_PRODUCT_SAMPLE: &str =
    include_str!("../samples/woocommerce-product-794.json");
/// WooCommerce's `product.deleted` body: the id only.
pub(crate) const WOOCOMMERCE_DELETE_SAMPLE: &str = "{\"id\":794}";

/// The store a delivery claims to come from when none is configured.
const SHOPIFY_EXAMPLE_STORE: &str = "example.myshopify.com";
const WOOCOMMERCE_EXAMPLE_STORE: &str = "https://shop.example.com";

/// What happened, platform-neutral.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Create,
    Update,
    Delete,
    Restore,
}

impl Action {
    /// The product action a topic names in any platform's spelling
    /// (`products/create`, `product.created`, `create`...), lower case.
    fn of_topic(lower: &str) -> Option<Self> {
        match lower {
            "create" | "created" | "products/create" | "product.created" | "products_create" => {
                Some(Self::Create)
            }
            "update" | "updated" | "products/update" | "product.updated" | "products_update" => {
                Some(Self::Update)
            }
            "delete" | "deleted" | "products/delete" | "product.deleted" | "products_delete" => {
                Some(Self::Delete)
            }
            "restore" | "restored" | "product.restored" => Some(Self::Restore),
            _ => None,
        }
    }
}

/// A topic filter as the server records topics: a product topic in any
/// platform's spelling becomes its canonical name (`products/create` ->
/// `product.created`); any other topic is kept as given (the server keeps
/// topics it does not know verbatim).
pub(crate) fn canonical_topic(input: &str) -> String {
    match Action::of_topic(&input.trim().to_ascii_lowercase()) {
        Some(Action::Create) => "product.created".to_owned(),
        Some(Action::Update) => "product.updated".to_owned(),
        Some(Action::Delete) => "product.deleted".to_owned(),
        Some(Action::Restore) => "product.restored".to_owned(),
        None => input.trim().to_owned(),
    }
}

/// A topic as the platform writes it, with its action when it is a product topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlatformTopic {
    raw: String,
    action: Option<Action>,
}

impl PlatformTopic {
    /// Reads `products/create`, `product.created`, `create`... for a platform.
    pub(crate) fn parse(platform: Platform, input: &str) -> Result<Self, CliError> {
        let t = input.trim().to_ascii_lowercase();
        let action = Action::of_topic(&t);
        let raw = match (platform, action) {
            (Platform::Shopify, Some(Action::Create)) => "products/create".to_owned(),
            (Platform::Shopify, Some(Action::Update)) => "products/update".to_owned(),
            (Platform::Shopify, Some(Action::Delete)) => "products/delete".to_owned(),
            (Platform::Shopify, Some(Action::Restore)) => {
                return Err(CliError::new(
                    Kind::Config,
                    "Shopify has no restore topic: use --topic products/create, products/update or products/delete",
                ));
            }
            (Platform::Woocommerce, Some(a)) => format!(
                "product.{}",
                match a {
                    Action::Create => "created",
                    Action::Update => "updated",
                    Action::Delete => "deleted",
                    Action::Restore => "restored",
                }
            ),
            (Platform::Shopify, None) if t.contains('/') => input.trim().to_owned(),
            (Platform::Woocommerce, None)
                if t.split_once('.')
                    .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty()) =>
            {
                input.trim().to_owned()
            }
            (p, None) => {
                return Err(CliError::new(
                    Kind::Config,
                    format!(
                        "unknown topic {input:?} for {}: use {}",
                        p.title(),
                        match p {
                            Platform::Shopify =>
                                "products/create, products/update or products/delete",
                            Platform::Woocommerce =>
                                "product.created, product.updated, product.deleted or product.restored",
                        }
                    ),
                ));
            }
        };
        Ok(Self { raw, action })
    }

    /// The route action (`create`...), for the default URL.
    fn route_action(&self) -> Option<&'static str> {
        self.action.map(|a| match a {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Restore => "restore",
        })
    }

    /// The documented sample body for this topic.
    fn sample(&self, platform: Platform) -> Option<&'static str> {
        match (platform, self.action?) {
            (Platform::Shopify, Action::Delete) => Some(SHOPIFY_DELETE_SAMPLE),
            (Platform::Shopify, _) => Some(SHOPIFY_PRODUCT_SAMPLE),
            (Platform::Woocommerce, Action::Delete) => Some(WOOCOMMERCE_DELETE_SAMPLE),
            (Platform::Woocommerce, _) => Some(WOOCOMMERCE_PRODUCT_SAMPLE),
        }
    }
}

/// Common inputs of `sign` and `send`.
#[derive(Debug)]
pub(crate) struct Delivery {
    /// The platform whose headers to write.
    pub(crate) platform: Platform,
    /// The topic.
    pub(crate) topic: PlatformTopic,
    /// The exact body bytes.
    pub(crate) body: Vec<u8>,
    /// The store the delivery claims to come from.
    pub(crate) store_id: String,
    /// The Shopify API version header.
    pub(crate) api_version: String,
}

/// A fresh random UUID-shaped id (Shopify's webhook and event ids look like this).
fn fresh_uuid() -> String {
    let b: [u8; 16] = rand::rng().random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-4{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[16..20],
        &h[20..32]
    )
}

/// The headers the platform would send for this delivery, with fresh ids.
pub(crate) fn headers(d: &Delivery, secret: &SecretString) -> Vec<(String, String)> {
    // As the server reads Shopify's secrets: without surrounding whitespace
    // (Shopify's have none; a pasted newline would sign what Shopify never
    // does). A WooCommerce secret is signed with as written: the server
    // takes it both ways.
    let key = match d.platform {
        Platform::Shopify => secret.expose_secret().trim(),
        Platform::Woocommerce => secret.expose_secret(),
    };
    let signature = sign(key.as_bytes(), &d.body);
    let h = |k: &str, v: String| (k.to_owned(), v);
    match d.platform {
        Platform::Shopify => {
            use catalog_shopify::webhook::{
                API_VERSION_HEADER, EVENT_ID_HEADER, HMAC_HEADER, SHOP_DOMAIN_HEADER, TOPIC_HEADER,
                TRIGGERED_AT_HEADER, WEBHOOK_ID_HEADER,
            };
            vec![
                h("Content-Type", "application/json".into()),
                h(TOPIC_HEADER, d.topic.raw.clone()),
                h(HMAC_HEADER, signature),
                h(SHOP_DOMAIN_HEADER, d.store_id.clone()),
                h(API_VERSION_HEADER, d.api_version.clone()),
                h(WEBHOOK_ID_HEADER, fresh_uuid()),
                h(EVENT_ID_HEADER, fresh_uuid()),
                h(
                    TRIGGERED_AT_HEADER,
                    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                ),
            ]
        }
        Platform::Woocommerce => {
            use catalog_woocommerce::webhook::{
                DELIVERY_ID_HEADER, EVENT_HEADER, RESOURCE_HEADER, SIGNATURE_HEADER, SOURCE_HEADER,
                TOPIC_HEADER, WEBHOOK_ID_HEADER,
            };
            let (resource, event) = d
                .topic
                .raw
                .split_once('.')
                .map_or(("", ""), |(r, e)| (r, e));
            let delivery: [u8; 16] = rand::rng().random();
            let mut source = d.store_id.trim_end_matches('/').to_owned();
            source.push('/');
            vec![
                h("Content-Type", "application/json".into()),
                h(
                    "User-Agent",
                    concat!(
                        "WooCommerce Hookshot (catalog-cli/",
                        env!("CARGO_PKG_VERSION"),
                        ")"
                    )
                    .into(),
                ),
                h(SOURCE_HEADER, source),
                h(TOPIC_HEADER, d.topic.raw.clone()),
                h(RESOURCE_HEADER, resource.to_owned()),
                h(EVENT_HEADER, event.to_owned()),
                h(SIGNATURE_HEADER, signature),
                h(WEBHOOK_ID_HEADER, "1".into()),
                h(
                    DELIVERY_ID_HEADER,
                    delivery.iter().map(|x| format!("{x:02x}")).collect(),
                ),
            ]
        }
    }
}

/// Everything `sign` and `send` resolve from flags and configuration.
#[derive(Debug)]
pub(crate) struct Resolved {
    /// The delivery.
    pub(crate) delivery: Delivery,
    /// The secret that signs it.
    pub(crate) secret: SecretString,
}

/// Flags shared by `sign` and `send`.
#[derive(Debug)]
pub(crate) struct Inputs<'a> {
    /// `--platform`.
    pub(crate) platform: Platform,
    /// `--topic`, if given.
    pub(crate) topic: Option<&'a str>,
    /// The body file (`-` for stdin), if given.
    pub(crate) payload: Option<&'a std::path::Path>,
    /// `--secret-env VAR`.
    pub(crate) secret_env: Option<&'a str>,
    /// `--store` (global).
    pub(crate) store: Option<&'a str>,
    /// `--store-id`: the store the delivery claims to come from.
    pub(crate) store_id: Option<&'a str>,
}

/// Reads the body, picks the store and the secret.
pub(crate) fn resolve(config: &Config, i: &Inputs<'_>) -> Result<Resolved, CliError> {
    let topic = PlatformTopic::parse(i.platform, i.topic.unwrap_or("create"))?;
    let body = match i.payload {
        Some(p) if p.as_os_str() == "-" => {
            let mut buf = Vec::new();
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                .map_err(|e| CliError::io("cannot read the body from stdin", &e))?;
            buf
        }
        Some(p) => std::fs::read(p)
            .map_err(|e| CliError::io(format!("cannot read {}", p.display()), &e))?,
        None => topic
            .sample(i.platform)
            .ok_or_else(|| {
                CliError::new(
                    Kind::Config,
                    format!(
                        "no sample body for topic {}: give --payload FILE",
                        topic.raw
                    ),
                )
            })?
            .as_bytes()
            .to_vec(),
    };
    // The configured store, when there is one (none is fine: a placeholder is used).
    let store = match config.select(i.store, Some(i.platform)) {
        Ok(s) => Some(s),
        Err(_) if i.store.is_none() && !config.stores.iter().any(|s| s.platform == i.platform) => {
            None
        }
        Err(e) => return Err(e),
    };
    let secret = match i.secret_env {
        Some(var) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => SecretString::from(v),
            _ => {
                return Err(CliError::new(
                    Kind::Config,
                    format!("--secret-env {var}: the variable {var} is not set or empty; export the webhook secret in it"),
                ));
            }
        },
        None => store
            .and_then(|s| s.webhook_secret())
            .or_else(|| config.platform_secret(i.platform))
            .cloned()
            .ok_or_else(|| {
                CliError::new(
                    Kind::Config,
                    format!(
                        "no {} webhook secret: pass --secret-env VAR, or set secrets for the store in [[{p}.stores]] or {p}.webhook_secret ({})",
                        i.platform.title(),
                        match i.platform {
                            Platform::Shopify => "SHOPIFY_WEBHOOK_SECRET",
                            Platform::Woocommerce => "WOOCOMMERCE_WEBHOOK_SECRET",
                        },
                        p = i.platform
                    ),
                )
            })?,
    };
    // As deliveries name the store (a shop domain, a site's https URL),
    // however the id is written in the file or on the command line.
    let store_id = match (i.store_id, store) {
        (Some(id), _) => crate::config::recorded(i.platform, id).unwrap_or_else(|| id.to_owned()),
        (None, Some(s)) => s.recorded_id(),
        (None, None) => match i.platform {
            Platform::Shopify => SHOPIFY_EXAMPLE_STORE.to_owned(),
            Platform::Woocommerce => WOOCOMMERCE_EXAMPLE_STORE.to_owned(),
        },
    };
    Ok(Resolved {
        delivery: Delivery {
            platform: i.platform,
            topic,
            body,
            store_id,
            api_version: catalog_shopify::DEFAULT_API_VERSION.to_owned(),
        },
        secret,
    })
}

/// `webhook sign`: prints the headers, one `Name: value` per line.
pub(crate) fn print_headers(r: &Resolved) -> Result<(), CliError> {
    let mut text = String::new();
    for (k, v) in headers(&r.delivery, &r.secret) {
        text.push_str(&format!("{k}: {v}\n"));
    }
    output::print(&text)
}

/// `webhook send`: posts the delivery and prints the response.
pub(crate) async fn send(
    r: &Resolved,
    to: Option<&str>,
    server_url: &str,
    timeout: Duration,
    verbose: bool,
) -> Result<(), CliError> {
    let url = match to {
        Some(u) => u.to_owned(),
        None => match r.delivery.topic.route_action() {
            Some(a) => format!(
                "{}/webhooks/{}/products/{a}",
                server_url.trim_end_matches('/'),
                r.delivery.platform
            ),
            None => format!(
                "{}/webhooks/{}",
                server_url.trim_end_matches('/'),
                r.delivery.platform
            ),
        },
    };
    let shown = redact_url(&url);
    let headers = headers(&r.delivery, &r.secret);
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5))
        .user_agent(concat!("catalog-cli/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| {
            CliError::new(Kind::Other, "cannot build the HTTP client")
                .with_detail(error_chain(&e.without_url()))
        })?;
    let mut request = client.post(&url).body(r.delivery.body.clone());
    for (k, v) in &headers {
        request = request.header(k.as_str(), v.as_str());
    }
    let mut text = format!(
        "POST {shown}  ({} from {})\n",
        r.delivery.topic.raw, r.delivery.store_id
    );
    if verbose {
        for (k, v) in &headers {
            text.push_str(&format!("> {k}: {v}\n"));
        }
    }
    output::print(&text)?;
    let response = request.send().await.map_err(|e| {
        CliError::new(
            Kind::Unreachable,
            format!("cannot reach {shown}: is the webhook server running there? (check --to)"),
        )
        .with_detail(error_chain(&e.without_url()))
    })?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let pretty = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or(body);
    output::print(&format!("HTTP {status}\n{pretty}\n"))?;
    if status.is_success() {
        return Ok(());
    }
    Err(match status.as_u16() {
        401 | 403 => CliError::new(
            Kind::Unauthorized,
            format!(
                "the server refused the delivery (HTTP {}): its secret for store {} differs from the one used; check --secret-env or the store's secrets",
                status.as_u16(),
                r.delivery.store_id
            ),
        ),
        404 => CliError::new(
            Kind::Remote,
            format!("the server has no route {shown} (HTTP 404): check --to and --platform"),
        ),
        s => CliError::new(Kind::Remote, format!("the server answered HTTP {s}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_filters_are_canonical() {
        assert_eq!(canonical_topic("products/create"), "product.created");
        assert_eq!(canonical_topic(" Update "), "product.updated");
        assert_eq!(canonical_topic("product.restored"), "product.restored");
        assert_eq!(canonical_topic("orders/create"), "orders/create");
    }

    #[test]
    fn topics_in_any_spelling() {
        let t = PlatformTopic::parse(Platform::Shopify, "product.updated").unwrap();
        assert_eq!(t.raw, "products/update");
        let t = PlatformTopic::parse(Platform::Woocommerce, "create").unwrap();
        assert_eq!(t.raw, "product.created");
        assert!(PlatformTopic::parse(Platform::Shopify, "restore").is_err());
        assert!(PlatformTopic::parse(Platform::Woocommerce, "nonsense").is_err());
        let t = PlatformTopic::parse(Platform::Woocommerce, "order.created").unwrap();
        assert_eq!(
            (t.raw.as_str(), t.sample(Platform::Woocommerce)),
            ("order.created", None)
        );
    }

    #[test]
    fn samples_are_json_and_ids_fresh() {
        for s in [
            SHOPIFY_PRODUCT_SAMPLE,
            SHOPIFY_DELETE_SAMPLE,
            WOOCOMMERCE_PRODUCT_SAMPLE,
            WOOCOMMERCE_DELETE_SAMPLE,
        ] {
            serde_json::from_str::<serde_json::Value>(s).unwrap();
        }
        assert_ne!(fresh_uuid(), fresh_uuid());
        assert_eq!(fresh_uuid().len(), 36);
    }
}
