//! Implements `Catalog` for a toy in-memory platform and streams it, as a new
//! platform crate would (see docs/adding-a-platform.md).
//!
//! Run with `cargo run -p example-custom-platform`.
#![allow(clippy::print_stdout)]

use catalog_core::{
    Capabilities, Catalog, CatalogError, Cursor, Money, Page, PageRequest, PlatformId, Product,
    ProductStatus, Variant, async_trait,
};
use futures::TryStreamExt;

/// A platform whose "API" is a vector of (id, title, price) rows.
#[derive(Debug)]
struct ToyPlatform {
    rows: Vec<(u64, &'static str, &'static str)>,
}

impl ToyPlatform {
    const ID: PlatformId = PlatformId::from_static("toy");

    fn to_product(&self, (id, title, price): (u64, &str, &str)) -> Result<Product, CatalogError> {
        let price = Money::parse(price, "EUR").map_err(|e| CatalogError::Decode {
            path: format!("rows[{id}].price"),
            message: e.to_string(),
        })?;
        let raw =
            serde_json::json!({ "id": id, "title": title, "price": price_text(price.as_ref()) });
        Ok(Product {
            id: Product::unified_id(&Self::ID, "toy-store", &id.to_string()),
            platform_id: id.to_string(),
            global_id: None,
            platform: Self::ID,
            store: "toy-store".into(),
            title: title.into(),
            handle: None,
            description_html: None,
            vendor: None,
            product_type: None,
            status: ProductStatus::Active,
            tags: vec![],
            categories: vec![],
            options: vec![],
            variants: vec![Variant {
                id: id.to_string(),
                global_id: None,
                sku: None,
                title: None,
                barcode: None,
                price,
                compare_at_price: None,
                inventory_quantity: None,
                options: vec![],
                weight: None,
            }],
            images: vec![],
            created_at: None,
            updated_at: None,
            raw,
        })
    }
}

fn price_text(price: Option<&Money>) -> String {
    price.map(|m| m.amount().to_string()).unwrap_or_default()
}

#[async_trait]
impl Catalog for ToyPlatform {
    fn platform(&self) -> PlatformId {
        Self::ID
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::paged(2).with_totals()
    }

    async fn get_product(&self, id: &str) -> catalog_core::Result<Product> {
        let row = self
            .rows
            .iter()
            .find(|(n, _, _)| n.to_string() == id)
            .ok_or_else(|| CatalogError::NotFound(format!("product {id}")))?;
        self.to_product(*row)
    }

    async fn list_page(&self, request: PageRequest) -> catalog_core::Result<Page<Product>> {
        // The cursor is our own state (an offset), encoded opaquely.
        let offset: usize = match &request.cursor {
            Some(cursor) => cursor.decode()?,
            None => 0,
        };
        let limit = request.limit.unwrap_or(2).clamp(1, 2) as usize;
        let end = (offset + limit).min(self.rows.len());
        let items = self.rows[offset.min(end)..end]
            .iter()
            .map(|row| self.to_product(*row))
            .collect::<Result<Vec<_>, _>>()?;
        let next = (end < self.rows.len())
            .then(|| Cursor::encode(&end))
            .transpose()?;
        Ok(Page::new(items, next).with_total(Some(self.rows.len() as u64)))
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> catalog_core::Result<()> {
    let platform = ToyPlatform {
        rows: vec![(1, "Mug", "9.90"), (2, "Cap", "14.50"), (3, "Sticker", "")],
    };
    // Used through the trait object, as the server and tools do.
    let catalog: &dyn Catalog = &platform;
    let products: Vec<Product> = catalog.stream_products().try_collect().await?;
    for p in &products {
        let price = p.variants.first().and_then(|v| v.price.as_ref());
        println!(
            "{} {:<8} {}",
            p.id,
            p.title,
            price.map_or("no price".into(), Money::to_string)
        );
    }
    Ok(())
}
