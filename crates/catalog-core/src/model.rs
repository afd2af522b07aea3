//! The unified product model every platform maps into.
//!
//! This is the format operators see (admin API, sinks, exports). Its JSON form
//! is stable and round-trips exactly:
//!
//! - ids are strings (Shopify ids exceed 2^53 and would be corrupted as JSON numbers
//!   by many readers);
//! - money is `{"amount": "19.90", "currency": "USD"}` ([`Money`]);
//! - timestamps are RFC 3339 in UTC;
//! - open enums ([`ProductStatus`], [`WeightUnit`]) keep values they do not know
//!   as the raw string, so a new platform value never fails a read.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Money;

/// Identifies a platform (`"shopify"`, `"woocommerce"`, ...).
///
/// An open identifier rather than an enum, so that a new platform crate does not
/// need a change in the core.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PlatformId(Cow<'static, str>);

impl PlatformId {
    /// Shopify.
    pub const SHOPIFY: Self = Self(Cow::Borrowed("shopify"));
    /// WooCommerce.
    pub const WOOCOMMERCE: Self = Self(Cow::Borrowed("woocommerce"));

    /// A platform id from a static name. Use lower-case ASCII, as in routes and config.
    pub const fn from_static(name: &'static str) -> Self {
        Self(Cow::Borrowed(name))
    }

    /// A platform id from an owned name (e.g. read back from a store).
    pub fn new(name: impl Into<String>) -> Self {
        Self(Cow::Owned(name.into()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PlatformId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A product in the unified model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    /// Our id: `"{platform}:{store}:{platform_id}"`, stable and unique across stores.
    pub id: String,
    /// The platform's own id as a string (Shopify's numeric id, WooCommerce's post id).
    pub platform_id: String,
    /// The platform's global id where it has one (Shopify `gid://shopify/Product/...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_id: Option<String>,
    /// The platform.
    pub platform: PlatformId,
    /// The store, as the platform identifies it (Shopify shop domain, WooCommerce site URL).
    pub store: String,
    /// Title / name.
    pub title: String,
    /// URL handle or slug.
    #[serde(default)]
    pub handle: Option<String>,
    /// Description as HTML, as the platform stores it.
    #[serde(default)]
    pub description_html: Option<String>,
    /// Vendor or brand.
    #[serde(default)]
    pub vendor: Option<String>,
    /// Product type (Shopify `product_type`, WooCommerce `type` such as `variable`).
    #[serde(default)]
    pub product_type: Option<String>,
    /// Publication status.
    pub status: ProductStatus,
    /// Tags, in platform order, without surrounding blanks.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Categories or collections the platform reports with the product.
    #[serde(default)]
    pub categories: Vec<Category>,
    /// Option definitions (e.g. Size: S, M, L).
    #[serde(default)]
    pub options: Vec<ProductOption>,
    /// Variants; a simple product has exactly one.
    #[serde(default)]
    pub variants: Vec<Variant>,
    /// Images in display order.
    #[serde(default)]
    pub images: Vec<Image>,
    /// When the platform says the product was created.
    #[serde(default)]
    pub created_at: Option<DateTime<Utc>>,
    /// When the platform says the product was last updated.
    #[serde(default)]
    pub updated_at: Option<DateTime<Utc>>,
    /// The platform's JSON for this product, for whatever the model lacks.
    #[serde(default)]
    pub raw: serde_json::Value,
}

impl Product {
    /// Builds our id for a product: `"{platform}:{store}:{platform_id}"`.
    pub fn unified_id(platform: &PlatformId, store: &str, platform_id: &str) -> String {
        format!("{platform}:{store}:{platform_id}")
    }
}

/// Publication status: an open enum that keeps unknown values.
///
/// Serialised as lower-case text (`"active"`); a value this version does not
/// know is kept verbatim in [`ProductStatus::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProductStatus {
    /// Visible / published (Shopify `ACTIVE`, WooCommerce `publish`).
    Active,
    /// Not yet published.
    Draft,
    /// Archived (Shopify).
    Archived,
    /// Published but not listed (Shopify `UNLISTED`).
    Unlisted,
    /// Awaiting review (WooCommerce `pending`).
    Pending,
    /// Visible to administrators only (WooCommerce `private`).
    Private,
    /// Scheduled (WooCommerce `future`).
    Scheduled,
    /// In the trash (WooCommerce `trash`).
    Trashed,
    /// A value this version does not know, kept as the platform sent it.
    Other(String),
}

impl ProductStatus {
    /// Maps a platform value, case-insensitively, keeping unknown ones.
    pub fn from_platform(value: &str) -> Self {
        match value.to_ascii_lowercase().as_str() {
            "active" | "publish" | "published" => Self::Active,
            "draft" => Self::Draft,
            "archived" => Self::Archived,
            "unlisted" => Self::Unlisted,
            "pending" => Self::Pending,
            "private" => Self::Private,
            "future" | "scheduled" => Self::Scheduled,
            "trash" | "trashed" => Self::Trashed,
            _ => Self::Other(value.to_owned()),
        }
    }

    /// The serialised form.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Active => "active",
            Self::Draft => "draft",
            Self::Archived => "archived",
            Self::Unlisted => "unlisted",
            Self::Pending => "pending",
            Self::Private => "private",
            Self::Scheduled => "scheduled",
            Self::Trashed => "trashed",
            Self::Other(raw) => raw,
        }
    }
}

impl Serialize for ProductStatus {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ProductStatus {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        // Our own serialised names map back exactly; anything else stays raw.
        Ok(match raw.as_str() {
            "active" => Self::Active,
            "draft" => Self::Draft,
            "archived" => Self::Archived,
            "unlisted" => Self::Unlisted,
            "pending" => Self::Pending,
            "private" => Self::Private,
            "scheduled" => Self::Scheduled,
            "trashed" => Self::Trashed,
            _ => Self::Other(raw),
        })
    }
}

/// A category, collection or taxonomy node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Category {
    /// The platform's id, when it has one.
    #[serde(default)]
    pub id: Option<String>,
    /// Display name.
    pub name: String,
    /// Slug or handle.
    #[serde(default)]
    pub slug: Option<String>,
}

/// An option a product varies by, with its possible values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductOption {
    /// Option name, e.g. `"Size"`.
    pub name: String,
    /// Possible values in platform order.
    #[serde(default)]
    pub values: Vec<String>,
}

/// One option value chosen by a variant, e.g. Size = M.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectedOption {
    /// Option name.
    pub name: String,
    /// Chosen value.
    pub value: String,
}

/// A purchasable variant of a product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    /// The platform's variant id as a string.
    pub id: String,
    /// The platform's global id where it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_id: Option<String>,
    /// Stock keeping unit.
    #[serde(default)]
    pub sku: Option<String>,
    /// Variant title, e.g. `"M / Blue"`.
    #[serde(default)]
    pub title: Option<String>,
    /// Barcode (GTIN, UPC, ISBN...).
    #[serde(default)]
    pub barcode: Option<String>,
    /// Current selling price; `None` when the platform has none.
    #[serde(default)]
    pub price: Option<Money>,
    /// Compare-at / regular price shown struck through; `None` when absent.
    #[serde(default)]
    pub compare_at_price: Option<Money>,
    /// Units in stock, when the platform tracks them.
    #[serde(default)]
    pub inventory_quantity: Option<i64>,
    /// The option values that define this variant.
    #[serde(default)]
    pub options: Vec<SelectedOption>,
    /// Shipping weight.
    #[serde(default)]
    pub weight: Option<Weight>,
}

/// A weight with its unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weight {
    /// Exact value.
    #[serde(with = "rust_decimal::serde::str")]
    pub value: Decimal,
    /// Unit.
    pub unit: WeightUnit,
}

/// A unit of weight: an open enum that keeps unknown units.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WeightUnit {
    /// Grams.
    Grams,
    /// Kilograms.
    Kilograms,
    /// Pounds.
    Pounds,
    /// Ounces.
    Ounces,
    /// Anything else, as the platform wrote it.
    Other(String),
}

impl WeightUnit {
    /// A unit this model knows (`"kg"`, `" Pounds "`...), surrounding
    /// whitespace ignored; `None` for any other: for settings, where an
    /// unknown unit is a mistake rather than a platform's value to keep.
    pub fn known(unit: &str) -> Option<Self> {
        match Self::from_platform(unit.trim()) {
            Self::Other(_) => None,
            known => Some(known),
        }
    }

    /// Maps a platform unit (`"kg"`, `"KILOGRAMS"`, `"lbs"`...), keeping unknown ones.
    pub fn from_platform(unit: &str) -> Self {
        match unit.to_ascii_lowercase().as_str() {
            "g" | "grams" | "gram" => Self::Grams,
            "kg" | "kilograms" | "kilogram" => Self::Kilograms,
            "lb" | "lbs" | "pounds" | "pound" => Self::Pounds,
            "oz" | "ounces" | "ounce" => Self::Ounces,
            _ => Self::Other(unit.to_owned()),
        }
    }

    /// The serialised form (`"g"`, `"kg"`, `"lb"`, `"oz"` or the raw value).
    pub fn as_str(&self) -> &str {
        match self {
            Self::Grams => "g",
            Self::Kilograms => "kg",
            Self::Pounds => "lb",
            Self::Ounces => "oz",
            Self::Other(raw) => raw,
        }
    }
}

impl Serialize for WeightUnit {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for WeightUnit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Ok(match raw.as_str() {
            "g" => Self::Grams,
            "kg" => Self::Kilograms,
            "lb" => Self::Pounds,
            "oz" => Self::Ounces,
            _ => Self::Other(raw),
        })
    }
}

/// A product image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// The platform's image id, when it has one.
    #[serde(default)]
    pub id: Option<String>,
    /// Absolute URL of the image.
    pub url: String,
    /// Alternative text.
    #[serde(default)]
    pub alt: Option<String>,
    /// Width in pixels.
    #[serde(default)]
    pub width: Option<u32>,
    /// Height in pixels.
    #[serde(default)]
    pub height: Option<u32>,
}

/// Splits a comma-separated tag string (Shopify REST/webhooks) into tags,
/// trimming blanks and dropping empty entries.
pub fn split_tags(tags: &str) -> Vec<String> {
    tags.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Money;

    pub(crate) fn sample_product() -> Product {
        Product {
            id: Product::unified_id(
                &PlatformId::SHOPIFY,
                "shop.myshopify.com",
                "788032119674292922",
            ),
            platform_id: "788032119674292922".into(),
            global_id: Some("gid://shopify/Product/788032119674292922".into()),
            platform: PlatformId::SHOPIFY,
            store: "shop.myshopify.com".into(),
            title: "Example T-Shirt".into(),
            handle: Some("example-t-shirt".into()),
            description_html: Some("<p>Soft</p>".into()),
            vendor: Some("Acme".into()),
            product_type: Some("Shirts".into()),
            status: ProductStatus::Other("Something-New".into()),
            tags: split_tags("example, mens, t-shirt,"),
            categories: vec![Category {
                id: None,
                name: "Tops".into(),
                slug: Some("tops".into()),
            }],
            options: vec![ProductOption {
                name: "Title".into(),
                values: vec!["Small".into(), "Medium".into()],
            }],
            variants: vec![Variant {
                id: "642667041472713922".into(),
                global_id: None,
                sku: Some("example-shirt-s".into()),
                title: Some("Small".into()),
                barcode: None,
                price: Money::parse("19.99", "USD").unwrap(),
                compare_at_price: Money::parse("24.990", "USD").unwrap(),
                inventory_quantity: Some(-3),
                options: vec![SelectedOption {
                    name: "Title".into(),
                    value: "Small".into(),
                }],
                weight: Some(Weight {
                    value: Decimal::new(1250, 3),
                    unit: WeightUnit::Other("stone".into()),
                }),
            }],
            images: vec![Image {
                id: Some("1".into()),
                url: "https://cdn.example/1.png".into(),
                alt: None,
                width: Some(100),
                height: None,
            }],
            created_at: "2026-01-01T00:00:00Z".parse().ok(),
            updated_at: "2026-01-02T03:04:05.123Z".parse().ok(),
            raw: serde_json::json!({"id": 788032119674292922_u64, "x": [1.5, null]}),
        }
    }

    #[test]
    fn json_round_trips_exactly() {
        let p = sample_product();
        let json = serde_json::to_string(&p).unwrap();
        let back: Product = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);
        // And the text form is stable too.
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
    }

    #[test]
    fn nineteen_digit_ids_survive_as_strings() {
        let p = sample_product();
        let v: serde_json::Value = serde_json::to_value(&p).unwrap();
        assert_eq!(v["platform_id"], "788032119674292922");
        assert_eq!(v["variants"][0]["id"], "642667041472713922");
        assert_eq!(v["raw"]["id"].as_u64(), Some(788032119674292922));
    }

    #[test]
    fn prices_keep_exact_decimals() {
        let v = serde_json::to_value(sample_product()).unwrap();
        assert_eq!(v["variants"][0]["price"]["amount"], "19.99");
        assert_eq!(v["variants"][0]["compare_at_price"]["amount"], "24.990");
        assert_eq!(v["variants"][0]["weight"]["value"], "1.250");
    }

    #[test]
    fn open_enums_keep_unknown_values() {
        assert_eq!(
            ProductStatus::from_platform("ACTIVE"),
            ProductStatus::Active
        );
        assert_eq!(
            ProductStatus::from_platform("publish"),
            ProductStatus::Active
        );
        let odd = ProductStatus::from_platform("Something-New");
        assert_eq!(odd.as_str(), "Something-New");
        let json = serde_json::to_string(&odd).unwrap();
        assert_eq!(serde_json::from_str::<ProductStatus>(&json).unwrap(), odd);
        assert_eq!(
            WeightUnit::from_platform("KILOGRAMS"),
            WeightUnit::Kilograms
        );
        assert_eq!(WeightUnit::from_platform("lbs").as_str(), "lb");
    }

    #[test]
    fn tags_are_split_and_trimmed() {
        assert_eq!(split_tags(" a, b ,,c "), vec!["a", "b", "c"]);
        assert!(split_tags("").is_empty());
    }
}
