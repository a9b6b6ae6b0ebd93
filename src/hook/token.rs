//! A bearer token that does not leak through `Debug` (and has no `Display`).

use std::fmt;

/// The hook's bearer token, sent as `Authorization: Bearer <token>`.
///
/// Its `Debug` output is `***`; it has no `Display` and no `Serialize`, so it cannot end up
/// in logs or status by accident. Use [`BearerToken::expose`] to read it deliberately.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    /// Wrap a token (e.g. read from the Secret named by `bearerTokenSecretRef`).
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token itself. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_token() {
        let token = BearerToken::new("s3cr3t-value");
        assert_eq!(format!("{token:?}"), "***");
        assert_eq!(format!("{:?}", Some(token.clone())), "Some(***)");
        assert_eq!(format!("{token:#?}"), "***");
        assert_eq!(token.expose(), "s3cr3t-value");
    }
}
