//! The catalog trait every platform client implements.

use std::fmt::Debug;

use futures::stream::{self, BoxStream, StreamExt};

use crate::{CatalogError, Cursor, Page, PageRequest, PlatformId, Product, Result};

/// Reads a store's catalog.
///
/// Object safe: the server and tools hold `Arc<dyn Catalog>` chosen at run time.
/// Implementations retry what is transient (throttling, 5xx) themselves; an
/// error reaching the caller means the retry budget is spent or the error is final.
#[async_trait::async_trait]
pub trait Catalog: Send + Sync + Debug {
    /// Which platform this is.
    fn platform(&self) -> PlatformId;

    /// What this client supports.
    fn capabilities(&self) -> Capabilities;

    /// Fetches one product by the platform's id (numeric id, or a global id
    /// where the platform has them).
    ///
    /// # Errors
    /// [`CatalogError::NotFound`] when the product does not exist, or any other
    /// [`CatalogError`] when the call fails.
    async fn get_product(&self, id: &str) -> Result<Product>;

    /// Fetches one page of products.
    ///
    /// # Errors
    /// Any [`CatalogError`]; a cursor from another listing gives
    /// [`CatalogError::Configuration`].
    async fn list_page(&self, request: PageRequest) -> Result<Page<Product>>;

    /// Streams every product, fetching pages lazily.
    ///
    /// The default walks [`Catalog::list_page`] with its cursors; platforms
    /// override it with something faster (concurrent pages, bulk export).
    /// Empty pages that carry a next cursor are followed. A product whose
    /// data cannot be read is an [`CatalogError::UnreadableProduct`] item in
    /// its place, and the stream goes on. It ends after any other error, and
    /// also stops with an error, without the
    /// suspect page's products, if the platform hands back a cursor it gave
    /// before, or 16 empty pages in a row, so a misbehaving server cannot make
    /// it loop forever or repeat products.
    fn stream_products(&self) -> BoxStream<'_, Result<Product>> {
        stream_pages(move |request| self.list_page(request), None)
    }
}

/// How many empty pages with a next cursor [`stream_pages`] follows in a row
/// before it gives up.
const MAX_EMPTY_PAGES_IN_A_ROW: u32 = 16;

/// Builds a product stream from a page-fetching function, following cursors
/// until the last page. Used by [`Catalog::stream_products`]'s default and
/// available to platform crates.
pub fn stream_pages<'a, F, Fut>(fetch: F, limit: Option<u32>) -> BoxStream<'a, Result<Product>>
where
    F: Fn(PageRequest) -> Fut + Send + Sync + 'a,
    Fut: std::future::Future<Output = Result<Page<Product>>> + Send + 'a,
{
    struct State<F> {
        fetch: F,
        next: Option<Option<Cursor>>,
        seen: std::collections::HashSet<Cursor>,
        empty_in_a_row: u32,
        limit: Option<u32>,
    }
    let state = State {
        fetch,
        next: Some(None),
        seen: std::collections::HashSet::new(),
        empty_in_a_row: 0,
        limit,
    };
    stream::unfold(state, |mut st| async move {
        let cursor = st.next.take()?;
        let mut request = PageRequest::first();
        request.limit = st.limit;
        request.cursor = cursor;
        let page = match (st.fetch)(request).await {
            Ok(page) => page,
            Err(e) => return Some((stream::iter(vec![Err(e)]), st)),
        };
        let mut items: Vec<Result<Product>> = Vec::with_capacity(page.items.len() + 1);
        match page.next {
            // A cursor seen before means the platform is walking in a circle:
            // this page's products were (most likely) emitted already, so
            // only the error is, and the stream ends.
            Some(next) if st.seen.contains(&next) => items.push(Err(CatalogError::Decode {
                path: "next".into(),
                message: format!("the platform repeated cursor {next}"),
            })),
            Some(next) => {
                // An empty page with a next cursor is legal (a filtered or
                // changing listing) and the rest must still be read, but a
                // server handing out fresh cursors for empty pages forever
                // must not make the stream spin.
                st.empty_in_a_row = if page.items.is_empty() && page.skipped.is_empty() {
                    st.empty_in_a_row + 1
                } else {
                    0
                };
                if st.empty_in_a_row > MAX_EMPTY_PAGES_IN_A_ROW {
                    items.push(Err(CatalogError::Decode {
                        path: "next".into(),
                        message: format!(
                            "the platform sent {} empty pages in a row, each with a next cursor",
                            st.empty_in_a_row
                        ),
                    }));
                } else {
                    st.seen.insert(next.clone());
                    st.next = Some(Some(next));
                    items.extend(page.items.into_iter().map(Ok));
                    items.extend(page.skipped.into_iter().map(|s| Err(s.into_error())));
                }
            }
            None => {
                items.extend(page.items.into_iter().map(Ok));
                items.extend(page.skipped.into_iter().map(|s| Err(s.into_error())));
            }
        }
        Some((stream::iter(items), st))
    })
    .flatten()
    .boxed()
}

/// What a platform client supports, for tools that adapt to it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// The largest page size the platform accepts.
    pub max_page_size: u32,
    /// Whether pages report the total number of products.
    pub reports_total: bool,
    /// Whether `stream_products` uses a server-side bulk export.
    pub bulk_export: bool,
    /// Whether `stream_products` fetches several pages at once.
    pub concurrent_pages: bool,
    /// Whether product ids can also be given as global ids.
    pub global_ids: bool,
}

impl Capabilities {
    /// Capabilities of a plain paged API with the given maximum page size.
    pub fn paged(max_page_size: u32) -> Self {
        Self {
            max_page_size,
            reports_total: false,
            bulk_export: false,
            concurrent_pages: false,
            global_ids: false,
        }
    }

    /// Marks that pages report totals.
    #[must_use]
    pub fn with_totals(mut self) -> Self {
        self.reports_total = true;
        self
    }

    /// Marks that streaming uses a bulk export.
    #[must_use]
    pub fn with_bulk_export(mut self) -> Self {
        self.bulk_export = true;
        self
    }

    /// Marks that streaming fetches pages concurrently.
    #[must_use]
    pub fn with_concurrent_pages(mut self) -> Self {
        self.concurrent_pages = true;
        self
    }

    /// Marks that global ids are accepted.
    #[must_use]
    pub fn with_global_ids(mut self) -> Self {
        self.global_ids = true;
        self
    }
}
