//! `catalog products get|list`.

use catalog_core::{PageRequest, Product};

use crate::config::{Client, Store};
use crate::error::CliError;
use crate::output;

/// `products get ID`.
pub(crate) async fn get(
    store: &Store,
    client: &Client,
    id: &str,
    json: bool,
) -> Result<(), CliError> {
    let product = client
        .catalog()
        .get_product(id)
        .await
        .map_err(|e| CliError::from_catalog(store, &e))?;
    if json {
        output::print_json(&product)
    } else {
        output::print(&output::product_detail(&product))
    }
}

/// `products list [--limit N]`: the first `limit` products, in the
/// platform's listing order, fetched page by page.
pub(crate) async fn list(
    store: &Store,
    client: &Client,
    limit: u32,
    json: bool,
) -> Result<(), CliError> {
    let catalog = client.catalog();
    let max_page = catalog.capabilities().max_page_size.max(1);
    let mut products: Vec<Product> = Vec::new();
    let mut request = PageRequest::first();
    let mut total = None;
    while (products.len() as u64) < u64::from(limit) {
        let remaining = limit - u32::try_from(products.len()).unwrap_or(u32::MAX);
        request.limit = Some(remaining.min(max_page));
        let page = catalog
            .list_page(request.clone())
            .await
            .map_err(|e| CliError::from_catalog(store, &e))?;
        total = total.or(page.total);
        let next = page.next.clone();
        let empty = page.items.is_empty() && page.skipped.is_empty();
        for skipped in page.skipped {
            // Named, not fatal: the rest of the listing is readable.
            eprintln!("warning: {}", skipped.into_error());
        }
        products.extend(page.items);
        match next {
            Some(cursor) if !empty => request.cursor = Some(cursor),
            _ => break,
        }
    }
    products.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    if json {
        return output::print_json(&products);
    }
    let mut text = output::products_table(&products);
    let shown = products.len();
    let summary = match total {
        Some(t) => format!("{shown} of {t} products ({})\n", store.name),
        None => format!("{shown} products ({})\n", store.name),
    };
    text.push_str(&summary);
    output::print(&text)
}
