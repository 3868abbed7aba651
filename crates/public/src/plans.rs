//! Subscription plans: the codes a company can be on, and the catalogue (`public.plans`: limits,
//! monthly prices, the provider's price lookup keys).

use tokio_postgres::{GenericClient, Row};

use crate::db::DbError;

crate::text_enum! {
    /// A plan a company can be on (a row of `public.plans`).
    pub enum PlanCode {
        Free = "free",
        Starter = "starter",
        Professional = "professional",
        Enterprise = "enterprise",
    }
}

impl PlanCode {
    /// Whether the plan is paid for (a sign-up on it starts as a trial).
    pub fn is_paid(self) -> bool {
        self != Self::Free
    }

    /// Whether an organization may choose the plan itself (sign-up, plan changes); enterprise is
    /// arranged with sales. `public.plans.self_service` says the same for the catalogue (a test
    /// holds the two together).
    pub fn is_self_service(self) -> bool {
        self != Self::Enterprise
    }

    /// The plans an organization may choose itself.
    pub fn self_service() -> impl Iterator<Item = Self> {
        Self::ALL.iter().copied().filter(|p| p.is_self_service())
    }
}

/// One plan of the catalogue. Every limit and the price are `None` when unlimited (or, for the
/// price, when the plan is not sold on-line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub code: PlanCode,
    pub name: String,
    pub max_members: Option<i32>,
    pub max_projects: Option<i32>,
    pub max_storage_mb: Option<i32>,
    pub requests_per_hour: Option<i32>,
    /// Per month, in the currency's minor unit (cents).
    pub monthly_price_cents: Option<i32>,
    /// ISO 4217, lowercase (`usd`).
    pub currency: String,
    /// The billing provider's price lookup key that names this plan.
    pub lookup_key: Option<String>,
    /// Whether sign-up and plan changes may choose it (enterprise is arranged with sales).
    pub self_service: bool,
    pub sort_order: i32,
}

const COLUMNS: &str = "code, name, max_members, max_projects, max_storage_mb, requests_per_hour, \
                       monthly_price_cents, currency, lookup_key, self_service, sort_order";

impl TryFrom<&Row> for Plan {
    type Error = DbError;

    fn try_from(row: &Row) -> Result<Self, DbError> {
        Ok(Self {
            code: row.try_get(0)?,
            name: row.try_get(1)?,
            max_members: row.try_get(2)?,
            max_projects: row.try_get(3)?,
            max_storage_mb: row.try_get(4)?,
            requests_per_hour: row.try_get(5)?,
            monthly_price_cents: row.try_get(6)?,
            currency: row.try_get(7)?,
            lookup_key: row.try_get(8)?,
            self_service: row.try_get(9)?,
            sort_order: row.try_get(10)?,
        })
    }
}

impl Plan {
    /// Whether moving from `self` to `other` is a downgrade: a lower place in the catalogue.
    pub fn is_below(&self, other: &Plan) -> bool {
        self.sort_order < other.sort_order
    }
}

/// Every plan, in the catalogue's order (cheapest first).
pub async fn list(db: &impl GenericClient) -> Result<Vec<Plan>, DbError> {
    let sql = format!("select {COLUMNS} from public.plans order by sort_order, code");
    db.query(&sql, &[])
        .await?
        .iter()
        .map(Plan::try_from)
        .collect()
}

/// One plan. A code that `PlanCode` knows has its row (the table's check lists the same codes).
pub async fn get(db: &impl GenericClient, code: PlanCode) -> Result<Plan, DbError> {
    let sql = format!("select {COLUMNS} from public.plans where code = $1");
    let row = db
        .query_opt(&sql, &[&code.as_str()])
        .await?
        .ok_or_else(|| DbError::Corrupt(format!("plan {code} has no row in public.plans")))?;
    Plan::try_from(&row)
}

/// The plan whose provider price has `lookup_key`, if any.
pub async fn by_lookup_key(
    db: &impl GenericClient,
    lookup_key: &str,
) -> Result<Option<PlanCode>, DbError> {
    let row = db
        .query_opt(
            "select code from public.plans where lookup_key = $1",
            &[&lookup_key],
        )
        .await?;
    row.map(|r| r.try_get(0)).transpose().map_err(Into::into)
}
