//! The keys of the encrypted mirrors.
//!
//! Each user's mirror on this machine is a SQLCipher database with its own
//! random 256-bit key. The key is kept twice:
//! - in the OS key store ([`SecretStore`]: Secret Service on Linux,
//!   Keychain, Credential Manager), so the desk reopens without asking;
//! - wrapped by the user's password ([`WrappedKey`]: Argon2id, then
//!   XChaCha20-Poly1305) in a file beside the database, so the user can
//!   open it with their password when the key store is unavailable, and so
//!   that an offline sign-in proves the password by unwrapping it.
//!
//! Without the key store's entry and without the password, the files
//! reveal nothing. Keys live in memory in [`MirrorKey`], wiped on drop.

use crate::error::{ClientError, ClientResult};
use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use zeroize::{Zeroize, Zeroizing};

/// The name of a mirror's key in the key store: service and account.
pub(crate) const KEYRING_SERVICE: &str = "org.clinicsync.desk";

/// A mirror's key.
#[derive(Clone)]
pub(crate) struct MirrorKey(Zeroizing<[u8; 32]>);

impl MirrorKey {
    /// A new random key.
    pub(crate) fn generate() -> MirrorKey {
        let mut key = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(key.as_mut());
        MirrorKey(key)
    }

    fn from_slice(bytes: &[u8]) -> Option<MirrorKey> {
        let array: [u8; 32] = bytes.try_into().ok()?;
        Some(MirrorKey(Zeroizing::new(array)))
    }

    /// The `PRAGMA key` value: the raw key, so SQLCipher derives nothing.
    pub(crate) fn pragma(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("x'{}'", hex_of(self.0.as_ref())))
    }

    fn bytes(&self) -> &[u8] {
        self.0.as_ref()
    }

    /// A key kept in the clear in `path` (made on first use): only for the
    /// mirrors of tests and fuzzing ([`crate::internals`]).
    #[cfg(any(test, feature = "internals"))]
    pub(crate) fn for_tests(path: &std::path::Path) -> ClientResult<MirrorKey> {
        let io = |source| ClientError::Io {
            context: format!("test key {}", path.display()),
            source,
        };
        match std::fs::read(path) {
            Ok(bytes) => {
                MirrorKey::from_slice(&bytes).ok_or_else(|| ClientError::corrupt("test key"))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = MirrorKey::generate();
                std::fs::write(path, key.bytes()).map_err(io)?;
                Ok(key)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// The raw key, for the key store.
    pub(crate) fn secret_copy(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.0.to_vec())
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Argon2id parameters for wrapping a key with a password: 64 MiB, 3
/// passes, one lane. Stronger than the server's password hashes (OWASP's
/// second option): the wrapped key sits on a laptop that may be stolen, so
/// each guess must be expensive. About a quarter of a second here.
pub(crate) const WRAP_MEMORY_KIB: u32 = 64 * 1024;
/// Passes.
pub(crate) const WRAP_PASSES: u32 = 3;

/// A mirror key wrapped by a password, as stored in `key.wrapped`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WrappedKey {
    /// Format version.
    pub v: u32,
    /// Argon2id memory, KiB.
    pub m: u32,
    /// Argon2id passes.
    pub t: u32,
    /// Argon2id lanes.
    pub p: u32,
    /// Salt (base64).
    pub salt: String,
    /// XChaCha20-Poly1305 nonce (base64).
    pub nonce: String,
    /// The encrypted key and its tag (base64).
    pub sealed: String,
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

fn kek(password: &str, salt: &[u8], m: u32, t: u32, p: u32) -> ClientResult<Zeroizing<[u8; 32]>> {
    let params = Params::new(m, t, p, Some(32))
        .map_err(|e| ClientError::corrupt(format!("key file parameters: {e}")))?;
    let mut out = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password_into(password.as_bytes(), salt, out.as_mut())
        .map_err(|e| ClientError::corrupt(format!("key derivation: {e}")))?;
    Ok(out)
}

impl WrappedKey {
    /// Wraps `key` with `password`, bound to `user` (the file cannot be
    /// swapped between users' folders).
    pub(crate) fn seal(key: &MirrorKey, password: &str, user: Uuid) -> ClientResult<WrappedKey> {
        let mut salt = [0u8; 16];
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let kek = kek(password, &salt, WRAP_MEMORY_KIB, WRAP_PASSES, 1)?;
        let cipher = XChaCha20Poly1305::new(kek.as_ref().into());
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: key.bytes(),
                    aad: user.as_bytes(),
                },
            )
            .map_err(|_| ClientError::corrupt("the key could not be sealed"))?;
        Ok(WrappedKey {
            v: 1,
            m: WRAP_MEMORY_KIB,
            t: WRAP_PASSES,
            p: 1,
            salt: b64(&salt),
            nonce: b64(&nonce),
            sealed: b64(&sealed),
        })
    }

    /// The key, when `password` is the one it was wrapped with; `None` for
    /// a wrong password.
    pub(crate) fn open(&self, password: &str, user: Uuid) -> ClientResult<Option<MirrorKey>> {
        let bad = || ClientError::corrupt("the key file is damaged");
        let (salt, nonce, sealed) = (
            unb64(&self.salt).ok_or_else(bad)?,
            unb64(&self.nonce).ok_or_else(bad)?,
            unb64(&self.sealed).ok_or_else(bad)?,
        );
        if self.v != 1 || nonce.len() != 24 {
            return Err(bad());
        }
        let kek = kek(password, &salt, self.m, self.t, self.p)?;
        let cipher = XChaCha20Poly1305::new(kek.as_ref().into());
        let opened = cipher.decrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &sealed,
                aad: user.as_bytes(),
            },
        );
        match opened {
            Ok(mut plain) => {
                let key = MirrorKey::from_slice(&plain);
                plain.zeroize();
                key.map(Some).ok_or_else(bad)
            }
            Err(_) => Ok(None),
        }
    }
}

/// Proof, kept beside a mirror (`key.check`), of which key the mirror was
/// last opened with: a constant sealed with the key (XChaCha20-Poly1305).
/// SQLCipher cannot tell a wrong key from a damaged first page (both read
/// as "file is not a database"); this file can, so a wrong key is never
/// taken for damage (and never leads to the file being set aside). It
/// reveals nothing about the key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct KeyCheck {
    /// Format version.
    pub v: u32,
    /// Nonce (base64).
    pub nonce: String,
    /// The sealed constant and its tag (base64).
    pub sealed: String,
}

/// What [`KeyCheck`] seals (and binds as associated data).
const KEY_CHECK_TEXT: &[u8] = b"clinic-sync mirror key check v1";

impl KeyCheck {
    /// A new check of `key`.
    pub(crate) fn make(key: &MirrorKey) -> ClientResult<KeyCheck> {
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let cipher = XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(key.bytes()));
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: KEY_CHECK_TEXT,
                    aad: KEY_CHECK_TEXT,
                },
            )
            .map_err(|_| ClientError::corrupt("the key check could not be sealed"))?;
        Ok(KeyCheck {
            v: 1,
            nonce: b64(&nonce),
            sealed: b64(&sealed),
        })
    }

    /// Whether `key` is the key this check was made with; `None` when the
    /// check itself is unreadable (then it proves nothing either way).
    pub(crate) fn matches(&self, key: &MirrorKey) -> Option<bool> {
        let nonce = unb64(&self.nonce)?;
        let sealed = unb64(&self.sealed)?;
        if self.v != 1 || nonce.len() != 24 {
            return None;
        }
        let cipher = XChaCha20Poly1305::new(chacha20poly1305::Key::from_slice(key.bytes()));
        let opened = cipher.decrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &sealed,
                aad: KEY_CHECK_TEXT,
            },
        );
        Some(opened.is_ok_and(|plain| plain == KEY_CHECK_TEXT))
    }
}

/// Why the key store could not be used.
#[derive(Debug, thiserror::Error)]
#[error("the system's key store cannot be used: {0}")]
pub struct KeyStoreUnavailable(pub String);

/// Where the keys of the mirrors are kept on this machine: the OS key
/// store by default. Calls block (D-Bus, Keychain): call them off the async
/// workers.
pub trait SecretStore: Send + Sync + 'static {
    /// The secret named `name`, if there is one.
    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, KeyStoreUnavailable>;
    /// Stores (replaces) a secret.
    fn set(&self, name: &str, secret: &[u8]) -> Result<(), KeyStoreUnavailable>;
    /// Removes a secret (a missing one is fine).
    fn delete(&self, name: &str) -> Result<(), KeyStoreUnavailable>;
}

/// The OS key store through the `keyring` crate.
pub(crate) struct OsKeyStore;

fn entry(name: &str) -> Result<keyring::Entry, KeyStoreUnavailable> {
    keyring::Entry::new(KEYRING_SERVICE, name).map_err(|e| KeyStoreUnavailable(e.to_string()))
}

impl SecretStore for OsKeyStore {
    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, KeyStoreUnavailable> {
        match entry(name)?.get_secret() {
            Ok(secret) => Ok(Some(secret)),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(KeyStoreUnavailable(e.to_string())),
        }
    }

    fn set(&self, name: &str, secret: &[u8]) -> Result<(), KeyStoreUnavailable> {
        entry(name)?
            .set_secret(secret)
            .map_err(|e| KeyStoreUnavailable(e.to_string()))
    }

    fn delete(&self, name: &str) -> Result<(), KeyStoreUnavailable> {
        match entry(name)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(KeyStoreUnavailable(e.to_string())),
        }
    }
}

/// A mirror key from the key store, if it holds one. `Ok(None)` also when
/// the store cannot be used (logged): the password then opens the mirror.
pub(crate) fn stored_key(store: &dyn SecretStore, name: &str) -> Option<MirrorKey> {
    match store.get(name) {
        Ok(Some(secret)) => {
            let key = MirrorKey::from_slice(&secret);
            if key.is_none() {
                tracing::warn!("a mirror key in the key store has the wrong length; ignored");
            }
            key
        }
        Ok(None) => None,
        Err(e) => {
            tracing::info!(error = %e, "no key store; the password opens the local data");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_check_tells_its_key_from_another() {
        let key = MirrorKey::generate();
        let check = KeyCheck::make(&key).unwrap();
        assert_eq!(check.matches(&key), Some(true));
        assert_eq!(check.matches(&MirrorKey::generate()), Some(false));
        let text = serde_json::to_string(&check).unwrap();
        assert!(!text.contains(&hex_of(key.bytes())));
        let mut damaged = check.clone();
        damaged.nonce.truncate(5);
        assert_eq!(damaged.matches(&key), None);
    }

    #[test]
    fn a_wrapped_key_opens_with_its_password_and_user_only() {
        let key = MirrorKey::generate();
        let user = Uuid::now_v7();
        let wrapped = WrappedKey::seal(&key, "correct horse battery", user).unwrap();
        let opened = wrapped
            .open("correct horse battery", user)
            .unwrap()
            .unwrap();
        assert_eq!(opened.bytes(), key.bytes());
        assert!(wrapped.open("wrong horse battery", user).unwrap().is_none());
        assert!(
            wrapped
                .open("correct horse battery", Uuid::now_v7())
                .unwrap()
                .is_none()
        );
        let text = serde_json::to_string(&wrapped).unwrap();
        assert!(
            !text.contains(&hex_of(key.bytes())),
            "the key is not in the file"
        );
        assert!(
            !text.contains(&b64(key.bytes())),
            "the key is not in the file"
        );
        // A changed byte fails authentication, like a wrong password.
        let mut damaged = wrapped.clone();
        let mut sealed = unb64(&damaged.sealed).unwrap();
        sealed[3] ^= 0x40;
        damaged.sealed = b64(&sealed);
        assert!(
            damaged
                .open("correct horse battery", user)
                .unwrap()
                .is_none()
        );
        // A file that is not even base64 any more is reported as damaged.
        let mut truncated = wrapped.clone();
        truncated.sealed.truncate(10);
        assert!(matches!(
            truncated.open("correct horse battery", user),
            Err(ClientError::Corrupt { .. })
        ));
    }
}
