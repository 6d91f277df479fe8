//! The commands the WebView may call: one-line shims over the facade. The
//! list here, `build.rs` and `capabilities/default.json` name the same
//! commands (build.rs generates their permissions).

use clinic_client::{
    Chart, ChartCare, ClientError, ClinicClient, DayReport, Delivery, DeskSettings, Entity,
    FreeSlot, PendingEntry, Printout, Receipt, RejectedEntry, Row, SessionInfo, SignInResult,
    SlotQuery,
};
use clinic_shared::model::{
    Appointment, InventoryItem, Invoice, Patient, PriceItem, Referral, Staff, Table,
};
use clinic_shared::mutation::Mutation;
use clinic_shared::protocol::{AccessLogResponse, HistoryResponse, Rejection};
use clinic_shared::time::LocalInstant;
use tauri::State;
use uuid::Uuid;

type Answer<T> = Result<T, ClientError>;
type Client<'a> = State<'a, ClinicClient>;

/// Settings from the environment the UI asks for.
pub struct Defaults {
    /// `CLINIC_SERVER`: the server address the sign-in screen starts with.
    pub server: Option<String>,
    /// `CLINIC_IDLE_LOCK_MINUTES` and the like.
    pub desk: DeskSettings,
}

#[tauri::command]
async fn session_info(c: Client<'_>) -> Answer<SessionInfo> {
    c.session_info().await
}

#[tauri::command]
fn default_server(d: State<'_, Defaults>) -> Option<String> {
    d.server.clone()
}

#[tauri::command]
async fn sign_in(
    c: Client<'_>,
    server_url: String,
    username: String,
    password: String,
) -> Answer<SignInResult> {
    c.sign_in(&server_url, &username, &password).await
}

#[tauri::command]
fn trust_server(c: Client<'_>, server_url: String, fingerprint: String) -> Answer<()> {
    c.trust_server(&server_url, &fingerprint)
}

#[tauri::command]
async fn sign_out(c: Client<'_>, discard_pending: bool) -> Answer<()> {
    c.sign_out(discard_pending).await
}

#[tauri::command]
fn desk_settings(d: State<'_, Defaults>) -> DeskSettings {
    d.desk.clone()
}

#[tauri::command]
fn lock(c: Client<'_>) {
    c.lock()
}

#[tauri::command]
async fn unlock(c: Client<'_>, password: String) -> Answer<()> {
    c.unlock(&password).await
}

#[tauri::command]
async fn change_password(
    c: Client<'_>,
    current_password: String,
    new_password: String,
) -> Answer<()> {
    c.change_password(&current_password, &new_password)
        .await
        .map(|_| ())
}

#[tauri::command]
async fn report_view(c: Client<'_>, table: Table, id: Uuid) -> Answer<()> {
    c.report_view(table, id).await
}

#[tauri::command]
async fn access_log(c: Client<'_>, patient_id: Uuid) -> Answer<AccessLogResponse> {
    c.access_log(patient_id).await
}

#[tauri::command]
async fn clinical_records(c: Client<'_>, patient_id: Uuid) -> Answer<ChartCare> {
    c.clinical_records(patient_id).await
}

#[tauri::command]
async fn break_the_glass(c: Client<'_>, patient_id: Uuid, reason: String) -> Answer<ChartCare> {
    c.break_the_glass(patient_id, &reason).await
}

#[tauri::command]
fn sync_now(c: Client<'_>) {
    c.sync_now()
}

#[tauri::command]
async fn row(c: Client<'_>, table: Table, id: Uuid) -> Answer<Option<Row>> {
    c.row(table, id).await
}

#[tauri::command]
async fn patients(c: Client<'_>) -> Answer<Vec<Entity<Patient>>> {
    c.patients().await
}

#[tauri::command]
async fn search_patients(
    c: Client<'_>,
    query: String,
    limit: usize,
) -> Answer<Vec<Entity<Patient>>> {
    c.search_patients(&query, limit).await
}

#[tauri::command]
async fn patient_chart(c: Client<'_>, id: Uuid) -> Answer<Option<Chart>> {
    c.chart(id).await
}

#[tauri::command]
async fn staff(c: Client<'_>) -> Answer<Vec<Entity<Staff>>> {
    c.staff().await
}

#[tauri::command]
async fn day_schedule(
    c: Client<'_>,
    date: chrono::NaiveDate,
    doctor: Option<Uuid>,
) -> Answer<Vec<Entity<Appointment>>> {
    c.day_schedule(date, doctor).await
}

#[tauri::command]
async fn inventory(c: Client<'_>) -> Answer<Vec<Entity<InventoryItem>>> {
    c.inventory().await
}

#[tauri::command]
async fn low_stock(c: Client<'_>) -> Answer<Vec<Entity<InventoryItem>>> {
    c.low_stock().await
}

#[tauri::command]
async fn invoices(c: Client<'_>) -> Answer<Vec<Entity<Invoice>>> {
    c.invoices().await
}

#[tauri::command]
async fn referrals(c: Client<'_>) -> Answer<Vec<Entity<Referral>>> {
    c.referrals().await
}

#[tauri::command]
async fn mutate(c: Client<'_>, mutation: Mutation) -> Answer<Receipt> {
    c.mutate(mutation).await
}

#[tauri::command]
async fn check_mutation(c: Client<'_>, mutation: Mutation) -> Answer<Option<Rejection>> {
    c.check(mutation).await
}

#[tauri::command]
async fn mutation_state(c: Client<'_>, mutation_id: u64) -> Answer<Delivery> {
    c.mutation_state(mutation_id).await
}

#[tauri::command]
async fn free_slots(c: Client<'_>, query: SlotQuery) -> Answer<Vec<FreeSlot>> {
    c.free_slots(query).await
}

#[tauri::command]
async fn local_instant(
    c: Client<'_>,
    date: chrono::NaiveDate,
    time: chrono::NaiveTime,
) -> Answer<LocalInstant> {
    c.local_instant(date, time).await
}

#[tauri::command]
async fn pending_changes(c: Client<'_>) -> Answer<Vec<PendingEntry>> {
    c.pending().await
}

#[tauri::command]
async fn rejected_changes(c: Client<'_>) -> Answer<Vec<RejectedEntry>> {
    c.rejected().await
}

#[tauri::command]
async fn dismiss_rejected(c: Client<'_>, mutation_id: u64) -> Answer<bool> {
    c.dismiss_rejected(mutation_id).await
}

#[tauri::command]
async fn dismiss_server_restored(c: Client<'_>) -> Answer<()> {
    c.dismiss_server_restored().await
}

#[tauri::command]
async fn dismiss_mirror_rebuilt(c: Client<'_>) -> Answer<()> {
    c.dismiss_mirror_rebuilt().await
}

#[tauri::command]
async fn record_history(c: Client<'_>, table: Table, id: Uuid) -> Answer<HistoryResponse> {
    c.history(table, id).await
}

#[tauri::command]
async fn print_day_sheet(
    c: Client<'_>,
    date: chrono::NaiveDate,
    doctor: Option<Uuid>,
) -> Answer<Printout> {
    let pdf = c.print_day_sheet(date, doctor).await?;
    let path = c
        .save_printout(&format!("day-sheet-{date}.pdf"), &pdf)
        .await?;
    Ok(crate::opener::open(path))
}

#[tauri::command]
async fn print_invoice(c: Client<'_>, id: Uuid) -> Answer<Printout> {
    let pdf = c.print_invoice(id).await?;
    let path = c
        .save_printout(&format!("invoice-{}.pdf", id.simple()), &pdf)
        .await?;
    Ok(crate::opener::open(path))
}

#[tauri::command]
async fn price_list(c: Client<'_>) -> Answer<Vec<Entity<PriceItem>>> {
    c.price_list().await
}

/// A draft started from a visit: its id (the change is queued like any).
#[tauri::command]
async fn draft_invoice_for_visit(c: Client<'_>, appointment: Uuid) -> Answer<Uuid> {
    Ok(c.draft_invoice_for_visit(appointment).await?.0)
}

#[tauri::command]
async fn day_report(
    c: Client<'_>,
    date: chrono::NaiveDate,
    staff: Option<Uuid>,
) -> Answer<DayReport> {
    c.day_report(date, staff).await
}

#[tauri::command]
async fn print_day_report(
    c: Client<'_>,
    date: chrono::NaiveDate,
    staff: Option<Uuid>,
) -> Answer<Printout> {
    let pdf = c.print_day_report(date, staff).await?;
    let path = c
        .save_printout(&format!("end-of-day-{date}.pdf"), &pdf)
        .await?;
    Ok(crate::opener::open(path))
}

/// Every command, for the builder.
pub fn handler() -> impl Fn(tauri::ipc::Invoke) -> bool + Send + Sync + 'static {
    tauri::generate_handler![
        session_info,
        default_server,
        sign_in,
        trust_server,
        sign_out,
        desk_settings,
        lock,
        unlock,
        change_password,
        report_view,
        access_log,
        clinical_records,
        break_the_glass,
        sync_now,
        row,
        patients,
        search_patients,
        patient_chart,
        staff,
        day_schedule,
        inventory,
        low_stock,
        invoices,
        referrals,
        mutate,
        check_mutation,
        mutation_state,
        free_slots,
        local_instant,
        pending_changes,
        rejected_changes,
        dismiss_rejected,
        dismiss_server_restored,
        dismiss_mirror_rebuilt,
        record_history,
        print_day_sheet,
        print_invoice,
        price_list,
        draft_invoice_for_visit,
        day_report,
        print_day_report,
    ]
}
