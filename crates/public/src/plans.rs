//! Subscription plans: the codes a company can be on.

crate::text_enum! {
    /// A plan a company can be on (a row of `public.plans`).
    pub enum PlanCode {
        Free = "free",
        Starter = "starter",
        Professional = "professional",
        Enterprise = "enterprise",
    }
}
