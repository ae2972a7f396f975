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

    /// Records a revoked host.
    pub fn revoke_host(&self, revoked: &RevokedHost) -> Result<(), StoreError> {
        let bytes = encode(revoked, &revoked.host_id)?;
        self.revoked.insert(revoked.host_id.as_bytes(), bytes)?;
        Ok(())
    }

    /// Remembers that `host` presented a certificate for `key` (SHA-256 hex).
    /// Returns whether the key was new for it.
    pub fn record_host_key(&self, host: &str, key: &str) -> Result<bool, StoreError> {
        let mut keys = self.host_keys(host)?;
        if keys.iter().any(|k| k == key) {
            return Ok(false);
        }
        keys.push(key.to_owned());
        self.host_keys
            .insert(host.as_bytes(), encode(&keys, host)?)?;
        Ok(true)
    }

    /// The public keys `host`'s certificates carried, first seen first.
    pub fn host_keys(&self, host: &str) -> Result<Vec<String>, StoreError> {
        self.host_keys
            .get(host.as_bytes())?
            .map(|v| decode(&v, host))
            .transpose()
            .map(Option::unwrap_or_default)
    }

    /// Records `key` as revoked with `host`.
    pub fn revoke_key(&self, key: &str, host: &str) -> Result<(), StoreError> {
        self.revoked_keys.insert(key.as_bytes(), host.as_bytes())?;
        Ok(())
    }

    /// Every revoked key, with the host it was revoked as.
    pub fn revoked_keys(&self) -> Result<Vec<(String, String)>, StoreError> {
        self.revoked_keys
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                Ok((
                    String::from_utf8_lossy(&k).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                ))
            })
            .collect()
    }

    /// Changes token `id` atomically: `change` sees the stored token and returns
    /// the new one, or an error that leaves it as it is. Concurrent changes (an
    /// enrollment using it, an operator revoking it) apply one after the other,
    /// each to what the other wrote.
    pub fn update_token<E>(
        &self,
        id: &str,
        mut change: impl FnMut(TokenRecord) -> Result<TokenRecord, E>,
    ) -> Result<Result<TokenRecord, E>, StoreError> {
        loop {
            let Some(old) = self.tokens.get(id.as_bytes())? else {
                return Err(StoreError::Corrupt(format!("token {id} vanished")));
            };
            let token: TokenRecord = decode(&old, id)?;
            let new = match change(token) {
                Ok(t) => t,
                Err(e) => return Ok(Err(e)),
            };
            let bytes = encode(&new, id)?;
            if self
                .tokens
                .compare_and_swap(id.as_bytes(), Some(&old), Some(bytes))?
                .is_ok()
            {
                return Ok(Ok(new));
            }
        }
    }

    /// Takes one use of token `id` for `host` (compare-and-swap), or says
    /// why not ([`TokenRecord::refusal`]).
    pub fn use_token(
        &self,
        id: &str,
        host: &str,
        now: i64,
    ) -> Result<Result<TokenRecord, &'static str>, StoreError> {
        self.update_token(id, |mut token| {
            if let Some(why) = token.refusal(now) {
                return Err(why);
            }
            token.used += 1;
            if !token.hosts.iter().any(|h| h == host) {
                token.hosts.push(host.to_owned());
            }
            Ok(token)
        })
    }

    /// Stores `token` under its own id unless one exists (the id was made
    /// by [`crate::enroll::new_token`]); whether it was stored.
    pub fn insert_token(&self, token: &TokenRecord) -> Result<bool, StoreError> {
        let bytes = encode(token, &token.id)?;
        Ok(self
            .tokens
            .compare_and_swap(token.id.as_bytes(), None::<&[u8]>, Some(bytes))?
            .is_ok())
    }

    /// Stores a new token under an id never used before (`t` and a number),
    /// made by `make`: ids come from the store's monotonic id generator and are
    /// claimed with a compare-and-swap, so concurrent creations never share one.
    pub fn insert_new_token(
        &self,
        make: impl Fn(String) -> TokenRecord,
    ) -> Result<TokenRecord, StoreError> {
        loop {
            // Ids made before the generator was used count up from t1; start past them.
            let n = self.db.generate_id()? + 1 + self.tokens.len() as u64;
            let token = make(format!("t{n}"));
            let bytes = encode(&token, &token.id)?;
            if self
                .tokens
                .compare_and_swap(token.id.as_bytes(), None::<&[u8]>, Some(bytes))?
                .is_ok()
            {
                return Ok(token);
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn token(id: String, uses: u32) -> TokenRecord {
        TokenRecord {
            id,
            secret_sha256: String::new(),
            uses,
            used: 0,
            expires_unix_ms: i64::MAX,
            revoked: false,
            labels: Default::default(),
            created_by: "test".into(),
            created_unix_ms: 0,
            hosts: Vec::new(),
            note: String::new(),
        }
    }

    #[test]
    fn concurrent_token_creations_never_share_an_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let ids: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        (0..50)
                            .map(|_| {
                                store
                                    .insert_new_token(|id| token(id, 1))
                                    .expect("insert")
                                    .id
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().expect("thread"))
                .collect()
        });
        let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), 400);
        assert_eq!(store.tokens().expect("tokens").len(), 400);
    }

    #[test]
    fn uses_and_a_revocation_never_overwrite_each_other() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let id = store
            .insert_new_token(|id| token(id, 5))
            .expect("insert")
            .id;
        // Sixteen enrollments race for five uses while an operator revokes it.
        let taken: usize = std::thread::scope(|s| {
            let users: Vec<_> = (0..16)
                .map(|_| {
                    s.spawn(|| {
                        store
                            .update_token(&id, |mut t| {
                                if t.state(0) != "active" {
                                    return Err(());
                                }
                                t.used += 1;
                                Ok(t)
                            })
                            .expect("store")
                            .is_ok()
                    })
                })
                .collect();
            let revoker = s.spawn(|| {
                store
                    .update_token(&id, |mut t| {
                        t.revoked = true;
                        Ok::<_, ()>(t)
                    })
                    .expect("store")
            });
            assert!(revoker.join().expect("revoker").is_ok());
            users
                .into_iter()
                .map(|h| usize::from(h.join().expect("user")))
                .sum()
        });
        let stored = store.token(&id).expect("read").expect("token");
        assert!(stored.revoked, "the revocation was not lost");
        assert_eq!(
            stored.used as usize, taken,
            "every use granted was counted, none twice"
        );
        assert!(taken <= 5, "{taken} uses of five");
    }
}
