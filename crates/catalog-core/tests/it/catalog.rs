use std::sync::Mutex;

use catalog_core::{
    Capabilities, Catalog, CatalogError, Cursor, Page, PageRequest, PlatformId, Product,
    ProductStatus, async_trait,
};
use futures::TryStreamExt;

fn product(n: u32) -> Product {
    Product {
        id: Product::unified_id(&PlatformId::from_static("fake"), "store", &n.to_string()),
        platform_id: n.to_string(),
        global_id: None,
        platform: PlatformId::from_static("fake"),
        store: "store".into(),
        title: format!("Product {n}"),
        handle: None,
        description_html: None,
        vendor: None,
        product_type: None,
        status: ProductStatus::Active,
        tags: vec![],
        categories: vec![],
        options: vec![],
        variants: vec![],
        images: vec![],
        created_at: None,
        updated_at: None,
        raw: serde_json::Value::Null,
    }
}

/// A paged catalog of `total` products whose cursors are offsets, with an
/// optional fault: repeat the first cursor forever.
#[derive(Debug)]
struct Paged {
    total: u32,
    repeat_cursor: bool,
    requests: Mutex<Vec<PageRequest>>,
}

impl Paged {
    fn new(total: u32) -> Self {
        Self {
            total,
            repeat_cursor: false,
            requests: Mutex::new(vec![]),
        }
    }
}

#[async_trait]
impl Catalog for Paged {
    fn platform(&self) -> PlatformId {
        PlatformId::from_static("fake")
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities::paged(10)
    }
    async fn get_product(&self, id: &str) -> catalog_core::Result<Product> {
        id.parse::<u32>()
            .ok()
            .filter(|n| *n < self.total)
            .map(product)
            .ok_or_else(|| CatalogError::NotFound(id.to_owned()))
    }
    async fn list_page(&self, request: PageRequest) -> catalog_core::Result<Page<Product>> {
        self.requests.lock().unwrap().push(request.clone());
        let start: u32 = match &request.cursor {
            Some(c) => c.decode()?,
            None => 0,
        };
        let limit = request.limit.unwrap_or(3).min(10);
        let end = (start + limit).min(self.total);
        let items = (start..end).map(product).collect();
        let next = if self.repeat_cursor {
            Some(Cursor::encode(&limit)?)
        } else if end < self.total {
            Some(Cursor::encode(&end)?)
        } else {
            None
        };
        Ok(Page::new(items, next).with_total(Some(u64::from(self.total))))
    }
}

#[tokio::test]
async fn default_stream_walks_every_page_once() {
    let catalog = Paged::new(10);
    let dyn_catalog: &dyn Catalog = &catalog;
    let all: Vec<Product> = dyn_catalog.stream_products().try_collect().await.unwrap();
    let ids: Vec<String> = all.iter().map(|p| p.platform_id.clone()).collect();
    assert_eq!(ids, (0..10).map(|n| n.to_string()).collect::<Vec<_>>());
    // 3 + 3 + 3 + 1: four requests, the first without a cursor.
    let requests = catalog.requests.lock().unwrap();
    assert_eq!(requests.len(), 4);
    assert!(requests[0].cursor.is_none());
}

#[tokio::test]
async fn repeated_cursor_stops_with_an_error() {
    let mut catalog = Paged::new(100);
    catalog.repeat_cursor = true;
    let results: Vec<_> = futures::StreamExt::collect::<Vec<_>>(catalog.stream_products()).await;
    // First page (3) + second page (3) and then the error: no endless loop.
    let errors = results.iter().filter(|r| r.is_err()).count();
    assert_eq!(errors, 1);
    assert!(results.last().unwrap().is_err());
    assert!(catalog.requests.lock().unwrap().len() <= 3);
}

#[tokio::test]
async fn pages_iterate_and_cursors_reject_garbage() {
    let catalog = Paged::new(5);
    let page = catalog
        .list_page(PageRequest::first().with_limit(2))
        .await
        .unwrap();
    assert_eq!(page.total, Some(5));
    let next = page.next.clone().unwrap();
    assert_eq!(page.into_iter().count(), 2);
    let second = catalog
        .list_page(PageRequest::first().after(next))
        .await
        .unwrap();
    assert_eq!(second.items[0].platform_id, "2");
    let err = catalog
        .list_page(PageRequest::first().after(Cursor::new("%%%")))
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogError::Configuration(_)));
    assert!(matches!(
        catalog.get_product("99").await,
        Err(CatalogError::NotFound(_))
    ));
}
