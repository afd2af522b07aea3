//! `catalog export --out FILE.jsonl`: the whole catalog as JSON lines.
//!
//! Products are written one whole line at a time into a buffered file as the
//! stream yields them, so memory stays constant whatever the catalog size.
//! On Ctrl-C (and on an error part-way) the buffer is flushed, so the file
//! holds every product read so far, each on a whole line. The file is
//! created with the first product: before that an earlier export in it is
//! left as it was.

use std::fs::File;
use std::io::{BufWriter, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use catalog_core::{CatalogError, PageRequest, Product};
use futures::StreamExt as _;
use futures::stream::BoxStream;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::config::{Client, Store};
use crate::error::{CliError, Kind};

/// How to read the catalog.
#[derive(Debug, Clone)]
pub(crate) struct ExportOptions {
    /// Where to write.
    pub(crate) out: PathBuf,
    /// Shopify: use paged reads even though bulk export is available.
    pub(crate) paged: bool,
}

enum Mode {
    /// A Shopify bulk export whose first product has not arrived yet: an
    /// error now means "bulk is unavailable" and we fall back to pages.
    BulkStarting,
    /// Reading.
    Streaming,
}

/// Runs the export.
pub(crate) async fn export(
    store: &Store,
    client: &Client,
    opts: &ExportOptions,
) -> Result<(), CliError> {
    let catalog = client.catalog();
    // Listened to from the start: Ctrl-C while the first request waits (a
    // slow store) says what became of the file, as it does later.
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    // The total, where the platform reports one (one small page); this also
    // checks the credentials before the output file is created.
    let total = if catalog.capabilities().reports_total {
        let first = catalog.list_page(PageRequest::first().with_limit(1));
        tokio::select! {
            biased;
            _ = &mut ctrl_c => {
                return Err(CliError::new(
                    Kind::Interrupted,
                    format!(
                        "interrupted before the store answered: {} was left as it was",
                        opts.out.display()
                    ),
                ));
            }
            page = first => page.map_err(|e| CliError::from_catalog(store, &e))?.total,
        }
    } else {
        None
    };

    let mut out = Output {
        path: &opts.out,
        file: None,
    };
    let bar = progress_bar(total);

    let (mut mode, mut stream): (Mode, BoxStream<'_, catalog_core::Result<Product>>) = match client
    {
        Client::Shopify(shopify) if !opts.paged => {
            bar.set_message("waiting for Shopify's bulk export…");
            (Mode::BulkStarting, shopify.bulk_export())
        }
        _ => (Mode::Streaming, catalog.stream_products()),
    };

    let started = Instant::now();
    let mut written: u64 = 0;
    let mut skipped: Vec<String> = Vec::new();
    let mut line = Vec::with_capacity(8 * 1024);
    loop {
        let item = tokio::select! {
            biased;
            _ = &mut ctrl_c => {
                bar.finish_and_clear();
                out.finish()?;
                return Err(CliError::new(
                    Kind::Interrupted,
                    if out.file.is_some() {
                        format!(
                            "interrupted: {}, each on a whole line; run the export again for the rest",
                            out.state(written)
                        )
                    } else {
                        format!("interrupted before any product arrived: {}", out.state(written))
                    },
                ));
            }
            item = stream.next() => item,
        };
        match item {
            None => break,
            Some(Ok(product)) => {
                if matches!(mode, Mode::BulkStarting) {
                    mode = Mode::Streaming;
                    bar.set_message("");
                }
                line.clear();
                serde_json::to_writer(&mut line, &product).map_err(|e| {
                    CliError::new(
                        Kind::Other,
                        format!("cannot encode product {}: {e}", product.id),
                    )
                })?;
                line.push(b'\n');
                out.write(&line)?;
                written += 1;
                bar.inc(1);
            }
            // One product's data: named, left out, and the export goes on.
            Some(Err(e @ CatalogError::UnreadableProduct { .. })) => {
                if let CatalogError::UnreadableProduct { id, .. } = &e {
                    skipped.push(id.clone());
                }
                bar.suspend(|| eprintln!("warning: {e}"));
            }
            Some(Err(e)) if matches!(mode, Mode::BulkStarting) && bulk_fallback(&e) => {
                mode = Mode::Streaming;
                bar.suspend(|| {
                    eprintln!("note: Shopify bulk export unavailable ({e}); reading pages instead");
                });
                bar.set_message("");
                stream = catalog.stream_products();
            }
            Some(Err(e)) => {
                bar.finish_and_clear();
                out.finish()?;
                let mut err = CliError::from_catalog(store, &e);
                err.message
                    .push_str(&format!(" (export stopped: {})", out.state(written)));
                return Err(err);
            }
        }
    }
    bar.finish_and_clear();
    // An empty catalog is an empty file.
    out.open()?;
    out.finish()?;
    let secs = started.elapsed().as_secs_f64();
    let rate = if secs > 0.0 {
        written as f64 / secs
    } else {
        0.0
    };
    eprintln!(
        "exported {written} products from {} to {} in {secs:.1}s ({rate:.0} products/s)",
        store.name,
        opts.out.display()
    );
    if skipped.is_empty() {
        return Ok(());
    }
    // The file is whole but for these: a script must not take it for the
    // complete catalog.
    let shown: Vec<&str> = skipped.iter().take(10).map(String::as_str).collect();
    Err(CliError::new(
        Kind::Partial,
        format!(
            "{} unreadable product{} left out of {} (warnings above): {}{}",
            skipped.len(),
            if skipped.len() == 1 { " was" } else { "s were" },
            opts.out.display(),
            shown.join(", "),
            if skipped.len() > shown.len() {
                ", ..."
            } else {
                ""
            }
        ),
    ))
}

/// Whether a bulk export failure should make us read pages instead.
/// Unreachable stores and throttling would fail paged reads the same way.
fn bulk_fallback(e: &CatalogError) -> bool {
    !matches!(
        e,
        CatalogError::Transport(_) | CatalogError::RateLimited { .. }
    )
}

/// The output file, created when the first product arrives: until then
/// (a store that does not answer, refuses the keys, or Ctrl-C) an earlier
/// export in it is left as it was.
struct Output<'a> {
    path: &'a Path,
    file: Option<BufWriter<File>>,
}

impl Output<'_> {
    /// Creates (truncates) the file if that is not done yet.
    fn open(&mut self) -> Result<&mut BufWriter<File>, CliError> {
        if self.file.is_none() {
            let file = File::create(self.path)
                .map_err(|e| CliError::io(format!("cannot create {}", self.path.display()), &e))?;
            self.file = Some(BufWriter::with_capacity(256 * 1024, file));
        }
        self.file
            .as_mut()
            .ok_or_else(|| CliError::new(Kind::Other, "output file not open"))
    }

    /// Appends one whole line.
    fn write(&mut self, line: &[u8]) -> Result<(), CliError> {
        let path = self.path;
        self.open()?
            .write_all(line)
            .map_err(|e| CliError::io(format!("cannot write to {}", path.display()), &e))
    }

    /// Flushes what was written and syncs it, if anything was.
    fn finish(&mut self) -> Result<(), CliError> {
        let Some(out) = self.file.as_mut() else {
            return Ok(());
        };
        out.flush()
            .and_then(|()| out.get_ref().sync_data())
            .map_err(|e| CliError::io(format!("cannot write to {}", self.path.display()), &e))
    }

    /// What the file holds now, for messages.
    fn state(&self, written: u64) -> String {
        if self.file.is_some() {
            format!("{} holds the first {written} products", self.path.display())
        } else {
            format!("{} was left as it was", self.path.display())
        }
    }
}

/// A bar with an ETA when the total is known, a spinner otherwise; drawn on
/// stderr, and hidden when stderr is not a terminal.
fn progress_bar(total: Option<u64>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = match total {
        Some(t) => ProgressBar::with_draw_target(Some(t), ProgressDrawTarget::stderr()),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()),
    };
    let template = if total.is_some() {
        "{spinner} [{bar:30}] {human_pos}/{human_len} products  {rate}  ETA {eta}  {msg}"
    } else {
        "{spinner} {human_pos} products  {rate}  {elapsed}  {msg}"
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(
            style
                .with_key(
                    "rate",
                    |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.0}/s", state.per_sec());
                    },
                )
                .progress_chars("=> "),
        );
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
