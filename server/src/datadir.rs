//! The data directory's permissions: nothing in it is for anyone but the
//! server's own user.
//!
//! `clinic.db` (with its `-wal`, `-shm` and `-journal`) holds every patient
//! record and the staff's password hashes; `tls/` holds private keys. So the
//! directory and `tls/` are 0700 and those files 0600. New files get that
//! from the process umask (077, set at start); files made before (by an
//! older version, a restore from backup, a copy) are tightened on every
//! start. Only the server's own files are touched: `--data-dir` may point
//! at a directory that holds other things, whose modes are not ours to
//! change. Symbolic links are left alone for the same reason.

use std::io;
use std::path::{Path, PathBuf};

/// A path whose mode was tightened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tightened {
    /// The path.
    pub path: PathBuf,
    /// Its mode before (permission bits).
    pub was: u32,
    /// Its mode now.
    pub now: u32,
}

/// Makes files this process creates private to its user (umask 077).
pub fn private_umask() {
    #[cfg(unix)]
    {
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    }
}

/// Creates `dir` if needed and makes it and the server's files in it
/// private to the owner: `dir` and `dir/tls` 0700, `clinic.db*` and every
/// file in `tls/` 0600. Returns what it changed.
pub fn secure(dir: &Path) -> io::Result<Vec<Tightened>> {
    std::fs::create_dir_all(dir)?;
    let mut changed = Vec::new();
    secure_files(dir, &mut changed)?;
    Ok(changed)
}

/// Whether a file in the data directory is one of the database's.
fn is_database_file(name: &str) -> bool {
    name == "clinic.db" || name.starts_with("clinic.db-")
}

/// When root works on a data directory that belongs to another user (the
/// service's `clinic`), the files it makes would be root's and unreadable
/// by the server: the warning to print, if so.
pub fn foreign_owner_warning(dir: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let owner = std::fs::metadata(dir).ok()?.uid();
        let me = rustix::process::getuid().as_raw();
        (me == 0 && owner != 0).then(|| {
            format!(
                "warning: {} belongs to uid {owner} but this runs as root: files made now would be root's and unreadable by the server; run it as the directory's owner (e.g. sudo -u clinic clinic-server ...)",
                dir.display()
            )
        })
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

#[cfg(unix)]
fn secure_files(dir: &Path, changed: &mut Vec<Tightened>) -> io::Result<()> {
    tighten(dir, 0o700, changed)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if kind.is_file() && is_database_file(&name) {
            tighten(&entry.path(), 0o600, changed)?;
        } else if kind.is_dir() && name == "tls" {
            tighten(&entry.path(), 0o700, changed)?;
            for inner in std::fs::read_dir(entry.path())? {
                let inner = inner?;
                if inner.file_type()?.is_file() {
                    tighten(&inner.path(), 0o600, changed)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(not(unix))]
fn secure_files(_dir: &Path, _changed: &mut Vec<Tightened>) -> io::Result<()> {
    Ok(())
}

#[cfg(unix)]
fn tighten(path: &Path, mode: u32, changed: &mut Vec<Tightened>) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let was = std::fs::symlink_metadata(path)?.permissions().mode() & 0o7777;
    if was != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
        changed.push(Tightened {
            path: path.to_path_buf(),
            was,
            now: mode,
        });
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn loose_files_and_directories_are_tightened_and_reported() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let db = dir.join("clinic.db");
        std::fs::write(&db, b"x").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::create_dir(dir.join("tls")).unwrap();
        let key = dir.join("tls/server-key.pem");
        std::fs::write(&key, b"k").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o664)).unwrap();
        let outside = root.path().join("outside");
        std::fs::write(&outside, b"o").unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("clinic.db-link")).unwrap();
        let unrelated = dir.join("notes.txt");
        std::fs::write(&unrelated, b"n").unwrap();
        std::fs::set_permissions(&unrelated, std::fs::Permissions::from_mode(0o644)).unwrap();
        let wal = dir.join("clinic.db-wal");
        std::fs::write(&wal, b"w").unwrap();
        std::fs::set_permissions(&wal, std::fs::Permissions::from_mode(0o644)).unwrap();

        let changed = secure(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&dir.join("tls")), 0o700);
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(&wal), 0o600);
        assert_eq!(mode(&outside), 0o644, "a link's target is not ours");
        assert_eq!(
            mode(&unrelated),
            0o644,
            "files that are not the server's are left alone"
        );
        assert!(changed.iter().any(|t| t.path == db && t.was == 0o644));
        assert!(
            secure(&dir).unwrap().is_empty(),
            "a second pass changes nothing"
        );
    }
}
