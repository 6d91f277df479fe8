//! Starting the app: open the client on the data directory, sign in from
//! the environment when asked (demo, tests), start sync and the event
//! forwarding, register the commands.

use clinic_client::{ClientConfig, ClinicClient, DeskSettings};
use tauri::Manager;

/// What the setup needs from the environment.
struct Startup {
    server: Option<String>,
    user: Option<String>,
    password: Option<String>,
}

fn setup(app: &mut tauri::App) -> Result<(), Box<dyn std::error::Error>> {
    let dir = match std::env::var_os("CLINIC_DATA_DIR") {
        Some(dir) => dir.into(),
        None => app.path().app_data_dir()?,
    };
    // `CLINIC_CA_FILE`: the clinic CA (or several, `:`-separated) IT hands
    // out, trusted besides the public CAs and the ones confirmed here.
    let ca_files = std::env::var_os("CLINIC_CA_FILE")
        .map(|v| std::env::split_paths(&v).collect())
        .unwrap_or_default();
    let client = tauri::async_runtime::block_on(ClinicClient::open(
        ClientConfig::new(dir).with_ca_files(ca_files),
    ))?;
    app.manage(client.clone());
    app.manage(crate::commands::Defaults {
        server: std::env::var("CLINIC_SERVER").ok(),
        desk: desk_settings(),
    });
    let startup = Startup {
        server: std::env::var("CLINIC_SERVER").ok(),
        user: std::env::var("CLINIC_LOGIN_USER").ok(),
        password: std::env::var("CLINIC_LOGIN_PASSWORD").ok(),
    };
    let handle = app.handle().clone();
    tauri::async_runtime::spawn(async move {
        tauri::async_runtime::spawn(crate::events::forward(handle, client.clone()));
        auto_sign_in(&client, startup).await;
        client.run().await;
    });
    Ok(())
}

/// Signs in from the environment when nobody is signed in here (demo and
/// tests); a failure is logged and the sign-in screen shows.
/// The desk's settings from its environment: `CLINIC_IDLE_LOCK_MINUTES`
/// (0 never locks by itself; decimals allowed, e.g. 0.5). A value that is
/// not a number of minutes is logged and the default kept: a typo must not
/// leave a desk unlocked.
fn desk_settings() -> DeskSettings {
    let mut settings = DeskSettings::default();
    if let Ok(value) = std::env::var("CLINIC_IDLE_LOCK_MINUTES") {
        match value.trim().parse::<f64>() {
            // At most a day: a longer lock is no lock.
            Ok(minutes) if minutes.is_finite() && (0.0..=1440.0).contains(&minutes) => {
                settings.idle_lock_seconds = (minutes * 60.0).round() as u32;
            }
            _ => tracing::warn!(
                value = %value,
                default_seconds = settings.idle_lock_seconds,
                "CLINIC_IDLE_LOCK_MINUTES is not a number of minutes between 0 and 1440; the default is used"
            ),
        }
    }
    settings
}

async fn auto_sign_in(client: &ClinicClient, startup: Startup) {
    let Ok(identity) = client.identity().await else {
        return;
    };
    let server = startup.server.or(identity.server_url);
    if let (Some(server), Some(user), Some(password), false) =
        (server, startup.user, startup.password, identity.signed_in)
        && let Err(e) = client.sign_in(&server, &user, &password).await
    {
        tracing::warn!(error = %e, "automatic sign-in failed");
    }
}

/// Builds and runs the app until its window closes.
pub fn run_app() -> tauri::Result<()> {
    let app = tauri::Builder::default()
        .setup(setup)
        .invoke_handler(crate::commands::handler())
        .build(tauri::generate_context!())?;
    app.run(|handle, event| {
        // The local database is closed before the process exits: SQLCipher's
        // exit handler must not run while a connection is still closing.
        if let tauri::RunEvent::Exit = event
            && let Some(client) = handle.try_state::<ClinicClient>()
        {
            let client = client.inner().clone();
            tauri::async_runtime::block_on(client.close());
        }
    });
    Ok(())
}
