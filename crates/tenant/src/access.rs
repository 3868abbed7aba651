//! Who may do what inside a tenant: the permission matrix (role × action) in one place, and the
//! rules for acting on other members. The HTTP layer checks [`allows`] before every tenant
//! operation; the README's matrix is this table, and a table-driven test walks every route with
//! every role against it.

use tenantry_public::memberships::Role;

tenantry_public::text_enum! {
    /// Every permission-checked tenant operation, spelled as the README's matrix names it.
    pub enum Permission {
        /// List and read projects (and, later, other content).
        ContentRead = "content.read",
        /// Create, change and delete projects (and, later, other content).
        ContentWrite = "content.write",
        /// List members and read one member.
        MembersRead = "members.read",
        /// Add, remove, (de)activate members and change their roles.
        MembersManage = "members.manage",
        /// Create, list and revoke invitations.
        InvitationsManage = "invitations.manage",
        /// Create, list and revoke API keys.
        ApiKeysManage = "api_keys.manage",
        /// Read the audit trail.
        AuditRead = "audit.read",
        /// Hand the owner role to another member.
        OwnershipTransfer = "organization.transfer_ownership",
        /// Read the organization as a whole: name, plan, subscription status, domains, settings.
        OrganizationRead = "organization.read",
        /// Read and change the organization's settings (time zone, reminders, retention) and
        /// its name.
        OrganizationSettings = "organization.settings",
        /// Delete the organization (suspended at once, dropped after the grace period).
        OrganizationDelete = "organization.delete",
        /// Read the organization's subscription, usage and invoices.
        BillingRead = "billing.read",
        /// Change the plan, cancel and resume the subscription.
        BillingManage = "billing.manage",
    }
}

impl Permission {
    /// The least powerful role that holds this permission.
    pub fn minimum_role(self) -> Role {
        match self {
            Self::ContentRead | Self::MembersRead | Self::OrganizationRead => Role::Viewer,
            Self::ContentWrite => Role::Member,
            Self::MembersManage
            | Self::InvitationsManage
            | Self::ApiKeysManage
            | Self::AuditRead
            | Self::OrganizationSettings
            | Self::BillingRead => Role::Admin,
            Self::OwnershipTransfer | Self::BillingManage | Self::OrganizationDelete => Role::Owner,
        }
    }

    /// Whether a request authenticated with an API key may use this permission at all (its role
    /// still has to allow it). Keys automate work on content and can read members and the audit
    /// trail and the organization's overview; they never manage people, keys, ownership or the
    /// organization's settings, so a
    /// leaked key cannot mint new keys, invite accounts, lock people out or change how the
    /// organization runs, and revoking it ends the leak. (One exception lives in
    /// the key route: a key may revoke itself.)
    pub fn allowed_for_api_keys(self) -> bool {
        match self {
            Self::ContentRead
            | Self::ContentWrite
            | Self::MembersRead
            | Self::AuditRead
            | Self::OrganizationRead => true,
            Self::MembersManage
            | Self::InvitationsManage
            | Self::ApiKeysManage
            | Self::OwnershipTransfer
            | Self::OrganizationSettings
            | Self::OrganizationDelete
            | Self::BillingRead
            | Self::BillingManage => false,
        }
    }
}

/// The permission matrix: whether `role` holds `permission`. Roles are ordered
/// (owner > admin > member > viewer) and each holds everything the roles below it hold.
pub fn allows(role: Role, permission: Permission) -> bool {
    role.at_least(permission.minimum_role())
}

/// Why an action on another member (or a grant) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RoleRuleError {
    #[error("the owner role can only be handed over by an ownership transfer")]
    OwnerOnlyByTransfer,
    #[error("nobody can grant a role above their own")]
    AboveOwnRole,
    #[error("the owner cannot be removed, demoted or deactivated; transfer ownership first")]
    TargetIsOwner,
    #[error("you cannot change your own membership this way")]
    SelfAction,
}

/// May a member with role `actor` give `granted` to someone (new member, role change, invitation,
/// API key)? The owner role is never granted this way.
pub fn may_grant(actor: Role, granted: Role) -> Result<(), RoleRuleError> {
    if granted == Role::Owner {
        return Err(RoleRuleError::OwnerOnlyByTransfer);
    }
    if !actor.at_least(granted) {
        return Err(RoleRuleError::AboveOwnRole);
    }
    Ok(())
}

/// May `actor` change, remove or (de)activate the membership of someone holding `target`?
/// Nobody acts on the owner; nobody acts on a role above their own.
pub fn may_act_on(actor: Role, target: Role) -> Result<(), RoleRuleError> {
    if target == Role::Owner {
        return Err(RoleRuleError::TargetIsOwner);
    }
    if !actor.at_least(target) {
        return Err(RoleRuleError::AboveOwnRole);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROLES: [Role; 4] = [Role::Owner, Role::Admin, Role::Member, Role::Viewer];

    #[test]
    fn matrix_is_monotonic_and_matches_the_documented_minimums() {
        let expected = [
            (Permission::ContentRead, [true, true, true, true]),
            (Permission::ContentWrite, [true, true, true, false]),
            (Permission::MembersRead, [true, true, true, true]),
            (Permission::MembersManage, [true, true, false, false]),
            (Permission::InvitationsManage, [true, true, false, false]),
            (Permission::ApiKeysManage, [true, true, false, false]),
            (Permission::AuditRead, [true, true, false, false]),
            (Permission::OwnershipTransfer, [true, false, false, false]),
            (Permission::OrganizationRead, [true, true, true, true]),
            (Permission::OrganizationSettings, [true, true, false, false]),
            (Permission::OrganizationDelete, [true, false, false, false]),
            (Permission::BillingRead, [true, true, false, false]),
            (Permission::BillingManage, [true, false, false, false]),
        ];
        assert_eq!(expected.len(), Permission::ALL.len());
        for (permission, row) in expected {
            for (role, want) in ROLES.into_iter().zip(row) {
                assert_eq!(
                    allows(role, permission),
                    want,
                    "{role} × {}",
                    permission.as_str()
                );
            }
        }
    }

    #[test]
    fn api_keys_never_manage_people_keys_ownership_or_settings() {
        let allowed: Vec<_> = Permission::ALL
            .iter()
            .copied()
            .filter(|p| p.allowed_for_api_keys())
            .collect();
        assert_eq!(
            allowed,
            [
                Permission::ContentRead,
                Permission::ContentWrite,
                Permission::MembersRead,
                Permission::AuditRead,
                Permission::OrganizationRead
            ]
        );
    }

    #[test]
    fn grants_never_exceed_the_granter_and_never_make_owners() {
        for actor in ROLES {
            assert_eq!(
                may_grant(actor, Role::Owner),
                Err(RoleRuleError::OwnerOnlyByTransfer)
            );
        }
        assert!(may_grant(Role::Admin, Role::Admin).is_ok());
        assert!(may_grant(Role::Admin, Role::Viewer).is_ok());
        assert_eq!(
            may_grant(Role::Member, Role::Admin),
            Err(RoleRuleError::AboveOwnRole)
        );
        assert_eq!(
            may_act_on(Role::Admin, Role::Owner),
            Err(RoleRuleError::TargetIsOwner)
        );
        assert_eq!(
            may_act_on(Role::Owner, Role::Owner),
            Err(RoleRuleError::TargetIsOwner)
        );
        assert!(may_act_on(Role::Owner, Role::Admin).is_ok());
        assert!(may_act_on(Role::Admin, Role::Member).is_ok());
    }
}
