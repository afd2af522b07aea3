//! GraphQL documents and their wire types.
//!
//! Operation names double as keys for the cost estimates of the throttle (see
//! [`crate::throttle`]), so each document has one fixed name.

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// Fields read for every product (paged reads). Bulk export uses the same
/// fields, spelt out without fragments in [`BULK_PRODUCTS`].
const PRODUCT_FRAGMENTS: &str = r"
fragment ProductFields on Product {
  id title handle descriptionHtml vendor productType status tags createdAt updatedAt
  category { id name }
  options { name optionValues { name } }
  variants(first: $variantsFirst) { pageInfo { hasNextPage endCursor } nodes { ...VariantFields } }
  media(first: $mediaFirst) { pageInfo { hasNextPage endCursor } nodes { ...MediaFields } }
}
fragment VariantFields on ProductVariant {
  id title sku barcode price compareAtPrice inventoryQuantity selectedOptions { name value }
}
fragment MediaFields on Media {
  ... on MediaImage { id image { url altText width height } }
}
";

/// Operation names (also the throttle's estimate keys).
pub(crate) mod op {
    pub(crate) const SHOP_CURRENCY: &str = "ShopCurrency";
    pub(crate) const GET_PRODUCT: &str = "GetProduct";
    pub(crate) const LIST_PRODUCTS: &str = "ListProducts";
    pub(crate) const PRODUCT_VARIANTS: &str = "ProductVariants";
    pub(crate) const PRODUCT_MEDIA: &str = "ProductMedia";
    pub(crate) const RUN_BULK: &str = "RunBulkProductExport";
    pub(crate) const BULK_STATUS: &str = "BulkOperationStatus";
}

pub(crate) const SHOP_CURRENCY: &str = "query ShopCurrency { shop { currencyCode } }";

pub(crate) fn get_product() -> String {
    format!(
        "query GetProduct($id: ID!, $variantsFirst: Int!, $mediaFirst: Int!) {{\n  product(id: $id) {{ ...ProductFields }}\n}}\n{PRODUCT_FRAGMENTS}"
    )
}

pub(crate) fn list_products() -> String {
    format!(
        "query ListProducts($first: Int!, $after: String, $variantsFirst: Int!, $mediaFirst: Int!) {{\n  products(first: $first, after: $after, sortKey: ID) {{\n    pageInfo {{ hasNextPage endCursor }}\n    nodes {{ ...ProductFields }}\n  }}\n}}\n{PRODUCT_FRAGMENTS}"
    )
}

pub(crate) const PRODUCT_VARIANTS: &str = r"query ProductVariants($id: ID!, $first: Int!, $after: String) {
  product(id: $id) {
    variants(first: $first, after: $after) {
      pageInfo { hasNextPage endCursor }
      nodes { id title sku barcode price compareAtPrice inventoryQuantity selectedOptions { name value } }
    }
  }
}";

pub(crate) const PRODUCT_MEDIA: &str = r"query ProductMedia($id: ID!, $first: Int!, $after: String) {
  product(id: $id) {
    media(first: $first, after: $after) {
      pageInfo { hasNextPage endCursor }
      nodes { ... on MediaImage { id image { url altText width height } } }
    }
  }
}";

pub(crate) const RUN_BULK: &str = r"mutation RunBulkProductExport($query: String!, $groupObjects: Boolean!) {
  bulkOperationRunQuery(query: $query, groupObjects: $groupObjects) {
    bulkOperation { id status }
    userErrors { field message code }
  }
}";

pub(crate) const BULK_STATUS: &str = r"query BulkOperationStatus($id: ID!) {
  node(id: $id) {
    ... on BulkOperation { id status errorCode objectCount url partialDataUrl }
  }
}";

/// The bulk query: 3 connections (products, variants, media), 2 levels of
/// nesting, inside the 2026-01 limits of 5 connections and 2 levels.
pub(crate) const BULK_PRODUCTS: &str = r"{
  products {
    edges { node {
      id title handle descriptionHtml vendor productType status tags createdAt updatedAt
      category { id name }
      options { name optionValues { name } }
      variants { edges { node {
        id title sku barcode price compareAtPrice inventoryQuantity selectedOptions { name value }
      } } }
      media { edges { node {
        ... on MediaImage { id image { url altText width height } }
      } } }
    } }
  }
}";

// ---- wire types -------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PageInfo {
    pub(crate) has_next_page: bool,
    #[serde(default)]
    pub(crate) end_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Connection<T> {
    #[serde(default)]
    pub(crate) page_info: Option<PageInfo>,
    pub(crate) nodes: Vec<T>,
}

impl<T> Connection<T> {
    /// The cursor to continue from, when there is more.
    ///
    /// # Errors
    /// [`CatalogError::Decode`] when Shopify says there is more but gives no
    /// cursor: reading on is impossible, and stopping would cut the list
    /// short without a word.
    pub(crate) fn next_cursor(&self) -> Result<Option<&str>, catalog_core::CatalogError> {
        match &self.page_info {
            Some(p) if p.has_next_page => p.end_cursor.as_deref().map(Some).ok_or_else(|| {
                catalog_core::CatalogError::Decode {
                    path: "pageInfo.endCursor".into(),
                    message: "hasNextPage is true but endCursor is null".into(),
                }
            }),
            _ => Ok(None),
        }
    }
}

/// A product node (paged read) or a product line (bulk export, where the
/// connections are absent and come as child lines instead).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProductNode {
    pub(crate) id: String,
    pub(crate) title: String,
    #[serde(default)]
    pub(crate) handle: Option<String>,
    #[serde(default)]
    pub(crate) description_html: Option<String>,
    #[serde(default)]
    pub(crate) vendor: Option<String>,
    #[serde(default)]
    pub(crate) product_type: Option<String>,
    pub(crate) status: String,
    #[serde(default)]
    pub(crate) tags: Vec<String>,
    // `DateTime!` in the schema; tolerated as null like the webhook's `created_at`.
    #[serde(default)]
    pub(crate) created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub(crate) updated_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub(crate) category: Option<CategoryNode>,
    #[serde(default)]
    pub(crate) options: Vec<OptionNode>,
    #[serde(default)]
    pub(crate) variants: Option<Connection<VariantNode>>,
    #[serde(default)]
    pub(crate) media: Option<Connection<MediaNode>>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct CategoryNode {
    pub(crate) id: String,
    pub(crate) name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OptionNode {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) option_values: Vec<NameNode>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct NameNode {
    pub(crate) name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct VariantNode {
    pub(crate) id: String,
    #[serde(default)]
    pub(crate) title: Option<String>,
    #[serde(default)]
    pub(crate) sku: Option<String>,
    #[serde(default)]
    pub(crate) barcode: Option<String>,
    #[serde(default)]
    pub(crate) price: Option<String>,
    #[serde(default)]
    pub(crate) compare_at_price: Option<String>,
    #[serde(default)]
    pub(crate) inventory_quantity: Option<i64>,
    #[serde(default)]
    pub(crate) selected_options: Vec<SelectedOptionNode>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct SelectedOptionNode {
    pub(crate) name: String,
    pub(crate) value: String,
}

/// A media node; only `MediaImage` carries fields (videos and 3D models come
/// back as `{}` and are skipped).
#[derive(Debug, Deserialize)]
pub(crate) struct MediaNode {
    #[serde(default)]
    pub(crate) id: Option<String>,
    #[serde(default)]
    pub(crate) image: Option<ImageNode>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ImageNode {
    pub(crate) url: String,
    #[serde(default)]
    pub(crate) alt_text: Option<String>,
    #[serde(default)]
    pub(crate) width: Option<u32>,
    #[serde(default)]
    pub(crate) height: Option<u32>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ProductData {
    pub(crate) product: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ProductsData {
    pub(crate) products: ProductsConnection,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ProductsConnection {
    pub(crate) page_info: PageInfo,
    pub(crate) nodes: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct VariantsData {
    pub(crate) product: Option<VariantsProduct>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct VariantsProduct {
    /// Decoded one by one (see `ShopifyClient::rest_of_variants`): a node
    /// that does not decode is its product's data, the page is Shopify's.
    pub(crate) variants: Connection<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct MediaData {
    pub(crate) product: Option<MediaProduct>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct MediaProduct {
    /// Decoded one by one, as the variants.
    pub(crate) media: Connection<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ShopData {
    pub(crate) shop: ShopNode,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ShopNode {
    pub(crate) currency_code: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RunBulkData {
    pub(crate) bulk_operation_run_query: RunBulkPayload,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RunBulkPayload {
    #[serde(default)]
    pub(crate) bulk_operation: Option<BulkOperationNode>,
    #[serde(default)]
    pub(crate) user_errors: Vec<UserError>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct UserError {
    #[serde(default)]
    pub(crate) message: String,
    #[serde(default)]
    pub(crate) code: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct BulkStatusData {
    pub(crate) node: Option<BulkOperationNode>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BulkOperationNode {
    pub(crate) id: String,
    pub(crate) status: String,
    #[serde(default)]
    pub(crate) error_code: Option<String>,
    #[serde(default)]
    pub(crate) url: Option<String>,
    #[serde(default)]
    pub(crate) partial_data_url: Option<String>,
}

/// One entry of a GraphQL `errors` array.
#[derive(Debug, Deserialize)]
pub(crate) struct GraphqlError {
    #[serde(default)]
    pub(crate) message: String,
    #[serde(default)]
    pub(crate) extensions: Option<GraphqlErrorExtensions>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct GraphqlErrorExtensions {
    #[serde(default)]
    pub(crate) code: Option<String>,
    /// With `MAX_COST_EXCEEDED`, the query's cost (`"cost": 1190,
    /// "maxCost": 1000`); read leniently, as it only sizes a retry.
    #[serde(default)]
    pub(crate) cost: Option<serde_json::Value>,
}

impl GraphqlError {
    pub(crate) fn code(&self) -> Option<&str> {
        self.extensions.as_ref()?.code.as_deref()
    }

    /// The cost in the error's extensions, when it is a number.
    pub(crate) fn cost(&self) -> Option<f64> {
        self.extensions.as_ref()?.cost.as_ref()?.as_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(page_info: &serde_json::Value) -> Connection<serde_json::Value> {
        serde_json::from_value(serde_json::json!({ "pageInfo": page_info, "nodes": [] })).unwrap()
    }

    #[test]
    fn more_pages_without_a_cursor_is_an_error_not_the_end() {
        let more = connection(&serde_json::json!({ "hasNextPage": true, "endCursor": "c2" }));
        assert_eq!(more.next_cursor().unwrap(), Some("c2"));
        let last = connection(&serde_json::json!({ "hasNextPage": false, "endCursor": null }));
        assert_eq!(last.next_cursor().unwrap(), None);
        let broken = connection(&serde_json::json!({ "hasNextPage": true, "endCursor": null }));
        let err = broken.next_cursor().unwrap_err().to_string();
        assert!(err.contains("endCursor"), "{err}");
    }
}
