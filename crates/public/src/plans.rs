//! Subscription plans: the codes a company can be on.

use crate::names::NameError;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PlanCode {
    Free,
    Starter,
    Professional,
    Enterprise,
}

impl PlanCode {
    pub const ALL: [PlanCode; 4] = [
        PlanCode::Free,
        PlanCode::Starter,
        PlanCode::Professional,
        PlanCode::Enterprise,
    ];

    pub fn parse(input: &str) -> Result<Self, NameError> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == input)
            .ok_or(NameError(
                "must be one of free, starter, professional, enterprise",
            ))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::Starter => "starter",
            Self::Professional => "professional",
            Self::Enterprise => "enterprise",
        }
    }
}

impl fmt::Display for PlanCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
