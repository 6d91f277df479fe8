//! Password hashing, shared by the server (its staff accounts) and the
//! client (the verifier that lets a user who signed in on a machine before
//! sign in there again while the server cannot be reached).
//!
//! Hashes are Argon2id PHC strings with the argon2 crate's default
//! parameters (m=19 MiB, t=2, p=1) and a random salt. Pure computation: no
//! I/O beyond the operating system's random source for the salt.

use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use rand::rngs::OsRng;

/// Hashing failed (only on absurd inputs).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// Hashes a password with Argon2id and a random salt.
pub fn hash_password(password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Whether `password` matches the PHC string `hash` (false for a malformed
/// hash).
pub fn password_matches(password: &str, hash: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_matches_its_password_only() {
        let h = hash_password("correct horse").expect("hashes");
        assert!(h.starts_with("$argon2id$"));
        assert!(password_matches("correct horse", &h));
        assert!(!password_matches("wrong horse", &h));
        assert!(!password_matches("correct horse", "not a hash"));
    }
}
