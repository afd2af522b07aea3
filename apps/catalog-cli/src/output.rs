//! Everything written to stdout: tables and JSON.
#![allow(clippy::print_stdout)]

use std::io::Write as _;

use catalog_core::{Money, Product};

use crate::error::CliError;

/// A plain text table: left-aligned columns separated by two spaces, cells
/// shortened to `max` characters.
#[derive(Debug)]
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    max: usize,
}

impl Table {
    /// A table with these column titles.
    pub(crate) fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
            max: 48,
        }
    }

    /// Adds a row.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row, with a trailing newline.
    pub(crate) fn render(&self) -> String {
        let cell = |s: &str| -> String {
            let one_line: String = s
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            if one_line.chars().count() > self.max {
                let mut t: String = one_line.chars().take(self.max - 1).collect();
                t.push('…');
                t
            } else {
                one_line
            }
        };
        let all: Vec<Vec<String>> = std::iter::once(&self.header)
            .chain(&self.rows)
            .map(|r| r.iter().map(|c| cell(c)).collect())
            .collect();
        let cols = self.header.len();
        let widths: Vec<usize> = (0..cols)
            .map(|i| {
                all.iter()
                    .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for r in &all {
            let mut line = String::new();
            for (i, w) in widths.iter().enumerate() {
                let c = r.get(i).map_or("", String::as_str);
                line.push_str(c);
                if i + 1 < cols {
                    line.push_str(&" ".repeat(w - c.chars().count() + 2));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Writes text to stdout; a closed pipe (`| head`) is not an error.
pub(crate) fn print(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::io("cannot write to stdout", &e)),
    }
}

/// Pretty JSON on stdout.
pub(crate) fn print_json(value: &impl serde::Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| {
        CliError::new(
            crate::error::Kind::Other,
            format!("cannot encode JSON: {e}"),
        )
    })?;
    print(&format!("{text}\n"))
}

/// `12.50 EUR`, or `9.00–12.50 EUR` for a range.
pub(crate) fn price_range(product: &Product) -> String {
    let prices: Vec<&Money> = product
        .variants
        .iter()
        .filter_map(|v| v.price.as_ref())
        .collect();
    let Some(first) = prices.first() else {
        return "-".to_owned();
    };
    let same_currency = prices.iter().all(|p| p.currency() == first.currency());
    if !same_currency {
        return money(first);
    }
    let min = prices
        .iter()
        .map(|p| p.amount())
        .min()
        .unwrap_or(first.amount());
    let max = prices
        .iter()
        .map(|p| p.amount())
        .max()
        .unwrap_or(first.amount());
    if min == max {
        format!("{min} {}", first.currency())
    } else {
        format!("{min}–{max} {}", first.currency())
    }
}

/// `12.50 EUR`.
pub(crate) fn money(m: &Money) -> String {
    format!("{} {}", m.amount(), m.currency())
}

/// The products as a table (`products list`).
pub(crate) fn products_table(products: &[Product]) -> String {
    let mut t = Table::new(&[
        "ID", "TITLE", "STATUS", "VARIANTS", "PRICE", "SKU", "UPDATED",
    ]);
    for p in products {
        let sku = p
            .variants
            .iter()
            .find_map(|v| v.sku.as_deref().filter(|s| !s.is_empty()))
            .unwrap_or("-");
        t.row(vec![
            p.platform_id.clone(),
            p.title.clone(),
            p.status.as_str().to_owned(),
            p.variants.len().to_string(),
            price_range(p),
            sku.to_owned(),
            p.updated_at.map_or_else(
                || "-".to_owned(),
                |d| d.format("%Y-%m-%d %H:%M").to_string(),
            ),
        ]);
    }
    t.render()
}

/// One product in detail (`products get`).
pub(crate) fn product_detail(p: &Product) -> String {
    let opt = |o: &Option<String>| {
        o.clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "-".into())
    };
    let mut fields = Table::new(&["FIELD", "VALUE"]);
    fields.max = 80;
    let date = |d: &Option<chrono::DateTime<chrono::Utc>>| {
        d.map_or_else(|| "-".to_owned(), |d| d.to_rfc3339())
    };
    for (k, v) in [
        ("id", p.id.clone()),
        ("platform id", p.platform_id.clone()),
        ("title", p.title.clone()),
        ("status", p.status.as_str().to_owned()),
        ("handle", opt(&p.handle)),
        ("vendor", opt(&p.vendor)),
        ("type", opt(&p.product_type)),
        (
            "tags",
            if p.tags.is_empty() {
                "-".into()
            } else {
                p.tags.join(", ")
            },
        ),
        (
            "categories",
            if p.categories.is_empty() {
                "-".into()
            } else {
                p.categories
                    .iter()
                    .map(|c| c.name.clone())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        ),
        ("price", price_range(p)),
        ("images", p.images.len().to_string()),
        ("created", date(&p.created_at)),
        ("updated", date(&p.updated_at)),
    ] {
        fields.row(vec![k.to_owned(), v]);
    }
    let mut variants = Table::new(&["VARIANT", "TITLE", "SKU", "PRICE", "COMPARE AT", "STOCK"]);
    for v in &p.variants {
        variants.row(vec![
            v.id.clone(),
            opt(&v.title),
            opt(&v.sku),
            v.price.as_ref().map_or_else(|| "-".into(), money),
            v.compare_at_price
                .as_ref()
                .map_or_else(|| "-".into(), money),
            v.inventory_quantity
                .map_or_else(|| "-".into(), |q| q.to_string()),
        ]);
    }
    let mut out = fields.render();
    // The header line of the field table adds nothing for a detail view.
    if let Some(pos) = out.find('\n') {
        out.drain(..=pos);
    }
    out.push('\n');
    out.push_str(&variants.render());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_long_cells_are_cut() {
        let mut t = Table::new(&["A", "LONG HEADER"]);
        t.row(vec!["x".repeat(60), "y".into()]);
        t.row(vec!["short\nline".into(), String::new()]);
        let text = t.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].contains('…'));
        let col = |l: &str, c: char| l.chars().position(|x| x == c);
        assert_eq!(col(lines[0], 'L'), col(lines[1], 'y'));
        assert!(lines[2].starts_with("short line"));
    }
}
