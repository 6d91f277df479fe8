//! Field validation shared by client and server.
//!
//! Every failure is a [`FieldError`] naming the field (a dotted path such as
//! `lines.0.quantity`) so a UI can put the message next to the input and a
//! script can tell which argument was wrong. Validation collects every error
//! of a value rather than stopping at the first.

use crate::model::{
    Appointment, InventoryItem, Invoice, InvoiceLine, InvoiceStatus, Patient, Payment, PriceItem,
    Referral, Staff, TreatmentRecord,
};
use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

/// What is wrong with a field, for a program: a front end turns it into a
/// sentence in the user's words (with [`FieldError::min`] / [`FieldError::max`]
/// where the rule has bounds), a script can branch on it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
#[serde(rename_all = "snake_case")]
pub enum FieldCode {
    /// Missing or blank.
    Required,
    /// Longer than `max` characters (or bytes, for passwords).
    TooLong,
    /// Shorter than `min` characters.
    TooShort,
    /// Contains control characters.
    ControlCharacters,
    /// Not a phone number.
    NotAPhone,
    /// Not an e-mail address.
    NotAnEmail,
    /// Not a login name.
    NotAUsername,
    /// A date that must not be in the future is.
    InTheFuture,
    /// A date before the earliest allowed (`min` is the year).
    TooEarly,
    /// The end is not after the start.
    EndNotAfterStart,
    /// An appointment longer than `max` seconds.
    TooLongAppointment,
    /// A booking that starts before now.
    InThePast,
    /// A number outside `[min, max]`.
    OutOfRange,
    /// Zero where a change is needed.
    Zero,
    /// A list that needs at least one entry is empty.
    Empty,
    /// A list with more than `max` entries.
    TooMany,
    /// A computed total that does not match.
    Mismatch,
    /// Already used by another record.
    Taken,
    /// A password shorter than `min` characters.
    PasswordTooShort,
    /// A password on the list of common passwords.
    PasswordCommon,
    /// An update that changes nothing.
    NothingChanged,
    /// A base version newer than the record's.
    StaleVersion,
    /// A payment larger than the `max` cents outstanding.
    ExceedsOutstanding,
    /// Stored before codes existed, or not otherwise classified: see the message.
    #[default]
    Invalid,
}

/// One invalid field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[ts(export)]
pub struct FieldError {
    /// Dotted path of the field, e.g. `phone` or `lines.2.quantity`.
    pub field: String,
    /// What is wrong, for a program (absent in refusals stored by older
    /// versions: `invalid`).
    #[serde(default)]
    pub code: FieldCode,
    /// What is wrong, for a person (English; a front end composes its own
    /// sentence from `code`).
    pub message: String,
    /// The lower bound of the rule, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub min: Option<i64>,
    /// The upper bound of the rule, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub max: Option<i64>,
}

impl FieldError {
    /// An error with a code and a message.
    pub fn new(field: impl Into<String>, code: FieldCode, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            code,
            message: message.into(),
            min: None,
            max: None,
        }
    }

    /// With the rule's bounds.
    pub fn bounds(mut self, min: Option<i64>, max: Option<i64>) -> Self {
        self.min = min;
        self.max = max;
        self
    }
}

fn as_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Maximum length of names and short texts, in characters.
pub const MAX_NAME: usize = 100;
/// Maximum length of free texts (addresses, reasons), in characters.
pub const MAX_TEXT: usize = 2_000;
/// Longest insurance member number (with spaces or dashes).
pub const MAX_INSURANCE_NUMBER: usize = 40;
/// Longest allergies-and-alerts text: a banner, not a record.
pub const MAX_ALERTS: usize = 500;
/// Maximum length of clinical notes, in characters.
pub const MAX_NOTES: usize = 20_000;
/// Maximum number of invoice lines or procedures.
pub const MAX_ITEMS: usize = 100;
/// Longest appointment, in seconds (12 hours). The double-booking rule
/// relies on it to bound its search.
pub const MAX_APPOINTMENT_SECS: i64 = 12 * 3600;
/// Minimum password length for staff accounts, in characters.
pub const MIN_PASSWORD: usize = 12;
/// Maximum password length, in bytes (Argon2 hashes any length; this bounds
/// the work a request can ask for).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// The bundled list of common passwords (lower case, one a line); see
/// `shared/data/COMMON-PASSWORDS.md` for its origin and licence.
const COMMON_PASSWORDS: &str = include_str!("../data/common-passwords.txt");

/// Whether `password` is on the bundled list of common passwords, compared
/// in lower case with surrounding spaces trimmed (so `Password123` and
/// ` password123 ` count as `password123`).
pub fn is_common_password(password: &str) -> bool {
    static SET: std::sync::OnceLock<std::collections::HashSet<&'static str>> =
        std::sync::OnceLock::new();
    let set = SET.get_or_init(|| {
        COMMON_PASSWORDS
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect()
    });
    set.contains(password.trim().to_lowercase().as_str())
}

/// Collects field errors.
#[derive(Debug, Default)]
pub struct Errors(Vec<FieldError>);

impl Errors {
    /// No errors yet.
    pub fn new() -> Self {
        Self::default()
    }
    /// Records that `field` is invalid.
    pub fn add(&mut self, field: impl Into<String>, code: FieldCode, message: impl Into<String>) {
        self.0.push(FieldError::new(field, code, message));
    }
    /// Records that `field` breaks a rule with bounds.
    pub fn add_bounded(
        &mut self,
        field: impl Into<String>,
        code: FieldCode,
        (min, max): (Option<i64>, Option<i64>),
        message: impl Into<String>,
    ) {
        self.0
            .push(FieldError::new(field, code, message).bounds(min, max));
    }
    /// `Ok` when nothing was recorded.
    pub fn finish(self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }

    /// A required text: not blank, at most `max` characters, no control characters.
    pub fn text(&mut self, field: &str, value: &str, max: usize) {
        if value.trim().is_empty() {
            self.add(field, FieldCode::Required, "is required");
        } else {
            self.optional_text(field, value, max);
        }
    }

    /// An optional text: at most `max` characters, no control characters but
    /// newlines and tabs.
    pub fn optional_text(&mut self, field: &str, value: &str, max: usize) {
        let len = value.chars().count();
        if len > max {
            self.add_bounded(
                field,
                FieldCode::TooLong,
                (None, Some(as_i64(max))),
                format!("is too long ({len} characters, at most {max})"),
            );
        } else if value
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
        {
            self.add(
                field,
                FieldCode::ControlCharacters,
                "contains control characters",
            );
        }
    }

    fn opt(&mut self, field: &str, value: &Option<String>, max: usize) {
        if let Some(v) = value {
            self.optional_text(field, v, max);
        }
    }
}

/// Whether `phone` looks like a phone number: 5 to 20 digits, optionally
/// starting with `+`, with spaces, dashes, dots and parentheses between.
pub fn is_phone(phone: &str) -> bool {
    let digits = phone.chars().filter(char::is_ascii_digit).count();
    let allowed = phone
        .char_indices()
        .all(|(i, c)| c.is_ascii_digit() || " -.()".contains(c) || (c == '+' && i == 0));
    allowed && (5..=20).contains(&digits) && phone.len() <= 30
}

/// Whether `email` looks like an e-mail address (`local@domain.tld`).
pub fn is_email(email: &str) -> bool {
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.split('.').count() >= 2
        && domain.split('.').all(|part| !part.is_empty())
}

/// Whether `username` is a valid login name: 2–40 of `a-z 0-9 . _ -`.
pub fn is_username(username: &str) -> bool {
    (2..=40).contains(&username.len())
        && username
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}

/// Validates a staff row.
pub fn staff(s: &Staff) -> Result<(), Vec<FieldError>> {
    let mut e = Errors::new();
    if !is_username(&s.username) {
        e.add(
            "username",
            FieldCode::NotAUsername,
            "must be 2 to 40 characters of a-z, 0-9, '.', '_' or '-'",
        );
    }
    e.text("display_name", &s.display_name, MAX_NAME);
    e.finish()
}

/// Validates a new password for a staff account: at least
/// [`MIN_PASSWORD`] characters, at most [`MAX_PASSWORD_BYTES`] bytes, and not
/// one of the bundled common passwords. The messages say what to do instead.
pub fn password(field: &str, password: &str, e: &mut Errors) {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD {
        e.add_bounded(
            field,
            FieldCode::PasswordTooShort,
            (Some(as_i64(MIN_PASSWORD)), None),
            format!(
                "must be at least {MIN_PASSWORD} characters (this one has {chars}); \
                 a few unrelated words make a long password that is easy to remember"
            ),
        );
    } else if password.len() > MAX_PASSWORD_BYTES {
        e.add_bounded(
            field,
            FieldCode::TooLong,
            (None, Some(as_i64(MAX_PASSWORD_BYTES))),
            format!("is too long (at most {MAX_PASSWORD_BYTES} bytes)"),
        );
    } else if is_common_password(password) {
        e.add(
            field,
            FieldCode::PasswordCommon,
            "is one of the most common passwords and would be guessed quickly; choose another",
        );
    }
}

/// Validates a patient.
pub fn patient(p: &Patient) -> Result<(), Vec<FieldError>> {
    let mut e = Errors::new();
    e.text("first_name", &p.first_name, MAX_NAME);
    e.text("last_name", &p.last_name, MAX_NAME);
    date_of_birth(&p.date_of_birth, &mut e);
    if p.phone.as_deref().is_some_and(|phone| !is_phone(phone)) {
        e.add(
            "phone",
            FieldCode::NotAPhone,
            "is not a phone number (5 to 20 digits, optional leading +)",
        );
    }
    if p.email.as_deref().is_some_and(|email| !is_email(email)) {
        e.add("email", FieldCode::NotAnEmail, "is not an e-mail address");
    }
    e.opt("address", &p.address, MAX_TEXT);
    e.opt("emergency_contact", &p.emergency_contact, MAX_NAME * 2);
    if p.emergency_phone
        .as_deref()
        .is_some_and(|phone| !is_phone(phone))
    {
        e.add(
            "emergency_phone",
            FieldCode::NotAPhone,
            "is not a phone number (5 to 20 digits, optional leading +)",
        );
    }
    e.opt("insurer", &p.insurer, MAX_NAME);
    e.opt(
        "insurance_number",
        &p.insurance_number,
        MAX_INSURANCE_NUMBER,
    );
    e.opt("alerts", &p.alerts, MAX_ALERTS);
    e.finish()
}

fn date_of_birth(d: &NaiveDate, e: &mut Errors) {
    let today = chrono::Utc::now().date_naive();
    if *d > today {
        e.add("date_of_birth", FieldCode::InTheFuture, "is in the future");
    } else if d.year() < 1880 {
        e.add_bounded(
            "date_of_birth",
            FieldCode::TooEarly,
            (Some(1880), None),
            "is before 1880",
        );
    }
}

/// Validates an appointment.
pub fn appointment(a: &Appointment) -> Result<(), Vec<FieldError>> {
    let mut e = Errors::new();
    if a.end <= a.start {
        e.add("end", FieldCode::EndNotAfterStart, "must be after start");
    } else if a.end.unix() - a.start.unix() > MAX_APPOINTMENT_SECS {
        e.add_bounded(
            "end",
            FieldCode::TooLongAppointment,
            (None, Some(MAX_APPOINTMENT_SECS)),
            "makes the appointment longer than 12 hours",
        );
    }
    e.opt("reason", &a.reason, MAX_TEXT);
    e.finish()
}

/// Validates a treatment record.
pub fn treatment_record(r: &TreatmentRecord) -> Result<(), Vec<FieldError>> {
    let mut e = Errors::new();
    e.optional_text("notes", &r.notes, MAX_NOTES);
    e.text("diagnosis", &r.diagnosis, MAX_TEXT);
    if r.procedures.len() > MAX_ITEMS {
        e.add_bounded(
            "procedures",
            FieldCode::TooMany,
            (None, Some(as_i64(MAX_ITEMS))),
            format!("has more than {MAX_ITEMS} entries"),
        );
    }
    for (i, p) in r.procedures.iter().enumerate() {
        e.text(&format!("procedures.{i}"), p, MAX_NAME * 2);
    }
    e.finish()
}

/// Shortest reason for voiding an invoice or paying money back.
pub const MIN_BILLING_REASON: usize = 3;
/// Longest such reason.
pub const MAX_BILLING_REASON: usize = 500;

/// A reason for a billing correction (void, refund): trimmed, 3 to 500
/// characters, on one line or several.
pub fn reason(field: &str, value: &str, e: &mut Errors) {
    let len = value.trim().chars().count();
    if len == 0 {
        e.add(field, FieldCode::Required, "is required");
    } else if len < MIN_BILLING_REASON {
        e.add_bounded(
            field,
            FieldCode::TooShort,
            (
                Some(as_i64(MIN_BILLING_REASON)),
                Some(as_i64(MAX_BILLING_REASON)),
            ),
            format!("must be at least {MIN_BILLING_REASON} characters"),
        );
    } else {
        e.optional_text(field, value.trim(), MAX_BILLING_REASON);
    }
}

/// An amount of money taken or paid back: 1 cent to 1 000 000.00.
pub fn amount(field: &str, cents: i64, e: &mut Errors) {
    if !(1..=100_000_000).contains(&cents) {
        e.add_bounded(
            field,
            FieldCode::OutOfRange,
            (Some(1), Some(100_000_000)),
            "must be between 1 and 100000000",
        );
    }
}

/// Validates invoice lines: at least one unless `draft`.
pub fn invoice_lines(lines: &[InvoiceLine], draft: bool, e: &mut Errors) {
    if lines.is_empty() && !draft {
        e.add("lines", FieldCode::Empty, "needs at least one line");
    } else if lines.len() > MAX_ITEMS {
        e.add_bounded(
            "lines",
            FieldCode::TooMany,
            (None, Some(as_i64(MAX_ITEMS))),
            format!("has more than {MAX_ITEMS} lines"),
        );
    }
    for (i, l) in lines.iter().enumerate() {
        e.text(
            &format!("lines.{i}.description"),
            &l.description,
            MAX_NAME * 2,
        );
        if l.quantity == 0 || l.quantity > 10_000 {
            e.add_bounded(
                format!("lines.{i}.quantity"),
                FieldCode::OutOfRange,
                (Some(1), Some(10_000)),
                "must be between 1 and 10000",
            );
        }
        if !(0..=100_000_000).contains(&l.unit_price_cents) {
            e.add_bounded(
                format!("lines.{i}.unit_price_cents"),
                FieldCode::OutOfRange,
                (Some(0), Some(100_000_000)),
                "must be between 0 and 100000000",
            );
        }
    }
}

/// Validates an invoice.
pub fn invoice(inv: &Invoice) -> Result<(), Vec<FieldError>> {
    let mut e = Errors::new();
    invoice_lines(&inv.lines, inv.status == InvoiceStatus::Draft, &mut e);
    if Invoice::total_of(&inv.lines) != Some(inv.total_cents) {
        e.add(
            "total_cents",
            FieldCode::Mismatch,
            "does not equal the sum of the lines",
        );
    }
    if inv.paid_cents < 0 {
        e.add_bounded(
            "paid_cents",
            FieldCode::OutOfRange,
            (Some(0), None),
            "is negative",
        );
    }
    if !(0..=inv.paid_cents).contains(&inv.refunded_cents) {
        e.add_bounded(
            "refunded_cents",
            FieldCode::OutOfRange,
            (Some(0), Some(inv.paid_cents)),
            "must be between 0 and what was paid",
        );
    }
    if let Some(r) = &inv.void_reason {
        reason("void_reason", r, &mut e);
    }
    e.finish()
}

/// Validates a price list entry.
pub fn price_item(p: &PriceItem) -> Result<(), Vec<FieldError>> {
    let mut e = Errors::new();
    e.text("code", &p.code, 20);
    e.text("description", &p.description, MAX_NAME * 2);
    if !(0..=100_000_000).contains(&p.unit_price_cents) {
        e.add_bounded(
            "unit_price_cents",
            FieldCode::OutOfRange,
            (Some(0), Some(100_000_000)),
            "must be between 0 and 100000000",
        );
    }
    if let Some(m) = p.visit_minutes {
        let max = MAX_APPOINTMENT_SECS / 60;
        if m == 0 || i64::from(m) > max {
            e.add_bounded(
                "visit_minutes",
                FieldCode::OutOfRange,
                (Some(1), Some(max)),
                format!("must be between 1 and {max}"),
            );
        }
    }
    e.finish()
}

/// Validates a payment.
pub fn payment(p: &Payment) -> Result<(), Vec<FieldError>> {
    let mut e = Errors::new();
    amount("amount_cents", p.amount_cents, &mut e);
    match (&p.reason, p.refund) {
        (Some(r), true) => reason("reason", r, &mut e),
        (None, true) => e.add("reason", FieldCode::Required, "is required for a refund"),
        (Some(_), false) => e.add("reason", FieldCode::Invalid, "is for refunds only"),
        (None, false) => {}
    }
    e.finish()
}

/// Validates an inventory item.
pub fn inventory_item(i: &InventoryItem) -> Result<(), Vec<FieldError>> {
    let mut e = Errors::new();
    e.text("name", &i.name, MAX_NAME);
    e.text("unit", &i.unit, 20);
    if i.quantity < 0 {
        e.add_bounded(
            "quantity",
            FieldCode::OutOfRange,
            (Some(0), None),
            "cannot be negative",
        );
    }
    if i.reorder_level < 0 {
        e.add_bounded(
            "reorder_level",
            FieldCode::OutOfRange,
            (Some(0), None),
            "cannot be negative",
        );
    }
    e.finish()
}

/// Validates a referral.
pub fn referral(r: &Referral) -> Result<(), Vec<FieldError>> {
    let mut e = Errors::new();
    e.text("referred_to", &r.referred_to, MAX_NAME * 2);
    e.text("reason", &r.reason, MAX_TEXT);
    e.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn password_errors(p: &str) -> Vec<FieldError> {
        let mut e = Errors::new();
        password("new_password", p, &mut e);
        e.finish().err().unwrap_or_default()
    }

    #[test]
    fn passwords_need_twelve_characters_and_must_not_be_common() {
        assert!(password_errors("correct horse battery staple").is_empty());
        assert!(password_errors("twelve chars").is_empty());
        let short = password_errors("eleven char");
        assert_eq!(short.len(), 1);
        assert_eq!(short[0].field, "new_password");
        assert!(short[0].message.contains("at least 12"), "{short:?}");
        // Long enough, but on the bundled list (in any case, with spaces).
        for common in ["1234567890123", "PASSWORD1234", " qwertyuiop123 "] {
            assert!(is_common_password(common), "{common}");
            let e = password_errors(common);
            assert_eq!(e.len(), 1, "{common}");
            assert!(e[0].message.contains("common"), "{e:?}");
        }
        assert!(!is_common_password("rhubarb-tractor-lantern"));
        let long = password_errors(&"x".repeat(MAX_PASSWORD_BYTES + 1));
        assert!(long[0].message.contains("too long"));
    }

    #[test]
    fn the_bundled_list_is_the_full_one() {
        // A truncated or empty data file must not pass silently.
        assert_eq!(COMMON_PASSWORDS.lines().count(), 19_640);
        assert!(is_common_password("123456"));
    }

    #[test]
    fn phones() {
        for ok in [
            "+44 20 7946 0958",
            "(555) 123-4567",
            "0612345678",
            "555.123.4567",
        ] {
            assert!(is_phone(ok), "{ok}");
        }
        for bad in [
            "",
            "abc",
            "12",
            "+1+2345678",
            "555-CALL-NOW",
            "1234567890123456789012345",
        ] {
            assert!(!is_phone(bad), "{bad}");
        }
    }

    #[test]
    fn emails() {
        assert!(is_email("ana@clinic.example"));
        for bad in [
            "",
            "ana",
            "ana@",
            "@x.org",
            "a b@x.org",
            "a@b",
            "a@b..c",
            "a@b@c.d",
        ] {
            assert!(!is_email(bad), "{bad}");
        }
    }

    #[test]
    fn usernames() {
        assert!(is_username("dr.house_2"));
        assert!(!is_username("Dr House"));
        assert!(!is_username("x"));
    }

    #[test]
    fn patient_errors_name_every_bad_field() {
        let p = Patient {
            id: uuid::Uuid::nil(),
            first_name: " ".into(),
            last_name: "x".repeat(101),
            date_of_birth: NaiveDate::from_ymd_opt(2999, 1, 1).unwrap(),
            phone: Some("call me".into()),
            email: Some("nope".into()),
            address: None,
            sex: None,
            emergency_contact: None,
            emergency_phone: None,
            insurer: None,
            insurance_number: None,
            alerts: None,
            archived_at: None,
        };
        let errs = patient(&p).unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["first_name", "last_name", "date_of_birth", "phone", "email"]
        );
    }
}
