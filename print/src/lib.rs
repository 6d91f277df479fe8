//! Printing for the clinic's downtime procedure: a day sheet (one doctor's
//! day, or the whole clinic's, one section per doctor), an invoice /
//! receipt, and a patient summary (printed by a doctor for the patient), as
//! PDF.
//!
//! Made in Rust with one bundled font (DejaVu Sans, `fonts/`), so a sheet
//! prints the same on every desk and needs neither the network nor the
//! system's fonts: that is the point of printing tomorrow's schedule before
//! an outage. The documents take text that is already in the clinic's words
//! and time zone (the desk's facade composes them, `clinic_client`); this
//! crate only lays it out: A4 pages, columns cut to fit with "…", headers
//! repeated on every page, "Page n of m" and the printing time in the
//! footer.

use printpdf::{IndirectFontRef, Mm, PdfDocument, PdfDocumentReference, PdfLayerReference};
use std::io::BufWriter;

/// The bundled font (DejaVu Sans: Latin, Greek, Cyrillic and more; licence
/// in `fonts/LICENSE-DejaVu.txt`).
const FONT: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");

/// Why a document could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PrintError {
    /// The bundled font could not be read (a build defect, not input).
    #[error("the bundled font could not be loaded: {0}")]
    Font(String),
    /// The PDF could not be written.
    #[error("the PDF could not be written: {0}")]
    Pdf(String),
}

/// One day's appointments: one doctor's, or the whole clinic's.
#[derive(Debug, Clone, Default)]
pub struct DaySheet {
    /// E.g. "Day sheet: Dr Sato" or "Schedule: whole clinic".
    pub title: String,
    /// The day, spelled out, e.g. "Thursday 3 December 2026".
    pub date: String,
    /// "Times are in Europe/Berlin." or similar.
    pub zone_note: String,
    /// "Printed 2 December 2026 at 14:05 by Rita Alvarez".
    pub printed: String,
    /// One section per doctor, in the order to print.
    pub sections: Vec<SheetSection>,
}

/// One doctor's part of a day sheet.
#[derive(Debug, Clone, Default)]
pub struct SheetSection {
    /// E.g. "Dr Sato (8 appointments)".
    pub heading: String,
    /// The appointments, in time order.
    pub rows: Vec<SheetRow>,
}

/// One appointment on a day sheet.
#[derive(Debug, Clone, Default)]
pub struct SheetRow {
    /// "09:30–10:00".
    pub time: String,
    /// "Müller, Zoë".
    pub patient: String,
    /// Date of birth as the clinic writes it.
    pub born: String,
    /// Phone, or empty.
    pub phone: String,
    /// Visit type (the appointment's reason) and the patient's alerts, or empty.
    pub visit: String,
    /// "Booked", "Checked in", "Cancelled"…
    pub status: String,
}

/// An invoice with what was paid against it (a receipt once paid).
#[derive(Debug, Clone, Default)]
pub struct Receipt {
    /// "Invoice" or "Receipt".
    pub title: String,
    /// The invoice's number as staff see it.
    pub number: String,
    /// "Issued 2 December 2026 at 09:41".
    pub issued: String,
    /// The patient's name.
    pub patient: String,
    /// The patient's date of birth as the clinic writes it.
    pub born: String,
    /// Postal address, if known.
    pub address: Option<String>,
    /// The items billed.
    pub lines: Vec<ReceiptLine>,
    /// Sum of the lines, in cents.
    pub total_cents: i64,
    /// Payments received.
    pub payments: Vec<ReceiptPayment>,
    /// Sum of the payments, in cents.
    pub paid_cents: i64,
    /// "Paid in full", "Open: 12.50 to pay", "Void".
    pub status: String,
    /// "Times are in Europe/Berlin."
    pub zone_note: String,
    /// "Printed … by …".
    pub printed: String,
}

/// One item of an invoice.
#[derive(Debug, Clone, Default)]
pub struct ReceiptLine {
    /// What was provided.
    pub description: String,
    /// How many.
    pub quantity: u32,
    /// Price of one, in cents.
    pub unit_price_cents: i64,
}

/// One payment on a receipt.
#[derive(Debug, Clone, Default)]
pub struct ReceiptPayment {
    /// "2 December 2026 at 09:45".
    pub when: String,
    /// "Card", "Cash"…
    pub method: String,
    /// Amount in cents.
    pub amount_cents: i64,
}

/// A patient summary: who the patient is, and entries (visits, records,
/// referrals), each with a heading and paragraphs wrapped to the page.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// "Patient summary: Zoë Müller".
    pub title: String,
    /// "Born 2 March 1984".
    pub subtitle: String,
    /// "Times are in …".
    pub zone_note: String,
    /// "Printed … by …".
    pub printed: String,
    /// Label and value pairs (phone, address…), in order.
    pub details: Vec<(String, String)>,
    /// The sections, in order.
    pub sections: Vec<SummarySection>,
}

/// One part of a summary ("Treatment records", "Referrals"…).
#[derive(Debug, Clone, Default)]
pub struct SummarySection {
    /// Its heading.
    pub heading: String,
    /// Said when there are no entries ("No treatment records.").
    pub empty: String,
    /// The entries, in order.
    pub entries: Vec<SummaryEntry>,
}

/// One entry of a summary section.
#[derive(Debug, Clone, Default)]
pub struct SummaryEntry {
    /// "3 March 2031, Dr. Dana Doyle".
    pub heading: String,
    /// Paragraphs ("Diagnosis: …"), each wrapped to the page width.
    pub paragraphs: Vec<String>,
}

/// `12345` → `"123.45"`, `-5` → `"-0.05"`: the desk's money format.
pub fn money(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    let whole = (abs / 100).to_string();
    // Thousands separated by commas, as the desk shows them (en-US).
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped}.{:02}", abs % 100)
}

/// The day sheet as a PDF.
pub fn day_sheet_pdf(sheet: &DaySheet) -> Result<Vec<u8>, PrintError> {
    let mut page = Pages::new(&sheet.title)?;
    let columns = [
        Column::left("Time", 0.0, 22.0),
        Column::left("Patient", 22.0, 44.0),
        Column::left("Born", 66.0, 22.0),
        Column::left("Phone", 88.0, 33.0),
        Column::left("Visit", 121.0, 36.0),
        Column::left("Status", 157.0, 23.0),
    ];
    page.title(&sheet.title, &sheet.date);
    page.small(&sheet.zone_note);
    page.gap(3.0);
    if sheet.sections.iter().all(|s| s.rows.is_empty()) {
        page.text("No appointments on this day.");
    }
    for section in &sheet.sections {
        page.need(3.0 * LINE);
        page.heading(&section.heading);
        if section.rows.is_empty() {
            page.text("No appointments.");
            page.gap(2.0);
            continue;
        }
        page.header_row(&columns);
        for row in &section.rows {
            if page.need(LINE) {
                page.heading(&format!("{} (continued)", section.heading));
                page.header_row(&columns);
            }
            page.row(
                &columns,
                &[
                    &row.time,
                    &row.patient,
                    &row.born,
                    &row.phone,
                    &row.visit,
                    &row.status,
                ],
            );
        }
        page.gap(3.0);
    }
    page.finish(&sheet.printed)
}

/// The invoice or receipt as a PDF.
pub fn receipt_pdf(receipt: &Receipt) -> Result<Vec<u8>, PrintError> {
    let mut page = Pages::new(&receipt.title)?;
    page.title(
        &format!("{} {}", receipt.title, receipt.number),
        &receipt.issued,
    );
    page.small(&receipt.zone_note);
    page.gap(3.0);
    page.text(&format!("Patient: {}", receipt.patient));
    if !receipt.born.is_empty() {
        page.text(&format!("Born: {}", receipt.born));
    }
    if let Some(address) = receipt.address.as_deref().filter(|a| !a.trim().is_empty()) {
        for line in address.lines() {
            page.text(line);
        }
    }
    page.gap(4.0);
    let columns = [
        Column::left("Item", 0.0, 100.0),
        Column::right("Qty", 100.0, 20.0),
        Column::right("Price", 120.0, 30.0),
        Column::right("Amount", 150.0, 30.0),
    ];
    page.header_row(&columns);
    for line in &receipt.lines {
        if page.need(LINE) {
            page.header_row(&columns);
        }
        let amount = line
            .unit_price_cents
            .checked_mul(i64::from(line.quantity))
            .map(money)
            .unwrap_or_default();
        page.row(
            &columns,
            &[
                &line.description,
                &line.quantity.to_string(),
                &money(line.unit_price_cents),
                &amount,
            ],
        );
    }
    page.rule();
    let totals = [Column::left("", 0.0, 150.0), Column::right("", 150.0, 30.0)];
    page.row(&totals, &["Total", &money(receipt.total_cents)]);
    if !receipt.payments.is_empty() {
        page.gap(4.0);
        page.heading("Payments");
        let paid = [
            Column::left("When", 0.0, 100.0),
            Column::left("Method", 100.0, 50.0),
            Column::right("Amount", 150.0, 30.0),
        ];
        page.header_row(&paid);
        for p in &receipt.payments {
            if page.need(LINE) {
                page.header_row(&paid);
            }
            page.row(&paid, &[&p.when, &p.method, &money(p.amount_cents)]);
        }
        page.rule();
        page.row(&totals, &["Paid", &money(receipt.paid_cents)]);
    }
    page.row(
        &totals,
        &[
            "Balance",
            &money(receipt.total_cents.saturating_sub(receipt.paid_cents)),
        ],
    );
    page.gap(4.0);
    page.heading(&receipt.status);
    page.finish(&receipt.printed)
}

/// The patient summary as a PDF.
pub fn summary_pdf(summary: &Summary) -> Result<Vec<u8>, PrintError> {
    let mut page = Pages::new(&summary.title)?;
    page.title(&summary.title, &summary.subtitle);
    page.small(&summary.zone_note);
    page.gap(3.0);
    let details = [Column::left("", 0.0, 35.0), Column::left("", 35.0, 145.0)];
    for (label, value) in &summary.details {
        for (i, line) in value.lines().enumerate() {
            page.row(&details, &[if i == 0 { label } else { "" }, line]);
        }
    }
    for section in &summary.sections {
        page.gap(3.0);
        page.heading(&section.heading);
        if section.entries.is_empty() {
            page.text(&section.empty);
        }
        for entry in &section.entries {
            page.need(2.0 * LINE);
            page.gap(1.0);
            page.text(&entry.heading);
            for paragraph in &entry.paragraphs {
                page.paragraph(paragraph, 6.0);
            }
        }
    }
    page.finish(&summary.printed)
}

// A4 portrait, in millimetres.
const WIDTH: f32 = 210.0;
const HEIGHT: f32 = 297.0;
const MARGIN: f32 = 15.0;
const FOOTER: f32 = 12.0;
const LINE: f32 = 6.0;
const BODY: f32 = 9.0;
const POINTS_PER_MM: f32 = 72.0 / 25.4;

#[derive(Clone, Copy)]
enum Align {
    Left,
    Right,
}

/// A table column: its header, where it starts (mm from the left margin),
/// how wide it is, and how its text is aligned.
struct Column<'a> {
    header: &'a str,
    x: f32,
    width: f32,
    align: Align,
}

impl<'a> Column<'a> {
    const fn left(header: &'a str, x: f32, width: f32) -> Self {
        Column {
            header,
            x,
            width,
            align: Align::Left,
        }
    }

    const fn right(header: &'a str, x: f32, width: f32) -> Self {
        Column {
            header,
            x,
            width,
            align: Align::Right,
        }
    }
}

/// Glyph widths of the bundled font, to cut and align text.
struct Metrics {
    face: ttf_parser::Face<'static>,
}

impl Metrics {
    /// Width of `text` at `size` points, in millimetres.
    fn width(&self, text: &str, size: f32) -> f32 {
        let units = f32::from(self.face.units_per_em());
        let advance: f32 = text
            .chars()
            .map(|c| {
                self.face
                    .glyph_index(c)
                    .and_then(|g| self.face.glyph_hor_advance(g))
                    .map_or(units / 2.0, f32::from)
            })
            .sum();
        advance / units * size / POINTS_PER_MM
    }

    /// `text` broken into lines of at most `width` mm at `size` points, at
    /// spaces where it can, inside a word where a word alone is too long;
    /// its own line breaks are kept.
    fn wrap(&self, text: &str, size: f32, width: f32) -> Vec<String> {
        let mut lines = Vec::new();
        for source in text.lines() {
            let mut line = String::new();
            for word in source.split_whitespace() {
                let candidate = if line.is_empty() {
                    word.to_owned()
                } else {
                    format!("{line} {word}")
                };
                if self.width(&candidate, size) <= width {
                    line = candidate;
                    continue;
                }
                if !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                }
                // A word wider than the line: cut it where it must.
                for c in word.chars() {
                    line.push(c);
                    if self.width(&line, size) > width {
                        line.pop();
                        lines.push(std::mem::take(&mut line));
                        line.push(c);
                    }
                }
            }
            lines.push(line);
        }
        lines
    }

    /// `text` cut (with "…") to fit `width` mm at `size` points.
    fn fit(&self, text: &str, size: f32, width: f32) -> String {
        // Newlines and tabs would print as boxes: one line per cell.
        let text: String = text
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        if self.width(&text, size) <= width {
            return text;
        }
        let mut cut = String::new();
        for c in text.chars() {
            cut.push(c);
            if self.width(&cut, size) + self.width("…", size) > width {
                cut.pop();
                break;
            }
        }
        format!("{}…", cut.trim_end())
    }
}

/// The document being written: its pages, the cursor on the current page,
/// and the footer text to stamp on every page at the end.
struct Pages {
    doc: PdfDocumentReference,
    font: IndirectFontRef,
    metrics: Metrics,
    layers: Vec<PdfLayerReference>,
    /// Distance from the bottom of the page to the next line's baseline.
    y: f32,
}

impl Pages {
    fn new(title: &str) -> Result<Pages, PrintError> {
        let (doc, page, layer) = PdfDocument::new(title, Mm(WIDTH), Mm(HEIGHT), "content");
        let font = doc
            .add_external_font(FONT)
            .map_err(|e| PrintError::Font(e.to_string()))?;
        let face = ttf_parser::Face::parse(FONT, 0).map_err(|e| PrintError::Font(e.to_string()))?;
        let first = doc.get_page(page).get_layer(layer);
        Ok(Pages {
            doc,
            font,
            metrics: Metrics { face },
            layers: vec![first],
            y: HEIGHT - MARGIN,
        })
    }

    fn layer(&self) -> &PdfLayerReference {
        // `layers` starts with one page and only grows.
        &self.layers[self.layers.len() - 1]
    }

    fn put(&self, text: &str, size: f32, x: f32) {
        self.layer()
            .use_text(text, size, Mm(MARGIN + x), Mm(self.y), &self.font);
    }

    /// Starts a new page when fewer than `height` mm are left; says whether
    /// it did.
    fn need(&mut self, height: f32) -> bool {
        if self.y - height >= MARGIN + FOOTER {
            return false;
        }
        let (page, layer) = self.doc.add_page(Mm(WIDTH), Mm(HEIGHT), "content");
        self.layers.push(self.doc.get_page(page).get_layer(layer));
        self.y = HEIGHT - MARGIN;
        true
    }

    fn advance(&mut self, by: f32) {
        self.y -= by;
    }

    fn gap(&mut self, mm: f32) {
        self.advance(mm);
    }

    fn title(&mut self, title: &str, subtitle: &str) {
        self.advance(7.0);
        let fitted = self.metrics.fit(title, 16.0, WIDTH - 2.0 * MARGIN);
        self.put(&fitted, 16.0, 0.0);
        self.advance(7.0);
        let fitted = self.metrics.fit(subtitle, 12.0, WIDTH - 2.0 * MARGIN);
        self.put(&fitted, 12.0, 0.0);
        self.advance(2.0);
    }

    fn heading(&mut self, text: &str) {
        self.need(LINE + 2.0);
        self.advance(LINE + 1.0);
        let fitted = self.metrics.fit(text, 11.5, WIDTH - 2.0 * MARGIN);
        self.put(&fitted, 11.5, 0.0);
        self.advance(1.0);
    }

    fn text(&mut self, text: &str) {
        self.need(LINE);
        self.advance(LINE);
        let fitted = self.metrics.fit(text, BODY, WIDTH - 2.0 * MARGIN);
        self.put(&fitted, BODY, 0.0);
    }

    /// Wrapped text, indented by `indent` mm, over pages as needed.
    fn paragraph(&mut self, text: &str, indent: f32) {
        let width = WIDTH - 2.0 * MARGIN - indent;
        for line in self.metrics.wrap(text, BODY, width) {
            self.need(5.0);
            self.advance(5.0);
            self.put(&line, BODY, indent);
        }
    }

    fn small(&mut self, text: &str) {
        self.need(LINE);
        self.advance(5.0);
        let fitted = self.metrics.fit(text, 8.0, WIDTH - 2.0 * MARGIN);
        self.put(&fitted, 8.0, 0.0);
    }

    fn rule(&mut self) {
        self.advance(2.0);
        let line = printpdf::Line {
            points: vec![
                (printpdf::Point::new(Mm(MARGIN), Mm(self.y)), false),
                (printpdf::Point::new(Mm(WIDTH - MARGIN), Mm(self.y)), false),
            ],
            is_closed: false,
        };
        self.layer().set_outline_thickness(0.4);
        self.layer().add_line(line);
    }

    fn cells(&mut self, columns: &[Column<'_>], cells: &[&str], size: f32) {
        self.advance(LINE);
        for (column, cell) in columns.iter().zip(cells) {
            // 2 mm between columns.
            let fitted = self.metrics.fit(cell, size, column.width - 2.0);
            let x = match column.align {
                Align::Left => column.x,
                Align::Right => column.x + column.width - self.metrics.width(&fitted, size),
            };
            self.put(&fitted, size, x);
        }
    }

    fn header_row(&mut self, columns: &[Column<'_>]) {
        let headers: Vec<&str> = columns.iter().map(|c| c.header).collect();
        self.cells(columns, &headers, 8.5);
        self.rule();
    }

    fn row(&mut self, columns: &[Column<'_>], cells: &[&str]) {
        self.need(LINE);
        self.cells(columns, cells, BODY);
    }

    /// Stamps "printed …" and "Page n of m" on every page and returns the
    /// PDF's bytes.
    fn finish(self, printed: &str) -> Result<Vec<u8>, PrintError> {
        let total = self.layers.len();
        for (i, layer) in self.layers.iter().enumerate() {
            let printed = self.metrics.fit(printed, 8.0, 130.0);
            layer.use_text(&printed, 8.0, Mm(MARGIN), Mm(MARGIN), &self.font);
            let number = format!("Page {} of {total}", i + 1);
            let x = WIDTH - MARGIN - self.metrics.width(&number, 8.0);
            layer.use_text(&number, 8.0, Mm(x), Mm(MARGIN), &self.font);
        }
        let mut out = BufWriter::new(Vec::new());
        self.doc
            .save(&mut out)
            .map_err(|e| PrintError::Pdf(e.to_string()))?;
        out.into_inner()
            .map_err(|e| PrintError::Pdf(e.error().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_written_as_the_desk_shows_it() {
        assert_eq!(money(0), "0.00");
        assert_eq!(money(5), "0.05");
        assert_eq!(money(-5), "-0.05");
        assert_eq!(money(123_456_789), "1,234,567.89");
        assert_eq!(money(100_000), "1,000.00");
        assert_eq!(money(i64::MIN), "-92,233,720,368,547,758.08");
    }

    #[test]
    fn long_text_is_cut_to_its_column_with_an_ellipsis() {
        let face = ttf_parser::Face::parse(FONT, 0).unwrap_or_else(|e| panic!("{e}"));
        let m = Metrics { face };
        assert_eq!(m.fit("Kim", BODY, 40.0), "Kim");
        let long = "Wolfeschlegelsteinhausenbergerdorff, Hubert Blaine";
        let cut = m.fit(long, BODY, 40.0);
        assert!(cut.ends_with('…') && cut.len() < long.len(), "{cut}");
        assert!(m.width(&cut, BODY) <= 40.0);
        assert_eq!(m.fit("two\nlines", BODY, 80.0), "two lines");
    }

    #[test]
    fn paragraphs_wrap_at_spaces_and_keep_every_character() {
        let face = ttf_parser::Face::parse(FONT, 0).unwrap_or_else(|e| panic!("{e}"));
        let m = Metrics { face };
        let text = "Mild sprain of the left ankle after a fall on ice; rest, ice and \
                    compression for a week.\nReview in ten days. Pneumonoultramicroscopicsilicovolcanoconiosis";
        let lines = m.wrap(text, BODY, 40.0);
        assert!(lines.len() > 4, "{lines:?}");
        for line in &lines {
            assert!(m.width(line, BODY) <= 40.0, "{line:?} is too wide");
        }
        let joined: String = lines.concat().split_whitespace().collect();
        let original: String = text.split_whitespace().collect();
        assert_eq!(joined, original, "nothing lost or added");
        assert!(
            lines.iter().any(|l| l == "Review in ten days."),
            "{lines:?}"
        );
    }
}
