//! Where a request came from, as sessions and the audit trail record it. The HTTP layer makes
//! one per request, an operator command one per run ([`Origin::command`]); the domain only
//! stores it.

use std::net::IpAddr;

/// The most characters of a user agent that are kept (it is client-chosen text).
pub const MAX_USER_AGENT: usize = 512;

/// Where a request came from: the peer address (forwarding headers are client-controlled and
/// not trusted), the user agent (at most [`MAX_USER_AGENT`] characters) and the request id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
}

impl Origin {
    pub fn new(ip: Option<IpAddr>, user_agent: Option<&str>, request_id: Option<String>) -> Self {
        Self {
            ip,
            user_agent: user_agent.map(|ua| ua.chars().take(MAX_USER_AGENT).collect()),
            request_id,
        }
    }

    /// A change made by an operator command on the server (`tenantctl …`), not by a request:
    /// no peer address, `command` (e.g. `tenantctl/0.1.0 tenant seed`) as the user agent, so the
    /// trail says which command made it, and one fresh request id for the whole run, so its
    /// entries can be found together.
    pub fn command(command: &str) -> Self {
        Self::new(
            None,
            Some(command),
            Some(format!("cli-{}", uuid::Uuid::now_v7())),
        )
    }
}
