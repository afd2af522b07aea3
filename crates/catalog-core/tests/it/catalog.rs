use std::sync::Mutex;

use catalog_core::{
    Capabilities, Catalog, CatalogError, Cursor, Page, PageRequest, PlatformId, Product,
    ProductStatus, SkippedProduct, async_trait,
};
use futures::{StreamExt, TryStreamExt};

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

/// A paged catalog of `total` products whose cursors are offsets (and the
/// request number, so that every cursor differs), with optional faults:
/// repeat the first cursor forever; answer the first `empty_pages` requests
/// with an empty page and a fresh cursor to the same place.
#[derive(Debug)]
struct Paged {
    total: u32,
    repeat_cursor: bool,
    empty_pages: usize,
    /// Products whose data cannot be read: left out of their page, named
    /// in its `skipped`.
    unreadable: Vec<u32>,
    requests: Mutex<Vec<PageRequest>>,
}

impl Paged {
    fn new(total: u32) -> Self {
        Self {
            total,
            repeat_cursor: false,
            empty_pages: 0,
            unreadable: vec![],
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
        let n = {
            let mut requests = self.requests.lock().unwrap();
            requests.push(request.clone());
            requests.len()
        };
        let start: u32 = match &request.cursor {
            Some(c) => c.decode::<(u32, usize)>()?.0,
            None => 0,
        };
        if n <= self.empty_pages {
            return Ok(Page::new(vec![], Some(Cursor::encode(&(start, n))?)));
        }
        let limit = request.limit.unwrap_or(3).min(10);
        let end = (start + limit).min(self.total);
        let items = (start..end)
            .filter(|n| !self.unreadable.contains(n))
            .map(product)
            .collect();
        let skipped: Vec<SkippedProduct> = (start..end)
            .filter(|n| self.unreadable.contains(n))
            .filter_map(|n| {
                SkippedProduct::from_error(
                    n.to_string(),
                    &CatalogError::Decode {
                        path: "price".into(),
                        message: "not a number".into(),
                    },
                )
            })
            .collect();
        let next = if self.repeat_cursor {
            Some(Cursor::encode(&(limit, 0))?)
        } else if end < self.total {
            Some(Cursor::encode(&(end, n))?)
        } else {
            None
        };
        Ok(Page::new(items, next)
            .with_total(Some(u64::from(self.total)))
            .with_skipped(skipped))
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
    // The first page (0, 1, 2), then the same cursor again: the second page
    // (3, 4, 5 here; the same page again from a server that ignores cursors)
    // is suspect, so only the error follows. No endless loop, no repeats.
    let ids: Vec<&str> = results
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|p| p.platform_id.as_str())
        .collect();
    assert_eq!(ids, ["0", "1", "2"]);
    assert_eq!(results.len(), 4);
    match results.last() {
        Some(Err(CatalogError::Decode { path, message })) => {
            assert_eq!(path, "next");
            assert!(message.contains("repeated cursor"), "{message}");
        }
        other => panic!("expected the repeated-cursor error, got {other:?}"),
    }
    assert_eq!(catalog.requests.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn empty_pages_with_a_next_cursor_are_followed() {
    let mut catalog = Paged::new(7);
    catalog.empty_pages = 3;
    let all: Vec<Product> = catalog.stream_products().try_collect().await.unwrap();
    let ids: Vec<String> = all.iter().map(|p| p.platform_id.clone()).collect();
    assert_eq!(ids, (0..7).map(|n| n.to_string()).collect::<Vec<_>>());
    // Three empty pages, then 3 + 3 + 1.
    assert_eq!(catalog.requests.lock().unwrap().len(), 6);
}

#[tokio::test]
async fn endless_empty_pages_stop_with_an_error() {
    let mut catalog = Paged::new(7);
    catalog.empty_pages = usize::MAX;
    let results: Vec<_> = futures::StreamExt::collect::<Vec<_>>(catalog.stream_products()).await;
    assert_eq!(results.len(), 1, "only the error: {results:?}");
    assert!(
        matches!(&results[0], Err(CatalogError::Decode { message, .. }) if message.contains("17 empty pages")),
        "{results:?}"
    );
    assert_eq!(catalog.requests.lock().unwrap().len(), 17);
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

/// One product that cannot be read is an `UnreadableProduct` item in its
/// place; the stream goes on with the rest, including a page that held
/// nothing else.
#[tokio::test]
async fn an_unreadable_product_is_an_error_item_and_the_stream_goes_on() {
    let mut catalog = Paged::new(10);
    // Product 4 alone on its page would make it empty: not an empty page.
    catalog.unreadable = vec![1, 3, 4, 5];
    let items: Vec<_> = catalog.stream_products().collect().await;
    let read: Vec<String> = items
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|p| p.platform_id.clone()))
        .collect();
    assert_eq!(read, ["0", "2", "6", "7", "8", "9"]);
    let skipped: Vec<String> = items
        .iter()
        .filter_map(|r| match r {
            Err(CatalogError::UnreadableProduct { id, path, .. }) => {
                assert_eq!(path, "price");
                Some(id.clone())
            }
            Err(other) => panic!("{other}"),
            Ok(_) => None,
        })
        .collect();
    assert_eq!(skipped, ["1", "3", "4", "5"]);
    let err = CatalogError::UnreadableProduct {
        id: "3".into(),
        path: "price".into(),
        message: "not a number".into(),
    };
    assert_eq!(
        err.to_string(),
        "product 3 skipped: could not decode it at `price`: not a number"
    );
    // Anything but a decoding failure is not a product's to skip.
    assert!(SkippedProduct::from_error("1", &CatalogError::Configuration("x".into())).is_none());
}
