//! Bulk export: `bulkOperationRunQuery`, poll, download the JSONL, put
//! products and their child rows back together.
//!
//! # Reassembly and its memory bound
//!
//! In the JSONL result every object is one line; a variant or media row names
//! its product in `__parentId`. Shopify only promises that a child comes
//! *after* its parent, "not necessarily directly after" (with `groupObjects:
//! false`, the 2026-01 default, which is what we ask for because grouping
//! makes the export slower and more likely to time out).
//!
//! The reader therefore keeps a window of the last `bulk_window` products
//! (default 1000) open. A child row is attached to its parent in the window
//! (searched from the newest, so the common "right after" case is O(1)). A
//! product is emitted, in file order, once `bulk_window` newer products have
//! arrived, or at the end of the file. Memory is bounded by `bulk_window`
//! products with their children plus one line (lines over 16 MiB are refused),
//! whatever the size of the catalog.
//!
//! A child whose parent has already left the window (or never appeared) is an
//! error, not a silent loss: the stream yields [`CatalogError::Decode`] naming
//! the row, and the remedy is a larger window or `bulk_group_objects(true)`
//! (with grouping Shopify writes children directly under their parent, so a
//! window of one product suffices).

use std::collections::VecDeque;
use std::pin::Pin;

use bytes::{Buf, Bytes, BytesMut};
use catalog_core::{CatalogError, CurrencyCode, Product, Result, SkippedProduct};
use futures::stream::{self, BoxStream, Stream, StreamExt};
use serde_json::{Value, json};

use crate::client::{ShopifyClient, transport};
use crate::convert::{Context, gid_type, numeric_id, product_from_graphql};
use crate::graphql::{self, BulkOperationNode, MediaNode, ProductNode, VariantNode, op};

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

impl ShopifyClient {
    /// Exports the whole catalog with a bulk operation and streams the
    /// products, each with all its variants and images.
    ///
    /// Nothing happens until the stream is polled. Then: start the operation
    /// (3 connections, 2 levels of nesting, `groupObjects` as configured),
    /// poll it every `bulk_poll_interval` until `COMPLETED`, download the
    /// result file line by line and reassemble (see the [module docs](crate::bulk)
    /// for the memory bound). `FAILED`, `CANCELED` and `EXPIRED` operations end
    /// the stream with an error; a completed operation without a file (no
    /// products) gives an empty stream. The stream ends after the first error.
    ///
    /// Bulk operations are not rate-limited; only the start and the polls go
    /// through the cost bucket.
    pub fn bulk_export(&self) -> BoxStream<'static, Result<Product>> {
        let client = self.clone();
        stream::once(async move { client.open_export().await })
            .flat_map(|opened| match opened {
                Ok(Some(reader)) => reader.into_stream(),
                Ok(None) => stream::empty().boxed(),
                Err(e) => stream::iter([Err(e)]).boxed(),
            })
            .boxed()
    }

    /// Runs the operation to completion and opens its result file.
    async fn open_export(&self) -> Result<Option<Reader>> {
        let currency = self.currency().await?;
        let opts = self.inner.bulk;
        let vars = json!({ "query": graphql::BULK_PRODUCTS, "groupObjects": opts.group_objects });
        // Not idempotent: a blind retry could start a second operation.
        let data: graphql::RunBulkData = self
            .graphql(op::RUN_BULK, graphql::RUN_BULK, vars, false)
            .await?;
        let payload = data.bulk_operation_run_query;
        if let Some(err) = payload.user_errors.first() {
            return Err(CatalogError::Http {
                status: 200,
                code: err.code.clone(),
                message: format!("bulkOperationRunQuery refused: {}", err.message),
            });
        }
        let mut operation = payload.bulk_operation.ok_or_else(|| CatalogError::Decode {
            path: "data.bulkOperationRunQuery.bulkOperation".into(),
            message: "no operation and no userErrors".into(),
        })?;
        tracing::debug!(id = %operation.id, "bulk export started");
        loop {
            match operation.status.as_str() {
                "COMPLETED" => break,
                "CREATED" | "RUNNING" | "CANCELING" => {}
                _ => return Err(operation_failed(&operation)),
            }
            tokio::time::sleep(opts.poll_interval).await;
            let data: graphql::BulkStatusData = self
                .graphql(
                    op::BULK_STATUS,
                    graphql::BULK_STATUS,
                    json!({ "id": operation.id }),
                    true,
                )
                .await?;
            operation = data.node.ok_or_else(|| {
                CatalogError::NotFound(format!("bulk operation {}", operation.id))
            })?;
        }
        if operation.error_code.is_some() {
            return Err(operation_failed(&operation));
        }
        let Some(url) = operation.url else {
            // COMPLETED without a file: the query matched no object.
            return Ok(None);
        };
        // A signed storage URL: no Shopify token goes there, and the
        // whole-download timeout replaces the API one.
        let mut retries = self.inner.http.retries();
        let response = self
            .inner
            .http
            .send(&mut retries, true, || {
                self.inner
                    .http
                    .client()
                    .get(&url)
                    .timeout(opts.download_timeout)
            })
            .await?;
        if !response.status().is_success() {
            return Err(CatalogError::Http {
                status: response.status().as_u16(),
                code: None,
                message: "bulk result download failed".into(),
            });
        }
        Ok(Some(Reader {
            bytes: response.bytes_stream().boxed(),
            buf: BytesMut::new(),
            line_no: 0,
            eof: false,
            max_line: opts.max_line_bytes,
            assembler: Assembler::new(opts.window),
            store: self.inner.store.clone(),
            currency,
        }))
    }
}

fn operation_failed(op: &BulkOperationNode) -> CatalogError {
    let code = op.error_code.clone();
    let partial = if op.partial_data_url.is_some() {
        " (partial data is available)"
    } else {
        ""
    };
    CatalogError::Http {
        status: 200,
        code: code.clone().or_else(|| Some(op.status.clone())),
        message: format!(
            "bulk operation {} ended {}{}{partial}",
            op.id,
            op.status,
            code.map(|c| format!(" with {c}")).unwrap_or_default()
        ),
    }
}

/// Streams the JSONL result: lines in, whole products out.
struct Reader {
    bytes: ByteStream,
    buf: BytesMut,
    line_no: u64,
    eof: bool,
    max_line: usize,
    assembler: Assembler,
    store: String,
    currency: CurrencyCode,
}

impl Reader {
    fn into_stream(self) -> BoxStream<'static, Result<Product>> {
        stream::unfold(Some(self), |reader| async move {
            let mut reader = reader?;
            match reader.next_product().await {
                Ok(Some(p)) => Some((Ok(p), Some(reader))),
                Ok(None) => None,
                // One product's data: reported in its place, the rest goes on.
                Err(e @ CatalogError::UnreadableProduct { .. }) => Some((Err(e), Some(reader))),
                Err(e) => Some((Err(e), None)),
            }
        })
        .boxed()
    }

    /// The next complete line (without the newline), or `None` at the end.
    async fn next_line(&mut self) -> Result<Option<Bytes>> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let line = self.buf.split_to(pos).freeze();
                self.buf.advance(1);
                self.line_no += 1;
                return Ok(Some(line));
            }
            if self.buf.len() > self.max_line {
                return Err(CatalogError::Decode {
                    path: format!("line {}", self.line_no + 1),
                    message: format!("bulk result line longer than {} bytes", self.max_line),
                });
            }
            if self.eof {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                self.line_no += 1;
                return Ok(Some(self.buf.split().freeze()));
            }
            match self.bytes.next().await {
                Some(chunk) => self.buf.extend_from_slice(&chunk.map_err(transport)?),
                None => self.eof = true,
            }
        }
    }

    async fn next_product(&mut self) -> Result<Option<Product>> {
        loop {
            if let Some(done) = self.assembler.ready() {
                return self.finish(done).map(Some);
            }
            match self.next_line().await? {
                Some(line) => {
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let line_no = self.line_no;
                    let value: Value =
                        catalog_core::json::decode(&line).map_err(|e| at_line(e, line_no))?;
                    self.assembler
                        .push(value, line_no)
                        .map_err(|e| at_line(e, line_no))?;
                }
                None => {
                    return match self.assembler.drain_one() {
                        Some(done) => self.finish(done).map(Some),
                        None => Ok(None),
                    };
                }
            }
        }
    }

    /// The product assembled from its lines; a product whose data cannot
    /// be read is [`CatalogError::UnreadableProduct`].
    fn finish(&self, p: Pending) -> Result<Product> {
        let ctx = Context {
            store: &self.store,
            currency: &self.currency,
        };
        let id = numeric_id(&p.id).unwrap_or(&p.id).to_owned();
        p.node
            .and_then(|node| product_from_graphql(node, p.variants, p.media, p.raw, ctx))
            .map_err(|e| SkippedProduct::from_error(id, &e).map_or(e, SkippedProduct::into_error))
    }
}

fn at_line(err: CatalogError, line: u64) -> CatalogError {
    match err {
        CatalogError::Decode { path, message } => CatalogError::Decode {
            path: if path.is_empty() || path == "." {
                format!("line {line}")
            } else {
                format!("line {line}: {path}")
            },
            message,
        },
        other => other,
    }
}

/// A product whose children may still arrive.
struct Pending {
    /// The product's GID, read on its own: its children find it by it
    /// even when the rest of its row does not decode.
    id: String,
    /// The product, or the first of its rows that did not decode (a field
    /// of the wrong type): that product is skipped, the file goes on.
    node: Result<ProductNode>,
    raw: Value,
    variants: Vec<VariantNode>,
    media: Vec<MediaNode>,
}

/// The bounded reassembly window (see the module docs).
struct Assembler {
    window: usize,
    open: VecDeque<Pending>,
}

impl Assembler {
    fn new(window: usize) -> Self {
        Self {
            window: window.max(1),
            open: VecDeque::new(),
        }
    }

    /// Takes line `line`'s row. A row that does not decode makes its
    /// product unreadable (reported in its place); a product row without a
    /// readable id, or a child without its parent, is an error of the file.
    fn push(&mut self, value: Value, line: u64) -> Result<()> {
        let parent = value.get("__parentId").and_then(Value::as_str);
        let Some(parent) = parent.map(str::to_owned) else {
            let Some(id) = value.get("id").and_then(Value::as_str).map(str::to_owned) else {
                return Err(CatalogError::Decode {
                    path: "id".into(),
                    message: "a product row without an id".into(),
                });
            };
            let node = catalog_core::json::decode_value_ref::<ProductNode>(&value)
                .map_err(|e| at_line(e, line));
            self.open.push_back(Pending {
                id,
                node,
                raw: value,
                variants: Vec::new(),
                media: Vec::new(),
            });
            return Ok(());
        };
        let Some(pending) = self.open.iter_mut().rev().find(|p| p.id == parent) else {
            return Err(CatalogError::Decode {
                path: String::new(),
                message: format!(
                    "child row of {parent} arrived after its parent left the reassembly window \
                     of {} products, or the parent is missing: raise bulk_window or enable \
                     bulk_group_objects",
                    self.window
                ),
            });
        };
        if pending.node.is_err() {
            // Already unreadable: the first failure is the one reported.
            return Ok(());
        }
        let kind = value.get("id").and_then(Value::as_str).and_then(gid_type);
        let decoded = match kind {
            Some("ProductVariant") => {
                catalog_core::json::decode_value(value).map(|v| pending.variants.push(v))
            }
            Some("MediaImage") => {
                catalog_core::json::decode_value(value).map(|m| pending.media.push(m))
            }
            // Other media (video, 3D) come as `{"__parentId": ...}` only.
            _ => Ok(()),
        };
        if let Err(e) = decoded {
            pending.node = Err(at_line(e, line));
        }
        Ok(())
    }

    /// The oldest product once the window is over-full.
    fn ready(&mut self) -> Option<Pending> {
        if self.open.len() > self.window {
            self.open.pop_front()
        } else {
            None
        }
    }

    /// At end of file: the oldest remaining product.
    fn drain_one(&mut self) -> Option<Pending> {
        self.open.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(id: u64) -> Value {
        json!({"id": format!("gid://shopify/Product/{id}"), "title": "t", "status": "ACTIVE"})
    }
    fn variant(id: u64, parent: u64) -> Value {
        json!({"id": format!("gid://shopify/ProductVariant/{id}"), "price": "1.00",
               "__parentId": format!("gid://shopify/Product/{parent}")})
    }

    #[test]
    fn window_holds_products_until_full() {
        let mut a = Assembler::new(2);
        a.push(product(1), 0).unwrap();
        a.push(product(2), 0).unwrap();
        assert!(a.ready().is_none());
        // A late child of product 1, two products later: still in the window.
        a.push(variant(10, 1), 0).unwrap();
        a.push(product(3), 0).unwrap();
        let first = a.ready().unwrap();
        assert_eq!(first.id, "gid://shopify/Product/1");
        assert_eq!(first.variants.len(), 1);
        // Product 1 is gone: its late child is an error, not a silent loss.
        let err = a.push(variant(11, 1), 0).unwrap_err();
        assert!(err.to_string().contains("reassembly window"), "{err}");
        // Non-image media rows are skipped.
        a.push(json!({"__parentId": "gid://shopify/Product/3"}), 0)
            .unwrap();
        assert_eq!(a.drain_one().unwrap().id, "gid://shopify/Product/2");
        assert_eq!(a.drain_one().unwrap().id, "gid://shopify/Product/3");
        assert!(a.drain_one().is_none());
    }

    #[test]
    fn a_row_that_does_not_decode_makes_its_product_unreadable_not_the_file() {
        let mut a = Assembler::new(4);
        a.push(json!({"id": "gid://shopify/Product/1", "title": 5}), 1)
            .unwrap();
        a.push(product(2), 2).unwrap();
        a.push(
            json!({"id": "gid://shopify/ProductVariant/20", "inventoryQuantity": "x",
                   "__parentId": "gid://shopify/Product/2"}),
            3,
        )
        .unwrap();
        a.push(variant(21, 2), 4).unwrap();
        a.push(product(3), 5).unwrap();
        let first = a.drain_one().unwrap();
        assert_eq!(first.id, "gid://shopify/Product/1");
        let err = first.node.err().unwrap().to_string();
        assert!(err.contains("line 1: title"), "{err}");
        let second = a.drain_one().unwrap();
        let err = second.node.err().unwrap().to_string();
        assert!(err.contains("line 3: inventoryQuantity"), "{err}");
        assert!(a.drain_one().unwrap().node.is_ok());
        // A product row without an id cannot be placed: the file's error.
        assert!(a.push(json!({"title": "t"}), 6).is_err());
    }
}
