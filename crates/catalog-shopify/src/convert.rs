//! Wire to model: GraphQL nodes (paged reads, bulk lines) and REST-shaped
//! webhook payloads both map to the same [`catalog_core::Product`].
//!
//! The two shapes differ (`descriptionHtml` vs `body_html`, tag list vs
//! comma-separated string, `ACTIVE` vs `active`, GIDs vs numeric ids), and the
//! rules below make a product read through GraphQL and the same product
//! received in a `products/update` webhook map to equal products (apart from
//! `raw`, which keeps each source's own JSON):
//!
//! - `platform_id` is the numeric id as a string (the last segment of the GID
//!   for GraphQL, `id` for REST); `global_id` is the GID (`admin_graphql_api_id`
//!   for REST).
//! - Blank text (`""`, which GraphQL returns for an unset `sku`) is `None`.
//! - Prices are exact decimals in the store currency (prices carry none).
//! - Images are `MediaImage`s with their numeric media id (REST: the `media`
//!   entries of type `IMAGE` that have a preview; payloads without `media`,
//!   or whose media are all still processing, fall back to `images`, with
//!   those entries' own ids).
//! - A variant's options pair the product's option names with its values
//!   (REST `option1..3` by position).
//! - Variant weight is not read: it lives on `inventoryItem.measurement` in
//!   GraphQL and is absent from 2026-01 webhook payloads.

use catalog_core::model::split_tags;
use catalog_core::{
    CatalogError, Category, CurrencyCode, Image, Money, PlatformId, Product, ProductOption,
    ProductStatus, SelectedOption, Variant,
};
use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Deserializer};

#[cfg(feature = "client")]
use crate::graphql::{MediaNode, ProductNode, VariantNode};

/// What the mapping needs besides the payload.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'a> {
    /// The shop domain (`example.myshopify.com`).
    pub(crate) store: &'a str,
    /// The store currency.
    pub(crate) currency: &'a CurrencyCode,
}

fn decode_err(path: impl Into<String>, message: impl Into<String>) -> CatalogError {
    CatalogError::Decode {
        path: path.into(),
        message: message.into(),
    }
}

#[cfg(feature = "client")]
/// The numeric id at the end of a GID (`gid://shopify/Product/123` => `123`).
pub(crate) fn numeric_id(gid: &str) -> Option<&str> {
    let rest = gid.strip_prefix("gid://shopify/")?;
    let (_, id) = rest.split_once('/')?;
    let id = id.split('?').next().unwrap_or(id);
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_digit())).then_some(id)
}

#[cfg(feature = "client")]
/// The resource type of a GID (`gid://shopify/ProductVariant/1` => `ProductVariant`).
pub(crate) fn gid_type(gid: &str) -> Option<&str> {
    gid.strip_prefix("gid://shopify/")?.split('/').next()
}

fn non_blank(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

fn money(
    amount: Option<&str>,
    currency: &CurrencyCode,
    path: &str,
) -> Result<Option<Money>, CatalogError> {
    match amount {
        None => Ok(None),
        Some(a) => Money::parse(a, currency.as_str()).map_err(|e| decode_err(path, e.to_string())),
    }
}

#[cfg(feature = "client")]
fn gid_number(gid: &str, path: &str) -> Result<String, CatalogError> {
    numeric_id(gid)
        .map(str::to_owned)
        .ok_or_else(|| decode_err(path, format!("not a Shopify global id: {gid:?}")))
}

// ---- GraphQL ----------------------------------------------------------------

#[cfg(feature = "client")]
/// Maps a GraphQL product node with its complete variant and media lists.
pub(crate) fn product_from_graphql(
    node: ProductNode,
    variants: Vec<VariantNode>,
    media: Vec<MediaNode>,
    raw: serde_json::Value,
    ctx: Context<'_>,
) -> Result<Product, CatalogError> {
    let platform_id = gid_number(&node.id, "id")?;
    let variants = variants
        .into_iter()
        .enumerate()
        .map(|(i, v)| variant_from_graphql(v, ctx.currency, i))
        .collect::<Result<Vec<_>, _>>()?;
    let images = media
        .into_iter()
        .filter_map(|m| {
            let image = m.image?;
            Some(Image {
                id: m.id.as_deref().and_then(numeric_id).map(str::to_owned),
                url: image.url,
                alt: non_blank(image.alt_text),
                width: image.width,
                height: image.height,
            })
        })
        .collect();
    Ok(Product {
        id: Product::unified_id(&PlatformId::SHOPIFY, ctx.store, &platform_id),
        platform_id,
        global_id: Some(node.id),
        platform: PlatformId::SHOPIFY,
        store: ctx.store.to_owned(),
        title: node.title,
        handle: non_blank(node.handle),
        description_html: non_blank(node.description_html),
        vendor: non_blank(node.vendor),
        product_type: non_blank(node.product_type),
        status: ProductStatus::from_platform(&node.status),
        tags: node
            .tags
            .into_iter()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
            .collect(),
        categories: node
            .category
            .map(|c| Category {
                id: Some(c.id),
                name: c.name,
                slug: None,
            })
            .into_iter()
            .collect(),
        options: node
            .options
            .into_iter()
            .map(|o| ProductOption {
                name: o.name,
                values: o.option_values.into_iter().map(|v| v.name).collect(),
            })
            .collect(),
        variants,
        images,
        created_at: node.created_at,
        updated_at: node.updated_at,
        raw,
    })
}

#[cfg(feature = "client")]
fn variant_from_graphql(
    v: VariantNode,
    currency: &CurrencyCode,
    index: usize,
) -> Result<Variant, CatalogError> {
    let path = format!("variants[{index}]");
    Ok(Variant {
        id: gid_number(&v.id, &format!("{path}.id"))?,
        price: money(v.price.as_deref(), currency, &format!("{path}.price"))?,
        compare_at_price: money(
            v.compare_at_price.as_deref(),
            currency,
            &format!("{path}.compareAtPrice"),
        )?,
        global_id: Some(v.id),
        sku: non_blank(v.sku),
        title: non_blank(v.title),
        barcode: non_blank(v.barcode),
        inventory_quantity: v.inventory_quantity,
        options: v
            .selected_options
            .into_iter()
            .map(|o| SelectedOption {
                name: o.name,
                value: o.value,
            })
            .collect(),
        weight: None,
    })
}

// ---- REST (webhooks) ----------------------------------------------------------

/// An id that Shopify writes as a JSON number of up to 19 digits (or,
/// occasionally, as a string). Read as `u64`, never through `f64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RestId(pub(crate) String);

impl<'de> Deserialize<'de> for RestId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer) {
            Ok(Raw::Number(n)) => Ok(Self(n.to_string())),
            Ok(Raw::Text(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                Ok(Self(s))
            }
            _ => Err(serde::de::Error::custom(
                "expected a non-negative integer id (number or digit string)",
            )),
        }
    }
}

/// A payload field that is absent, null or set. Absent and null differ
/// here: every full product payload carries each field the model maps
/// (null when empty), and one the subscription's `includeFields` left out
/// is absent. A product built from a payload missing one would blank that
/// field downstream.
#[derive(Debug, Default)]
pub(crate) enum Field<T> {
    /// Not in the payload.
    #[default]
    Absent,
    /// In the payload: `None` when null.
    Present(Option<T>),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Option::<T>::deserialize(deserializer).map(Self::Present)
    }
}

impl<T> Field<T> {
    fn is_absent(&self) -> bool {
        matches!(self, Self::Absent)
    }

    fn into_option(self) -> Option<T> {
        match self {
            Self::Absent => None,
            Self::Present(v) => v,
        }
    }
}

/// `products/create` and `products/update` payload (the REST product resource).
#[derive(Debug, Deserialize)]
pub(crate) struct RestProduct {
    pub(crate) id: RestId,
    #[serde(default)]
    admin_graphql_api_id: Option<String>,
    /// Absent from a payload trimmed by the subscription's `includeFields`
    /// (see [`RestProduct::trimmed`]), as are `status` and `variants`.
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    handle: Field<String>,
    #[serde(default)]
    body_html: Field<String>,
    #[serde(default)]
    vendor: Field<String>,
    #[serde(default)]
    product_type: Field<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    tags: Field<String>,
    #[serde(default)]
    created_at: Field<DateTime<FixedOffset>>,
    #[serde(default)]
    updated_at: Field<DateTime<FixedOffset>>,
    #[serde(default)]
    category: Option<RestCategory>,
    #[serde(default)]
    options: Field<Vec<RestOption>>,
    #[serde(default)]
    variants: Option<Vec<RestVariant>>,
    /// Newer API versions send `media` beside `images`; older ones
    /// `images` only.
    #[serde(default)]
    media: Field<Vec<RestMedia>>,
    #[serde(default)]
    images: Field<Vec<RestImage>>,
    /// Every variant, by GID (webhooks): longer than `variants` when the
    /// payload holds only the first 100 in full.
    #[serde(default)]
    variant_gids: Option<Vec<serde::de::IgnoredAny>>,
}

impl RestProduct {
    /// Whether the payload lists more variants (`variant_gids`) than it
    /// carries in full (`variants`): Shopify's product webhooks send the
    /// first 100 only.
    ///
    /// Without `variant_gids` (API versions before it, or a payload trimmed
    /// by `includeFields`), 100 variants may be the first 100 of more: the
    /// payload cannot say, so it counts as truncated.
    pub(crate) fn variants_truncated(&self) -> bool {
        let carried = self.variants.as_ref().map_or(0, Vec::len);
        match &self.variant_gids {
            Some(all) => all.len() > carried,
            None => carried >= FULL_VARIANTS_IN_PAYLOAD,
        }
    }

    /// Whether the payload lacks a field that every full product payload
    /// carries (null when empty) and the model maps: a subscription with
    /// `includeFields` trims it. A product built from it would overwrite
    /// the whole one downstream with blanks (no images or tags, say), so
    /// the event only names the product. `title`, `status` and `variants`
    /// count as missing when null too (a product always has them).
    pub(crate) fn trimmed(&self) -> bool {
        self.title.is_none()
            || self.status.is_none()
            || self.handle.is_absent()
            || self.body_html.is_absent()
            || self.vendor.is_absent()
            || self.product_type.is_absent()
            || self.tags.is_absent()
            || self.created_at.is_absent()
            || self.updated_at.is_absent()
            || self.options.is_absent()
            || (self.images.is_absent() && self.media.is_absent())
            || self
                .variants
                .as_ref()
                .is_none_or(|vs| vs.iter().any(RestVariant::trimmed))
    }

    /// Whether the payload holds nothing but the id, which is what a
    /// `products/delete` body looks like: under a create or update topic
    /// (headers are not signed) it is refused, not taken for a trimmed
    /// product. A trimmed payload carries at least one field besides.
    pub(crate) fn only_an_id(&self) -> bool {
        self.admin_graphql_api_id.is_none()
            && self.title.is_none()
            && self.handle.is_absent()
            && self.body_html.is_absent()
            && self.vendor.is_absent()
            && self.product_type.is_absent()
            && self.status.is_none()
            && self.tags.is_absent()
            && self.created_at.is_absent()
            && self.updated_at.is_absent()
            && self.category.is_none()
            && self.options.is_absent()
            && self.variants.is_none()
            && self.media.is_absent()
            && self.images.is_absent()
            && self.variant_gids.is_none()
    }
}

#[derive(Debug, Deserialize)]
struct RestCategory {
    admin_graphql_api_id: String,
    name: String,
}

#[derive(Debug, Deserialize)]
struct RestOption {
    name: String,
    #[serde(default)]
    values: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct RestVariant {
    id: RestId,
    #[serde(default)]
    admin_graphql_api_id: Option<String>,
    #[serde(default)]
    title: Field<String>,
    #[serde(default)]
    sku: Field<String>,
    #[serde(default)]
    barcode: Field<String>,
    #[serde(default)]
    price: Field<String>,
    #[serde(default)]
    compare_at_price: Field<String>,
    #[serde(default)]
    inventory_quantity: Field<i64>,
    #[serde(default)]
    option1: Field<String>,
    #[serde(default)]
    option2: Field<String>,
    #[serde(default)]
    option3: Field<String>,
}

impl RestVariant {
    /// As [`RestProduct::trimmed`], for the variant fields the model maps.
    fn trimmed(&self) -> bool {
        self.title.is_absent()
            || self.sku.is_absent()
            || self.barcode.is_absent()
            || self.price.is_absent()
            || self.compare_at_price.is_absent()
            || self.inventory_quantity.is_absent()
            || self.option1.is_absent()
            || self.option2.is_absent()
            || self.option3.is_absent()
    }
}

#[derive(Debug, Deserialize)]
struct RestMedia {
    id: RestId,
    #[serde(default)]
    media_content_type: Option<String>,
    #[serde(default)]
    alt: Option<String>,
    #[serde(default)]
    preview_image: Option<RestPreview>,
}

#[derive(Debug, Deserialize)]
struct RestPreview {
    /// Absent or null while Shopify still processes the file (an outside
    /// audit sent `{"status":"PROCESSING"}`): such a preview is no image
    /// yet, not a reason to fail the whole payload.
    #[serde(default)]
    src: Option<String>,
    #[serde(default)]
    width: Option<u32>,
    #[serde(default)]
    height: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct RestImage {
    id: RestId,
    src: String,
    #[serde(default)]
    alt: Option<String>,
    #[serde(default)]
    width: Option<u32>,
    #[serde(default)]
    height: Option<u32>,
}

/// The product's images from a REST payload: its `media` entries that are
/// images with a preview (keyed by media id, as GraphQL reads are), else its
/// `images` (keyed by their own ids).
///
/// `images` also when `media` is there but has no image ready: a product
/// created a moment ago has its `media` still `PROCESSING`, without a
/// preview, while `images` already lists the uploaded files. Read from
/// `media` alone, that product went downstream with no images at all, and a
/// consumer that upserts it wiped them until the next update (an outside
/// audit).
fn images_from_rest(media: Option<Vec<RestMedia>>, images: Option<Vec<RestImage>>) -> Vec<Image> {
    let from_media: Vec<Image> = media
        .unwrap_or_default()
        .into_iter()
        .filter(|m| {
            m.media_content_type
                .as_deref()
                .is_none_or(|t| t.eq_ignore_ascii_case("image"))
        })
        .filter_map(|m| {
            let preview = m.preview_image?;
            Some(Image {
                id: Some(m.id.0),
                url: preview.src.filter(|src| !src.trim().is_empty())?,
                alt: non_blank(m.alt),
                width: preview.width,
                height: preview.height,
            })
        })
        .collect();
    if !from_media.is_empty() {
        return from_media;
    }
    images
        .unwrap_or_default()
        .into_iter()
        .map(|i| Image {
            id: Some(i.id.0),
            url: i.src,
            alt: non_blank(i.alt),
            width: i.width,
            height: i.height,
        })
        .collect()
}

/// How many variants a product webhook carries in full; `variant_gids`
/// lists the rest (NOTES §4, "records 101 and higher").
const FULL_VARIANTS_IN_PAYLOAD: usize = 100;

/// `products/delete` payload: just the id.
#[derive(Debug, Deserialize)]
pub(crate) struct RestDeleted {
    pub(crate) id: RestId,
}

/// Maps a REST-shaped product (webhook payload).
pub(crate) fn product_from_rest(
    p: RestProduct,
    raw: serde_json::Value,
    ctx: Context<'_>,
) -> Result<Product, CatalogError> {
    let platform_id = p.id.0;
    let (Some(title), Some(status), Some(variants)) = (p.title, p.status, p.variants) else {
        return Err(CatalogError::Decode {
            path: String::new(),
            message: "a trimmed product payload (no title, status or variants) is not a product"
                .into(),
        });
    };
    let options = p.options.into_option().unwrap_or_default();
    let option_names: Vec<String> = options.iter().map(|o| o.name.clone()).collect();
    let variants = variants
        .into_iter()
        .enumerate()
        .map(|(i, v)| variant_from_rest(v, &option_names, ctx.currency, i))
        .collect::<Result<Vec<_>, _>>()?;
    let images = images_from_rest(p.media.into_option(), p.images.into_option());
    Ok(Product {
        id: Product::unified_id(&PlatformId::SHOPIFY, ctx.store, &platform_id),
        global_id: p
            .admin_graphql_api_id
            .or_else(|| Some(format!("gid://shopify/Product/{platform_id}"))),
        platform_id,
        platform: PlatformId::SHOPIFY,
        store: ctx.store.to_owned(),
        title,
        handle: non_blank(p.handle.into_option()),
        description_html: non_blank(p.body_html.into_option()),
        vendor: non_blank(p.vendor.into_option()),
        product_type: non_blank(p.product_type.into_option()),
        status: ProductStatus::from_platform(&status),
        tags: p
            .tags
            .into_option()
            .as_deref()
            .map(split_tags)
            .unwrap_or_default(),
        categories: p
            .category
            .map(|c| Category {
                id: Some(c.admin_graphql_api_id),
                name: c.name,
                slug: None,
            })
            .into_iter()
            .collect(),
        options: options
            .into_iter()
            .map(|o| ProductOption {
                name: o.name,
                values: o.values,
            })
            .collect(),
        variants,
        images,
        created_at: p.created_at.into_option().map(|t| t.with_timezone(&Utc)),
        updated_at: p.updated_at.into_option().map(|t| t.with_timezone(&Utc)),
        raw,
    })
}

fn variant_from_rest(
    v: RestVariant,
    option_names: &[String],
    currency: &CurrencyCode,
    index: usize,
) -> Result<Variant, CatalogError> {
    let path = format!("variants[{index}]");
    let values = [
        v.option1.into_option(),
        v.option2.into_option(),
        v.option3.into_option(),
    ];
    let options = option_names
        .iter()
        .zip(values)
        .filter_map(|(name, value)| {
            Some(SelectedOption {
                name: name.clone(),
                value: value?,
            })
        })
        .collect();
    Ok(Variant {
        price: money(
            v.price.into_option().as_deref(),
            currency,
            &format!("{path}.price"),
        )?,
        compare_at_price: money(
            v.compare_at_price.into_option().as_deref(),
            currency,
            &format!("{path}.compare_at_price"),
        )?,
        global_id: v
            .admin_graphql_api_id
            .or_else(|| Some(format!("gid://shopify/ProductVariant/{}", v.id.0))),
        id: v.id.0,
        sku: non_blank(v.sku.into_option()),
        title: non_blank(v.title.into_option()),
        barcode: non_blank(v.barcode.into_option()),
        inventory_quantity: v.inventory_quantity.into_option(),
        options,
        weight: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "client")]
    #[test]
    fn gid_parts() {
        assert_eq!(
            numeric_id("gid://shopify/Product/788032119674292922"),
            Some("788032119674292922")
        );
        assert_eq!(numeric_id("gid://shopify/Product/12?x=1"), Some("12"));
        assert_eq!(numeric_id("gid://shopify/Product/"), None);
        assert_eq!(numeric_id("788032119674292922"), None);
        assert_eq!(
            gid_type("gid://shopify/ProductVariant/1"),
            Some("ProductVariant")
        );
    }

    #[test]
    fn rest_ids_are_exact_and_never_floats() {
        let id: RestId = serde_json::from_str("18446744073709551615").unwrap();
        assert_eq!(id.0, "18446744073709551615");
        let id: RestId = serde_json::from_str(r#""788032119674292922""#).unwrap();
        assert_eq!(id.0, "788032119674292922");
        for bad in ["1.5", "-1", r#""12a""#, "7.88032119674292922e17"] {
            assert!(serde_json::from_str::<RestId>(bad).is_err(), "{bad}");
        }
    }
}
