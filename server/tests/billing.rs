//! The billing workflow (issue 13, item 1) against the real server binary:
//! the price list kept by admins, a draft invoice whose lines change until
//! it is issued, payments up to the balance and never on a draft, void
//! with a reason, refunds of a void invoice up to what was paid, and each
//! step in the invoice's audited history.

#![allow(clippy::unwrap_used)] // a test that cannot proceed should panic

use clinic_e2e::*;
use clinic_shared::model::{InvoiceLine, PaymentMethod, Table};
use clinic_shared::mutation::*;
use clinic_shared::protocol::{MutationOutcome, RejectCode, RejectionDetail, Rule};
use serde_json::Value;
use uuid::Uuid;

fn line(description: &str, quantity: u32, cents: i64) -> InvoiceLine {
    InvoiceLine {
        description: description.into(),
        quantity,
        unit_price_cents: cents,
    }
}

fn rule_of(outcome: &MutationOutcome) -> Option<Rule> {
    match rejection(outcome).detail.as_deref() {
        Some(RejectionDetail::Rule { rule }) => Some(*rule),
        _ => None,
    }
}

async fn invoice(api: &Api, id: Uuid) -> (u64, Value) {
    let row = api.table(Table::Invoices).await[&id].clone();
    (row.version, row.data.unwrap())
}

#[tokio::test]
async fn an_invoice_goes_from_draft_to_paid_to_void_to_refunded_by_the_rules() {
    let server = Server::start();
    let mut admin = Api::login(&server, "admin").await;
    let mut reception = Api::login(&server, "reception").await;
    let doctor = Api::login(&server, "doctor").await;

    // The price list: admins keep it, reception reads it, doctors do not
    // receive it, and reception cannot change it.
    let c30 = Uuid::now_v7();
    applied_seq(
        &admin
            .push_one(Mutation::CreatePriceItem(CreatePriceItem {
                id: c30,
                code: " C30X ".into(),
                description: "Consultation, 30 minutes".into(),
                unit_price_cents: 7000,
                visit_minutes: Some(30),
            }))
            .await,
    );
    let item = reception.table(Table::PriceItems).await[&c30].clone();
    assert_eq!(item.data.as_ref().unwrap()["code"], "C30X", "trimmed");
    assert!(doctor.table(Table::PriceItems).await.is_empty());
    let refused = reception
        .push_one(Mutation::UpdatePriceItem(UpdatePriceItem {
            id: c30,
            base_version: item.version,
            fields: PriceItemPatch {
                unit_price_cents: Some(1),
                ..PriceItemPatch::default()
            },
        }))
        .await;
    assert_eq!(rejection(&refused).code, RejectCode::Forbidden);
    let bad = admin
        .push_one(Mutation::CreatePriceItem(CreatePriceItem {
            id: Uuid::now_v7(),
            code: "".into(),
            description: "Nothing".into(),
            unit_price_cents: -5,
            visit_minutes: Some(0),
        }))
        .await;
    let mut fields: Vec<&str> = rejection(&bad)
        .fields
        .iter()
        .map(|f| f.field.as_str())
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["code", "unit_price_cents", "visit_minutes"]);
    applied_seq(
        &admin
            .push_one(Mutation::UpdatePriceItem(UpdatePriceItem {
                id: c30,
                base_version: item.version,
                fields: PriceItemPatch {
                    retired: Some(true),
                    visit_minutes: Some(None),
                    ..PriceItemPatch::default()
                },
            }))
            .await,
    );
    let retired = reception.table(Table::PriceItems).await[&c30]
        .data
        .clone()
        .unwrap();
    assert_eq!(retired["retired"], true);
    assert!(retired.get("visit_minutes").is_none(), "{retired}");

    // A draft may start empty; it owes nothing and takes no payment.
    let patient = Uuid::now_v7();
    applied_seq(
        &reception
            .push_one(Mutation::CreatePatient(CreatePatient {
                id: patient,
                first_name: "Britt".into(),
                last_name: "Billed".into(),
                date_of_birth: "1970-01-01".parse().unwrap(),
                phone: None,
                email: None,
                address: None,
                sex: None,
                emergency_contact: None,
                emergency_phone: None,
                insurer: None,
                insurance_number: None,
                alerts: None,
            }))
            .await,
    );
    let id = Uuid::now_v7();
    applied_seq(
        &reception
            .push_one(Mutation::CreateInvoice(CreateInvoice {
                id,
                patient_id: patient,
                appointment_id: None,
                lines: vec![],
                issued_at: ts("2030-01-02T09:00:00Z"),
                draft: true,
            }))
            .await,
    );
    let (v, draft) = invoice(&reception, id).await;
    assert_eq!(draft["status"], "draft");
    let pay = |amount: i64| {
        Mutation::RecordPayment(RecordPayment {
            id: Uuid::now_v7(),
            invoice_id: id,
            amount_cents: amount,
            method: PaymentMethod::Cash,
            paid_at: ts("2030-01-02T09:30:00Z"),
        })
    };
    let on_draft = reception.push_one(pay(100)).await;
    assert_eq!(rule_of(&on_draft), Some(Rule::InvoiceClosed));
    let empty = reception
        .push_one(Mutation::IssueInvoice(IssueInvoice {
            id,
            base_version: v,
            issued_at: ts("2030-01-02T09:10:00Z"),
        }))
        .await;
    assert_eq!(rule_of(&empty), Some(Rule::InvoiceEmpty));

    // Lines change while a draft; a bad line is named by its place.
    let bad_line = reception
        .push_one(Mutation::UpdateInvoiceLines(UpdateInvoiceLines {
            id,
            base_version: v,
            lines: vec![line("Consultation", 1, 6500), line("", 0, 100)],
        }))
        .await;
    let mut fields: Vec<&str> = rejection(&bad_line)
        .fields
        .iter()
        .map(|f| f.field.as_str())
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["lines.1.description", "lines.1.quantity"]);
    applied_seq(
        &reception
            .push_one(Mutation::UpdateInvoiceLines(UpdateInvoiceLines {
                id,
                base_version: v,
                lines: vec![line("Consultation", 1, 6500), line("Bandage", 2, 750)],
            }))
            .await,
    );
    let (v, draft) = invoice(&reception, id).await;
    assert_eq!(draft["total_cents"], 8000);
    assert_eq!(draft["status"], "draft");

    // Another desk's edit after the version this desk saw stops the issue:
    // nothing goes out that the desk did not show.
    let mut other_desk = Api::login(&server, "reception").await;
    applied_seq(
        &other_desk
            .push_one(Mutation::UpdateInvoiceLines(UpdateInvoiceLines {
                id,
                base_version: v,
                lines: vec![line("Consultation", 1, 6500), line("Bandage", 3, 750)],
            }))
            .await,
    );
    let stale = reception
        .push_one(Mutation::IssueInvoice(IssueInvoice {
            id,
            base_version: v,
            issued_at: ts("2030-01-02T09:10:00Z"),
        }))
        .await;
    assert_eq!(rejection(&stale).code, RejectCode::Conflict);
    let (v, draft) = invoice(&reception, id).await;
    assert_eq!(
        (draft["status"].as_str(), draft["total_cents"].as_i64()),
        (Some("draft"), Some(8750))
    );
    applied_seq(
        &reception
            .push_one(Mutation::IssueInvoice(IssueInvoice {
                id,
                base_version: v,
                issued_at: ts("2030-01-02T09:10:00Z"),
            }))
            .await,
    );
    let (v, issued) = invoice(&reception, id).await;
    assert_eq!(issued["status"], "open");
    assert_eq!(issued["issued_at"], "2030-01-02T09:10:00Z");

    // Issued: lines are final.
    let after_issue = reception
        .push_one(Mutation::UpdateInvoiceLines(UpdateInvoiceLines {
            id,
            base_version: v,
            lines: vec![line("Consultation", 1, 1)],
        }))
        .await;
    assert_eq!(rule_of(&after_issue), Some(Rule::InvoiceIssued));

    // Partial payment, then nothing over the balance, then the rest.
    applied_seq(&reception.push_one(pay(5000)).await);
    let over = reception.push_one(pay(3751)).await;
    assert_eq!(rejection(&over).fields[0].field, "amount_cents");
    assert_eq!(rejection(&over).fields[0].max, Some(3750));
    applied_seq(&reception.push_one(pay(3750)).await);
    let (_, paid) = invoice(&reception, id).await;
    assert_eq!(
        (paid["status"].as_str(), paid["paid_cents"].as_i64()),
        (Some("paid"), Some(8750))
    );

    // A refund needs the invoice void first; a void needs a reason.
    let refund = |amount: i64| {
        Mutation::RefundPayment(RefundPayment {
            id: Uuid::now_v7(),
            invoice_id: id,
            amount_cents: amount,
            method: PaymentMethod::Cash,
            reason: "Billed twice for the same visit".into(),
            refunded_at: ts("2030-01-02T11:00:00Z"),
        })
    };
    let early = reception.push_one(refund(100)).await;
    assert_eq!(rule_of(&early), Some(Rule::RefundNotDue));
    let no_reason = reception
        .push_one(Mutation::VoidInvoice(VoidInvoice {
            id,
            reason: "  ".into(),
        }))
        .await;
    assert_eq!(rejection(&no_reason).fields[0].field, "reason");
    applied_seq(
        &reception
            .push_one(Mutation::VoidInvoice(VoidInvoice {
                id,
                reason: " Billed twice for the same visit ".into(),
            }))
            .await,
    );
    let (_, void) = invoice(&reception, id).await;
    assert_eq!(void["status"], "void");
    assert_eq!(void["void_reason"], "Billed twice for the same visit");
    assert!(void["voided_at"].is_string());
    assert_eq!(void["paid_cents"], 8750, "payments stay recorded");
    let again = reception
        .push_one(Mutation::VoidInvoice(VoidInvoice {
            id,
            reason: "again".into(),
        }))
        .await;
    assert_eq!(rule_of(&again), Some(Rule::InvoiceNotVoidable));
    let no_payment = reception.push_one(pay(1)).await;
    assert_eq!(rule_of(&no_payment), Some(Rule::InvoiceClosed));

    // Refunds up to what was paid, not a cent more.
    applied_seq(&reception.push_one(refund(8000)).await);
    let too_much = reception.push_one(refund(751)).await;
    assert_eq!(rule_of(&too_much), Some(Rule::RefundNotDue));
    applied_seq(&reception.push_one(refund(750)).await);
    let (_, refunded) = invoice(&reception, id).await;
    assert_eq!(refunded["refunded_cents"], 8750);
    let refunds: Vec<Value> = reception
        .table(Table::Payments)
        .await
        .into_values()
        .filter_map(|r| r.data)
        .filter(|p| p["invoice_id"] == id.to_string() && p["refund"] == true)
        .collect();
    assert_eq!(refunds.len(), 2);
    assert!(
        refunds
            .iter()
            .all(|r| r["reason"] == "Billed twice for the same visit")
    );
    // A plain payment row carries neither key (older rows read the same).
    let plain = reception
        .table(Table::Payments)
        .await
        .into_values()
        .filter_map(|r| r.data)
        .find(|p| p["invoice_id"] == id.to_string() && p.get("refund").is_none())
        .unwrap();
    assert!(plain.get("reason").is_none(), "{plain}");

    // Every step is in the invoice's audited history, with who did it.
    let history: Value = admin
        .get(&format!("/v1/history/invoices/{id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let steps: Vec<&str> = history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["mutation"].as_str().unwrap_or(""))
        .collect();
    for step in [
        "create_invoice",
        "update_invoice_lines",
        "issue_invoice",
        "record_payment",
        "void_invoice",
        "refund_payment",
    ] {
        assert!(steps.contains(&step), "{step} missing from {steps:?}");
    }
}
