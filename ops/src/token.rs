//! Bearer tokens: read from a file that other users cannot read, and
//! compared in constant time so that the answer's timing says nothing
//! about how much of a guess was right.

use std::path::Path;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Shortest token accepted from a file.
pub const MIN_TOKEN_LEN: usize = 16;

/// Reads a bearer token file: one token of at least [`MIN_TOKEN_LEN`]
/// characters without spaces, in a file not readable by every user. The
/// error is a sentence naming the file, for a [`crate::config::FieldError`].
pub fn read_token(path: &Path) -> Result<Arc<[u8]>, String> {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o004 != 0 {
        return Err(format!(
            "{} is readable by every user; chmod o-r it (for example chmod 600)",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let token = text.trim();
    if token.len() < MIN_TOKEN_LEN || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{} must hold one token of at least {MIN_TOKEN_LEN} characters without spaces",
            path.display()
        ));
    }
    Ok(Arc::from(token.as_bytes()))
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer(authorization: Option<&[u8]>) -> Option<&[u8]> {
    let v = authorization?;
    let (scheme, token) = v.split_at(v.iter().position(|&b| b == b' ')?);
    scheme
        .eq_ignore_ascii_case(b"bearer")
        .then(|| token.trim_ascii())
}

/// Whether the header value carries exactly the `expected` token
/// (constant time in the token's contents).
pub fn authorized(expected: &[u8], authorization: Option<&[u8]>) -> bool {
    match bearer(authorization) {
        Some(got) => bool::from(expected.ct_eq(got)),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn only_the_exact_bearer_token_passes() {
        let t = b"0123456789abcdef";
        assert!(authorized(t, Some(b"Bearer 0123456789abcdef")));
        assert!(authorized(t, Some(b"bearer  0123456789abcdef ")));
        assert!(!authorized(t, Some(b"Bearer 0123456789abcdeX")));
        assert!(!authorized(t, Some(b"Bearer 0123456789abcde")));
        assert!(!authorized(t, Some(b"Basic 0123456789abcdef")));
        assert!(!authorized(t, Some(b"0123456789abcdef")));
        assert!(!authorized(t, None));
    }

    #[test]
    fn token_files_must_be_private_and_long_enough() {
        let dir = std::env::temp_dir().join(format!("twinport-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("t");
        std::fs::write(&f, "0123456789abcdef\n").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_token(&f)
            .unwrap_err()
            .contains("readable by every user"));
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(&*read_token(&f).unwrap(), b"0123456789abcdef");
        std::fs::write(&f, "short\n").unwrap();
        assert!(read_token(&f).unwrap_err().contains("at least 16"));
        assert!(read_token(&dir.join("missing"))
            .unwrap_err()
            .contains("cannot read"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
