//! API keys of a tenant (`api_keys`): long-lived credentials for scripts and integrations.
//!
//! A key is `tnt_<prefix>_<secret>`: `prefix` is 12 characters of `[a-z0-9]`, unique in the
//! tenant, used to find the row; `secret` is 256 random bits in base64url. The key is shown once
//! at creation; the table keeps the prefix and the SHA-256 of the whole key (a fast hash is right
//! for a high-entropy secret: there is nothing to brute-force), compared in constant time.
//!
//! A key acts as its creator with at most its own role, and never above the creator's *current*
//! membership: [`authenticate`] reads the membership on every use, so removing, deactivating or
//! demoting the creator takes effect on the creator's keys at once.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use rand::{Rng, RngCore};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tenantry_public::db::{Db, DbError};
use tenantry_public::memberships::Role;
use tenantry_public::{CompanyId, SchemaName, UserId};
use tokio_postgres::Row;

use crate::access::{self, RoleRuleError};
use crate::audit::{Acting, Action, Audited, Entry};
use crate::binding::{SchemaSql, TenantConn, TenantDb};
use crate::ids::ApiKeyId;

/// Every key starts with this, so that secret scanners and people can recognise one.
pub const KEY_PREFIX: &str = "tnt_";
const PREFIX_LEN: usize = 12;
const PREFIX_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
const SECRET_BYTES: usize = 32;
/// 32 bytes in unpadded base64url.
const SECRET_LEN: usize = 43;
/// `last_used_at` is written at most this often per key, so a busy key costs no extra write per
/// request.
const TOUCH_AFTER_SECS: i32 = 60;

/// A newly generated key: shown once to its creator, never stored, never logged.
pub struct KeySecret(String);

impl KeySecret {
    fn generate() -> (String, Self) {
        let mut rng = rand::rng();
        let prefix: String = (0..PREFIX_LEN)
            .map(|_| char::from(PREFIX_ALPHABET[rng.random_range(0..PREFIX_ALPHABET.len())]))
            .collect();
        let mut bytes = [0u8; SECRET_BYTES];
        rng.fill_bytes(&mut bytes);
        let key = format!("{KEY_PREFIX}{prefix}_{}", URL_SAFE_NO_PAD.encode(bytes));
        (prefix, Self(key))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for KeySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeySecret(***)")
    }
}

fn hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The lookup prefix of a well-formed key, `None` for anything that is not one.
pub fn parse_prefix(presented: &str) -> Option<&str> {
    let rest = presented.strip_prefix(KEY_PREFIX)?;
    let (prefix, secret) = rest.split_at_checked(PREFIX_LEN)?;
    let secret = secret.strip_prefix('_')?;
    let prefix_ok = prefix.bytes().all(|b| PREFIX_ALPHABET.contains(&b));
    let secret_ok = secret.len() == SECRET_LEN
        && secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (prefix_ok && secret_ok).then_some(prefix)
}

/// Whether `value` looks like a Tenantry API key (used to refuse keys sent in URLs).
pub fn looks_like_key(value: &str) -> bool {
    value.trim().starts_with(KEY_PREFIX)
}

/// One key as listed: never the secret, never its hash.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub name: String,
    pub prefix: String,
    pub role: Role,
    pub created_by: UserId,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, name, prefix, role, created_by, created_at, last_used_at, expires_at";

impl TryFrom<&Row> for ApiKey {
    type Error = DbError;
    fn try_from(row: &Row) -> Result<Self, DbError> {
        Ok(Self {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            prefix: row.try_get("prefix")?,
            role: row.try_get("role")?,
            created_by: row.try_get("created_by")?,
            created_at: row.try_get("created_at")?,
            last_used_at: row.try_get("last_used_at")?,
            expires_at: row.try_get("expires_at")?,
        })
    }
}

// A key as its audit entries record it (never the secret).
crate::audit::audited!(ApiKey, "api_key", id: id, [name, prefix, role, created_by, expires_at]);

/// What to create: a trimmed name, the role and an optional expiry (checked by the caller to be
/// in the future). The key acts as the acting member.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub name: String,
    pub role: Role,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    /// No live key with this id in this tenant.
    #[error("no such API key in this organization")]
    NotFound,
    #[error(transparent)]
    Rule(#[from] RoleRuleError),
    /// Five random 12-character prefixes in a row were taken: the generator is broken, not busy.
    #[error("could not allocate a unique API key prefix")]
    PrefixExhausted,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Creates a key acting as `acting.user` with at most their role (`actor_role`, checked against
/// the role rules) and audits `api_key.created`, in one transaction. A prefix collision (one in
/// 36^12 per existing key) is retried with a new key.
pub async fn create(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    actor_role: Role,
    new: &NewApiKey,
) -> Result<(ApiKey, KeySecret), ApiKeyError> {
    access::may_grant(actor_role, new.role)?;
    let tx = conn.transaction().await?;
    for _ in 0..5 {
        let (prefix, secret) = KeySecret::generate();
        let digest = hash(secret.expose());
        let row = tx
            .client()
            .query_opt(
                &format!(
                    "insert into api_keys (id, name, prefix, secret_hash, role, created_by, expires_at) \
                     values ($1, $2, $3, $4, $5, $6, $7) \
                     on conflict (prefix) do nothing \
                     returning {COLUMNS}"
                ),
                &[
                    &ApiKeyId::new(),
                    &new.name,
                    &prefix,
                    &digest.as_slice(),
                    &new.role,
                    &acting.user,
                    &new.expires_at,
                ],
            )
            .await
            .map_err(DbError::from)?;
        if let Some(row) = row {
            let key = ApiKey::try_from(&row)?;
            acting
                .commit(tx, Entry::created(Action::ApiKeyCreated, &key))
                .await?;
            return Ok((key, secret));
        }
    }
    Err(ApiKeyError::PrefixExhausted)
}

/// The tenant's keys that are not revoked (expired ones included), newest first.
pub async fn list(db: &impl TenantDb) -> Result<Vec<ApiKey>, DbError> {
    db.client()
        .query(
            &format!(
                "select {COLUMNS} from api_keys where revoked_at is null \
                 order by created_at desc, id desc"
            ),
            &[],
        )
        .await?
        .iter()
        .map(ApiKey::try_from)
        .collect()
}

/// Revokes a live key and audits `api_key.revoked`, in one transaction; [`ApiKeyError::NotFound`]
/// when there is no such key or it was already revoked.
pub async fn revoke(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    id: ApiKeyId,
) -> Result<ApiKey, ApiKeyError> {
    let tx = conn.transaction().await?;
    let key = tx
        .client()
        .query_opt(
            &format!(
                "update api_keys set revoked_at = now(), revoked_by = $2 \
                 where id = $1 and revoked_at is null returning {COLUMNS}"
            ),
            &[&id, &acting.user],
        )
        .await
        .map_err(DbError::from)?
        .as_ref()
        .map(ApiKey::try_from)
        .transpose()?
        .ok_or(ApiKeyError::NotFound)?;
    let mut before = key.audit_json();
    if let Some(fields) = before.as_object_mut() {
        fields.remove("expires_at");
    }
    let entry = Entry::new(Action::ApiKeyRevoked)
        .target("api_key", key.id)
        .before(before);
    acting.commit(tx, entry).await?;
    Ok(key)
}

/// Revokes every live key `user` created, in every organization the account belongs to, in the
/// caller's transaction (on a public connection; each tenant's table is named through its
/// validated, quoted schema). For an account whose address was just proven by a reset or an
/// invitation: keys made before may have been made by someone who only knew the password.
/// Returns how many were revoked.
pub async fn revoke_all_created_by(
    tx: &impl tokio_postgres::GenericClient,
    user: UserId,
) -> Result<u64, DbError> {
    let schemas = tx
        .query(
            "select c.schema_name from public.memberships m \
               join public.companies c on c.id = m.company_id \
              where m.user_id = $1 and c.schema_version is not null \
              order by c.id",
            &[&user],
        )
        .await?;
    let mut revoked = 0;
    for row in &schemas {
        let name: String = row.try_get(0)?;
        let schema = SchemaName::parse(&name)
            .map_err(|e| DbError::Corrupt(format!("companies.schema_name {e}")))?;
        revoked += tx
            .execute(
                &format!(
                    "update {}.api_keys set revoked_at = now(), revoked_by = $1 \
                      where created_by = $1 and revoked_at is null",
                    schema.quoted()
                ),
                &[&user],
            )
            .await?;
    }
    Ok(revoked)
}

/// The key and its creator's membership in this company, by the key's prefix.
const LOOKUP: &str = "select k.id, k.secret_hash, k.role, k.created_by, \
        (k.revoked_at is null and (k.expires_at is null or k.expires_at > now())) as live, \
        (k.last_used_at is null \
           or k.last_used_at < now() - make_interval(secs => $3)) as stale, \
        (select m.role from public.memberships m \
           join public.users u on u.id = m.user_id \
          where m.user_id = k.created_by and m.company_id = $2 \
            and m.is_active and u.is_active) as member_role \
   from {schema}.api_keys k where k.prefix = $1";

/// A key that authenticated: who it acts as, and with which role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authenticated {
    pub key_id: ApiKeyId,
    pub created_by: UserId,
    /// The key's role capped by the creator's current membership role.
    pub role: Role,
}

/// Checks a presented key against this tenant's keys: well-formed, known prefix, matching hash,
/// not revoked, not expired, and its creator still an active member of `company` with an active
/// account. `None` for every kind of failure, so callers cannot tell them apart.
///
/// One query reads the key and the creator's membership, as the first query of a connection
/// bound to `schema` (one round trip with the binding); `last_used_at` is written only when it is
/// older than a minute.
pub async fn authenticate(
    db: &Db,
    schema: &SchemaName,
    company: CompanyId,
    presented: &str,
) -> Result<Option<Authenticated>, DbError> {
    let Some(prefix) = parse_prefix(presented) else {
        return Ok(None);
    };
    let digest = hash(presented);
    // The first query of a new bound connection: binding and lookup in one round trip.
    let sql = SchemaSql::new(LOOKUP, schema)?;
    let (conn, rows) =
        TenantConn::acquire_read(db, &sql, &[&prefix, &company, &f64::from(TOUCH_AFTER_SECS)])
            .await?;
    let row = rows.first();
    let Some(row) = row else {
        // Compare anyway, so an unknown prefix costs the same as a wrong secret.
        let _ = digest.ct_eq(&[0u8; 32]);
        return Ok(None);
    };
    let stored: Vec<u8> = row.try_get("secret_hash")?;
    let matches: bool = digest.as_slice().ct_eq(stored.as_slice()).into();
    let live: bool = row.try_get("live")?;
    let member_role: Option<Role> = row.try_get("member_role")?;
    if !matches || !live {
        return Ok(None);
    }
    let Some(member_role) = member_role else {
        return Ok(None);
    };
    let key_role: Role = row.try_get("role")?;
    let key_id: ApiKeyId = row.try_get("id")?;
    if row.try_get::<_, bool>("stale")? {
        // A failed touch must not fail the request: the key is valid.
        if let Err(e) = conn
            .client()
            .execute(
                "update api_keys set last_used_at = now() where id = $1",
                &[&key_id],
            )
            .await
        {
            tracing::warn!(error = %e, "could not record an API key's last use");
        }
    }
    Ok(Some(Authenticated {
        key_id,
        created_by: row.try_get("created_by")?,
        role: lower(key_role, member_role),
    }))
}

/// The less powerful of two roles.
pub fn lower(a: Role, b: Role) -> Role {
    if a.at_least(b) {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_and_carry_their_prefix() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100 {
            let (prefix, secret) = KeySecret::generate();
            assert_eq!(parse_prefix(secret.expose()), Some(prefix.as_str()));
            assert_eq!(secret.expose().len(), 4 + 12 + 1 + 43);
            assert!(looks_like_key(secret.expose()));
            assert!(seen.insert(prefix));
        }
    }

    #[test]
    fn malformed_keys_are_refused() {
        let (_, good) = KeySecret::generate();
        let good = good.expose();
        for bad in [
            "",
            "tnt_",
            "tnt_abc_def",
            &good[1..],
            &good[..good.len() - 1],
            &format!("{good}x"),
            &good.replacen("tnt_", "tnx_", 1),
            &good.to_uppercase(),
            &good.replacen('_', "-", 2),
        ] {
            assert_eq!(parse_prefix(bad), None, "{bad}");
        }
    }

    #[test]
    fn lower_role_caps() {
        assert_eq!(lower(Role::Admin, Role::Viewer), Role::Viewer);
        assert_eq!(lower(Role::Viewer, Role::Owner), Role::Viewer);
        assert_eq!(lower(Role::Member, Role::Member), Role::Member);
    }

    #[test]
    fn secrets_never_print() {
        let (_, s) = KeySecret::generate();
        assert_eq!(format!("{s:?}"), "KeySecret(***)");
    }
}
