//! What a living campaign adds to the store: the revisions of its spec, and the
//! idempotency keys of campaign creations (schema version 8, `docs/storage.md`) and of
//! revisions and budget changes (schema version 13: [`ChangeKey`]).

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use crate::error::{StoreError, from_sql_int, to_sql_int};
use crate::rows::CampaignRow;
use crate::store::Store;

/// One accepted replacement of a campaign's spec (revision 2 on; revision 1 is the
/// spec the campaign was created with, [`CampaignRow::spec_json`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevisionRow {
    /// The campaign.
    pub campaign_id: String,
    /// The revision number: 2 for the first replacement, one more for each next.
    pub revision: u32,
    /// The validated spec of this revision, as JSON text; the store does not parse it.
    pub spec_json: String,
    /// The event sequence the revision took effect after: the campaign's events with a
    /// higher `seq` are learned under it, those up to it under the revisions before.
    pub from_seq: u64,
    /// Why, as given; `None` when no reason was given.
    pub reason: Option<String>,
    /// The id of the API key that asked.
    pub key_id: String,
    /// When, milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// An `Idempotency-Key` of a campaign creation and what it made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRow {
    /// The key the client sent.
    pub key: String,
    /// A digest (SHA-256) of the spec the creation was sent with, computed by the
    /// server: a retry must send the same spec.
    pub spec_digest: [u8; 32],
    /// The campaign the first request with this key made.
    pub campaign_id: String,
    /// The id of the API key that sent it.
    pub key_id: String,
    /// When, milliseconds since the Unix epoch.
    pub at_ms: i64,
}

/// The `Idempotency-Key` a revision or a budget change was asked with, stored with the
/// row it made (one row per campaign and key), and a digest of the request: a retry
/// with the key answers that row when its digest is the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeKey {
    /// The key the client sent.
    pub key: String,
    /// A digest (SHA-256) of the request, computed by the server.
    pub request_digest: [u8; 32],
}

impl ChangeKey {
    /// Reads the columns `idempotency_key`, `request_digest` of a row of `table`
    /// (`None` when no key was stored).
    pub(crate) fn from_columns(
        table: &'static str,
        key: Option<String>,
        digest: Option<Vec<u8>>,
    ) -> Result<Option<Self>, StoreError> {
        let (Some(key), Some(digest)) = (key, digest) else {
            return Ok(None);
        };
        let request_digest =
            <[u8; 32]>::try_from(digest.as_slice()).map_err(|_| StoreError::Corrupt {
                table,
                detail: format!("key {key:?} has a digest of {} bytes", digest.len()),
            })?;
        Ok(Some(Self {
            key,
            request_digest,
        }))
    }
}

/// Maps a unique-index violation of an `Idempotency-Key` to [`StoreError::Conflict`].
pub(crate) fn key_conflict(
    what: &'static str,
    campaign_id: &str,
    key: Option<&ChangeKey>,
) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |error| match (&error, key) {
        (rusqlite::Error::SqliteFailure(failure, _), Some(key))
            if failure.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict(format!(
                "campaign {campaign_id:?} already has a {what} made with Idempotency-Key {:?}",
                key.key
            ))
        }
        _ => StoreError::sqlite(what)(error),
    }
}

/// The outcome of [`Store::insert_campaign_once`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOnce {
    /// The campaign and its key were stored.
    Created,
    /// The key was stored before, by this earlier creation; nothing was written.
    Existing(IdempotencyRow),
}

impl Store {
    /// Stores a new campaign together with the idempotency key it was created with, in
    /// one transaction; when the key is already stored, writes nothing and answers the
    /// earlier creation (the caller compares the digests). An id already stored is a
    /// [`StoreError::Conflict`].
    pub fn insert_campaign_once(
        &self,
        campaign: &CampaignRow,
        key: &IdempotencyRow,
    ) -> Result<CreateOnce, StoreError> {
        let mut connection = self.database.general();
        let transaction = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::sqlite("starting a campaign creation"))?;
        let earlier = transaction
            .prepare_cached(
                "SELECT key, spec_digest, campaign_id, key_id, at_ms FROM idempotency_keys \
                 WHERE key = ?1",
            )
            .and_then(|mut statement| {
                statement
                    .query_row([&key.key], |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            row.get::<_, Vec<u8>>(1)?,
                            row.get::<_, String>(2)?,
                            row.get::<_, String>(3)?,
                            row.get::<_, i64>(4)?,
                        ))
                    })
                    .optional()
            })
            .map_err(StoreError::sqlite("reading an idempotency key"))?;
        if let Some((stored_key, digest, campaign_id, key_id, at_ms)) = earlier {
            let spec_digest =
                <[u8; 32]>::try_from(digest.as_slice()).map_err(|_| StoreError::Corrupt {
                    table: "idempotency_keys",
                    detail: format!("key {stored_key:?} has a digest of {} bytes", digest.len()),
                })?;
            return Ok(CreateOnce::Existing(IdempotencyRow {
                key: stored_key,
                spec_digest,
                campaign_id,
                key_id,
                at_ms,
            }));
        }
        crate::store::insert_campaign_row(&transaction, campaign)?;
        transaction
            .prepare_cached(
                "INSERT INTO idempotency_keys (key, spec_digest, campaign_id, key_id, at_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    key.key,
                    key.spec_digest.as_slice(),
                    key.campaign_id,
                    key.key_id,
                    key.at_ms,
                ])
            })
            .map_err(StoreError::sqlite("storing an idempotency key"))?;
        transaction
            .commit()
            .map_err(StoreError::sqlite("committing a campaign creation"))?;
        Ok(CreateOnce::Created)
    }

    /// Records a revision of a campaign's spec, durably, with the `Idempotency-Key` it
    /// was asked with, if any. A revision number already stored for the campaign, or a
    /// key already stored for it, is a [`StoreError::Conflict`].
    pub fn append_revision(
        &self,
        revision: &RevisionRow,
        key: Option<&ChangeKey>,
    ) -> Result<(), StoreError> {
        let from_seq = to_sql_int("from_seq", revision.from_seq)?;
        let inserted = self
            .database
            .general()
            .prepare_cached(
                "INSERT INTO revisions (campaign_id, revision, spec_json, from_seq, reason, key_id, at_ms, \
                 idempotency_key, request_digest) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (campaign_id, revision) DO NOTHING",
            )
            .and_then(|mut statement| {
                statement.execute(params![
                    revision.campaign_id,
                    revision.revision,
                    revision.spec_json,
                    from_seq,
                    revision.reason,
                    revision.key_id,
                    revision.at_ms,
                    key.map(|key| key.key.as_str()),
                    key.map(|key| key.request_digest.as_slice()),
                ])
            })
            .map_err(key_conflict("revision", &revision.campaign_id, key))?;
        if inserted == 0 {
            return Err(StoreError::Conflict(format!(
                "campaign {:?} already has a revision {}",
                revision.campaign_id, revision.revision
            )));
        }
        Ok(())
    }

    /// The revision of campaign `campaign_id` made with `Idempotency-Key` `key`, and the
    /// key with its request digest; `None` when no revision of it was made with that key.
    pub fn revision_by_key(
        &self,
        campaign_id: &str,
        key: &str,
    ) -> Result<Option<(u32, ChangeKey)>, StoreError> {
        let found = self
            .database
            .general()
            .prepare_cached(
                "SELECT revision, idempotency_key, request_digest FROM revisions \
                 WHERE campaign_id = ?1 AND idempotency_key = ?2",
            )
            .and_then(|mut statement| {
                statement
                    .query_row(params![campaign_id, key], |row| {
                        Ok((
                            row.get::<_, i64>(0)?,
                            row.get::<_, Option<String>>(1)?,
                            row.get::<_, Option<Vec<u8>>>(2)?,
                        ))
                    })
                    .optional()
            })
            .map_err(StoreError::sqlite(
                "reading a revision by its Idempotency-Key",
            ))?;
        let Some((revision, key, digest)) = found else {
            return Ok(None);
        };
        let revision = u32::try_from(revision).map_err(|_| StoreError::Corrupt {
            table: "revisions",
            detail: format!("revision {revision} is not in 0..=4294967295"),
        })?;
        Ok(ChangeKey::from_columns("revisions", key, digest)?.map(|key| (revision, key)))
    }

    /// Every stored revision of a campaign (revision 2 on), in order.
    pub fn revisions(&self, campaign_id: &str) -> Result<Vec<RevisionRow>, StoreError> {
        let connection = self.database.general();
        let mut statement = connection
            .prepare_cached(
                "SELECT campaign_id, revision, spec_json, from_seq, reason, key_id, at_ms \
                 FROM revisions WHERE campaign_id = ?1 ORDER BY revision",
            )
            .map_err(StoreError::sqlite("reading revisions"))?;
        let raw = statement
            .query_map([campaign_id], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, Option<String>>(4)?,
                    row.get::<_, String>(5)?,
                    row.get::<_, i64>(6)?,
                ))
            })
            .and_then(Iterator::collect::<Result<Vec<_>, _>>)
            .map_err(StoreError::sqlite("reading revisions"))?;
        raw.into_iter()
            .map(
                |(campaign_id, revision, spec_json, from_seq, reason, key_id, at_ms)| {
                    Ok(RevisionRow {
                        campaign_id,
                        revision: u32::try_from(revision).map_err(|_| StoreError::Corrupt {
                            table: "revisions",
                            detail: format!("revision {revision} is not in 0..=4294967295"),
                        })?,
                        spec_json,
                        from_seq: from_sql_int("revisions", "from_seq", from_seq)?,
                        reason,
                        key_id,
                        at_ms,
                    })
                },
            )
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::CampaignStatus;

    fn campaign(id: &str) -> CampaignRow {
        CampaignRow {
            id: id.into(),
            name: "n".into(),
            spec_json: "{}".into(),
            status: CampaignStatus::Active,
            created_at_ms: 1,
        }
    }

    fn key(key: &str, campaign_id: &str, digest: u8) -> IdempotencyRow {
        IdempotencyRow {
            key: key.into(),
            spec_digest: [digest; 32],
            campaign_id: campaign_id.into(),
            key_id: "k".into(),
            at_ms: 1,
        }
    }

    #[test]
    fn a_key_creates_one_campaign_and_answers_it_after() {
        let store = Store::open_in_memory().unwrap();
        let created = store
            .insert_campaign_once(&campaign("c1"), &key("x", "c1", 7))
            .unwrap();
        assert_eq!(created, CreateOnce::Created);
        let again = store
            .insert_campaign_once(&campaign("c2"), &key("x", "c2", 9))
            .unwrap();
        assert_eq!(again, CreateOnce::Existing(key("x", "c1", 7)));
        assert_eq!(store.campaigns().unwrap().len(), 1);
    }

    #[test]
    fn revisions_are_stored_once_and_listed_in_order() {
        let store = Store::open_in_memory().unwrap();
        let row = |revision| RevisionRow {
            campaign_id: "c".into(),
            revision,
            spec_json: "{}".into(),
            from_seq: u64::from(revision) * 10,
            reason: (revision == 3).then(|| "why".into()),
            key_id: "k".into(),
            at_ms: 5,
        };
        store.append_revision(&row(3), None).unwrap();
        store.append_revision(&row(2), None).unwrap();
        assert!(matches!(
            store.append_revision(&row(2), None),
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(store.revisions("c").unwrap(), vec![row(2), row(3)]);
        assert!(store.revisions("other").unwrap().is_empty());
    }
}
