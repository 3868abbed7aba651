//! Typed ids of the rows in a tenant schema, all made by [`tenantry_public::typed_id!`].

tenantry_public::typed_id!(
    /// A row of the tenant's `projects` table.
    pub ProjectId
);
tenantry_public::typed_id!(
    /// A row of the tenant's `tasks` table.
    pub TaskId
);
tenantry_public::typed_id!(
    /// A row of the tenant's `documents` table.
    pub DocumentId
);
tenantry_public::typed_id!(
    /// A row of the tenant's `invitations` table.
    pub InvitationId
);
tenantry_public::typed_id!(
    /// A row of the tenant's `api_keys` table.
    pub ApiKeyId
);
tenantry_public::typed_id!(
    /// A row of the tenant's `notifications` table (an email sent about a task).
    pub NotificationId
);
tenantry_public::typed_id!(
    /// A row of the tenant's `reports` table (a project report).
    pub ReportId
);
tenantry_public::typed_id!(
    /// A row of the tenant's `audit_log` table (bigserial: increasing with time).
    pub AuditEntryId: i64
);
