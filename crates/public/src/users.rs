//! Global accounts in `public.users`: one per email, whatever its case.

use chrono::{DateTime, Utc};
use tokio_postgres::{GenericClient, Row};

use crate::db::DbError;
use crate::ids::{CompanyId, UserId};
use crate::names::Email;

#[derive(Debug, Clone)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub password_hash: String,
    pub full_name: String,
    pub email_verified_at: Option<DateTime<Utc>>,
    /// Where the account was created; see [`User::may_sign_in_to`].
    pub origin_company_id: Option<CompanyId>,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, email, password_hash, full_name, email_verified_at, origin_company_id, \
     is_active, created_at, updated_at";

/// The rule of [`User::may_sign_in_to`] in SQL, for a `public.users` row `u` and a company id
/// expression (`$2`, `m.company_id`, …).
pub fn proven_for_sql(company: &str) -> String {
    format!("(u.email_verified_at is not null or u.origin_company_id = {company})")
}

impl TryFrom<&Row> for User {
    type Error = DbError;

    fn try_from(row: &Row) -> Result<Self, DbError> {
        Ok(Self {
            id: UserId(row.try_get("id")?),
            email: row.try_get("email")?,
            password_hash: row.try_get("password_hash")?,
            full_name: row.try_get("full_name")?,
            email_verified_at: row.try_get("email_verified_at")?,
            origin_company_id: row.try_get("origin_company_id")?,
            is_active: row.try_get("is_active")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

impl User {
    /// Whether the account's password may sign in to `company`: once the address is proven
    /// (a verification, invitation or reset link reached it), anywhere it is a member; before,
    /// only in the organization it was created in. So an account registered in advance for
    /// someone else's address cannot follow that address into the organizations that add it.
    pub fn may_sign_in_to(&self, company: CompanyId) -> bool {
        self.email_verified_at.is_some() || self.origin_company_id == Some(company)
    }
}

pub async fn find_by_email(db: &impl GenericClient, email: &str) -> Result<Option<User>, DbError> {
    let sql = format!("select {COLUMNS} from public.users where lower(email) = lower($1)");
    db.query_opt(&sql, &[&email])
        .await?
        .as_ref()
        .map(User::try_from)
        .transpose()
}

pub async fn find_by_id(db: &impl GenericClient, id: UserId) -> Result<Option<User>, DbError> {
    let sql = format!("select {COLUMNS} from public.users where id = $1");
    db.query_opt(&sql, &[&id.0])
        .await?
        .as_ref()
        .map(User::try_from)
        .transpose()
}

/// The unique index on `lower(email)`: a taken email violates it.
pub const EMAIL_KEY: &str = "users_email_key";

/// Inserts a new, unproven account created in `origin` (its sign-up, or the organization whose
/// admin created it). A taken email surfaces as a violation of [`EMAIL_KEY`].
pub async fn insert(
    db: &impl GenericClient,
    email: &Email,
    password_hash: &str,
    full_name: &str,
    origin: CompanyId,
) -> Result<User, DbError> {
    let sql = format!(
        "insert into public.users (id, email, password_hash, full_name, origin_company_id) \
         values ($1, $2, $3, $4, $5) returning {COLUMNS}"
    );
    let row = db
        .query_one(
            &sql,
            &[
                &UserId::new().0,
                &email.as_str(),
                &password_hash,
                &full_name,
                &origin,
            ],
        )
        .await?;
    User::try_from(&row)
}

pub async fn set_full_name(
    db: &impl GenericClient,
    id: UserId,
    full_name: &str,
) -> Result<Option<User>, DbError> {
    let sql = format!(
        "update public.users set full_name = $2, updated_at = now() where id = $1 returning {COLUMNS}"
    );
    db.query_opt(&sql, &[&id.0, &full_name])
        .await?
        .as_ref()
        .map(User::try_from)
        .transpose()
}

pub async fn set_password_hash(
    db: &impl GenericClient,
    id: UserId,
    password_hash: &str,
) -> Result<(), DbError> {
    db.execute(
        "update public.users set password_hash = $2, updated_at = now() where id = $1",
        &[&id.0, &password_hash],
    )
    .await?;
    Ok(())
}

/// Activates or deactivates the account with `email` (any case). A deactivated account cannot log
/// in, refresh, or act through its API keys; call [`crate::sessions::revoke_all`] in the same
/// transaction to end its sessions at once. `None` if no account has that email.
pub async fn set_active_by_email(
    db: &impl GenericClient,
    email: &str,
    active: bool,
) -> Result<Option<UserId>, DbError> {
    Ok(db
        .query_opt(
            "update public.users set is_active = $2, updated_at = now() \
              where lower(email) = lower($1) returning id",
            &[&email, &active],
        )
        .await?
        .map(|r| UserId(r.get(0))))
}

/// Records that the account's owner proved control of its email address (a verification,
/// invitation or reset link reached them). Keeps an earlier verification time; answers whether
/// this call proved it (it was unproven until now).
pub async fn mark_email_verified(db: &impl GenericClient, id: UserId) -> Result<bool, DbError> {
    let proved = db
        .execute(
            "update public.users set email_verified_at = now(), updated_at = now() \
              where id = $1 and email_verified_at is null",
            &[&id.0],
        )
        .await?;
    Ok(proved == 1)
}
