//! Generates the app's command permissions: only the commands listed here
//! exist for the WebView, and capabilities/default.json grants them to the
//! main window alone.

fn main() {
    let commands = &[
        "session_info",
        "default_server",
        "sign_in",
        "trust_server",
        "sign_out",
        "desk_settings",
        "lock",
        "unlock",
        "change_password",
        "report_view",
        "access_log",
        "clinical_records",
        "break_the_glass",
        "sync_now",
        "row",
        "patients",
        "search_patients",
        "patient_chart",
        "staff",
        "day_schedule",
        "inventory",
        "low_stock",
        "invoices",
        "referrals",
        "mutate",
        "check_mutation",
        "mutation_state",
        "free_slots",
        "local_instant",
        "pending_changes",
        "rejected_changes",
        "dismiss_rejected",
        "dismiss_mirror_rebuilt",
        "record_history",
        "dismiss_server_restored",
        "print_day_sheet",
        "print_invoice",
        "price_list",
        "draft_invoice_for_visit",
        "day_report",
        "print_day_report",
    ];
    let attributes = tauri_build::Attributes::new()
        .app_manifest(tauri_build::AppManifest::new().commands(commands));
    if let Err(e) = tauri_build::try_build(attributes) {
        // Build scripts report failures by panicking; say what failed.
        panic!("tauri build step failed: {e:#}");
    }
}
