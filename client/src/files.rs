//! Files the client keeps: private to this user (0600 files in 0700
//! folders) and written whole (a temporary file renamed into place), so a
//! crash never leaves half a file and nobody else on the machine can read
//! them.

use crate::error::{ClientError, ClientResult};
use std::io::Write;
use std::path::Path;

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClientError {
    let context = context.into();
    move |source| ClientError::Io { context, source }
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

/// Creates `dir` (and its parents) and makes it private (0700).
pub(crate) fn private_dir(dir: &Path) -> ClientResult<()> {
    std::fs::create_dir_all(dir).map_err(io(format!("creating the folder {}", dir.display())))?;
    set_mode(dir, 0o700).map_err(io(format!("making {} private", dir.display())))
}

/// Makes an existing file private (0600); a missing one is fine.
pub(crate) fn tighten(path: &Path) -> ClientResult<()> {
    match set_mode(path, 0o600) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(format!("making {} private", path.display()))(e)),
    }
}

/// Writes `bytes` to `path` (0600), replacing it whole.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> ClientResult<()> {
    let tmp = path.with_extension("tmp");
    let written = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    written.map_err(io(format!("writing {}", path.display())))
}

/// Overwrites a file with zeros, then removes it (a missing file is fine).
/// SQLCipher already keeps every page encrypted; this is so that not even
/// the ciphertext or a WAL stays behind.
pub(crate) fn shred(path: &Path) -> ClientResult<()> {
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(format!("reading {}", path.display()))(e)),
    };
    let zero = || -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new().write(true).open(path)?;
        let block = vec![0u8; 64 * 1024];
        let mut left = len;
        while left > 0 {
            let n = usize::try_from(left.min(block.len() as u64)).unwrap_or(block.len());
            file.write_all(&block[..n])?;
            left -= n as u64;
        }
        file.sync_all()
    };
    zero().map_err(io(format!("overwriting {}", path.display())))?;
    std::fs::remove_file(path).map_err(io(format!("removing {}", path.display())))
}
