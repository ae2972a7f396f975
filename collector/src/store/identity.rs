//! Enrollment tokens and revoked hosts.

use super::{Store, StoreError, decode, encode};
use crate::model::{RevokedHost, TokenRecord};

impl Store {
    /// Every token, oldest first.
    pub fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let mut out: Vec<TokenRecord> = self
            .tokens
            .iter()
            .values()
            .map(|v| decode(&v?, "token"))
            .collect::<Result<_, _>>()?;
        out.sort_by_key(|t| t.created_unix_ms);
        Ok(out)
    }

    /// One token.
    pub fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.tokens
            .get(id.as_bytes())?
            .map(|v| decode(&v, id))
            .transpose()
    }

    /// Inserts or replaces a token.
    pub fn put_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        let bytes = encode(token, &token.id)?;
        self.tokens.insert(token.id.as_bytes(), bytes)?;
        Ok(())
    }

    /// How many tokens were ever made (the next id is one more).
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// Records a revoked host.
    pub fn revoke_host(&self, revoked: &RevokedHost) -> Result<(), StoreError> {
        let bytes = encode(revoked, &revoked.host_id)?;
        self.revoked.insert(revoked.host_id.as_bytes(), bytes)?;
        Ok(())
    }

    /// Every revoked host.
    pub fn revoked_hosts(&self) -> Result<Vec<RevokedHost>, StoreError> {
        self.revoked
            .iter()
            .values()
            .map(|v| decode(&v?, "revoked host"))
            .collect()
    }
}
