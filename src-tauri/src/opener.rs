//! Hands a printout to the system's PDF viewer, where the person prints it
//! (its print dialog knows the clinic's printers; the desk does not).
//!
//! `CLINIC_PDF_OPENER` names another program to run with the file as its
//! one argument (IT's choice of viewer; the WebDriver tests use a script
//! that records the file). Otherwise: `xdg-open` on Linux, `open` on macOS,
//! the shell's `start` on Windows.

use clinic_client::Printout;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn command(path: &std::path::Path) -> Command {
    if let Some(program) = std::env::var_os("CLINIC_PDF_OPENER").filter(|p| !p.is_empty()) {
        let mut c = Command::new(program);
        c.arg(path);
        return c;
    }
    if cfg!(target_os = "macos") {
        let mut c = Command::new("open");
        c.arg(path);
        c
    } else if cfg!(windows) {
        let mut c = Command::new("cmd");
        c.args(["/C", "start", ""]).arg(path);
        c
    } else {
        let mut c = Command::new("xdg-open");
        c.arg(path);
        c
    }
}

/// Starts the viewer on `path` without waiting for it; says whether it
/// could be started (the desk then tells the person where the file is).
pub fn open(path: PathBuf) -> Printout {
    let started = command(&path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let opened = match started {
        Ok(mut child) => {
            // Reaped on a thread of its own: a viewer may run for hours.
            std::thread::spawn(move || child.wait());
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, "no PDF viewer could be started");
            false
        }
    };
    Printout {
        path: path.display().to_string(),
        opened,
    }
}
