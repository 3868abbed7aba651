//! Documents of a project or of the organization: markdown notes and uploaded files. The row
//! (`documents`) describes the content; the bytes live in `document_contents`, written and
//! deleted in the same transaction as the row, so a failed change leaves neither. Every change
//! that adds bytes checks the plan's `max_storage_mb` under the tenant's storage lock. Reads take
//! any tenant-bound handle; changes take the acting member and are audited in their transaction.

use chrono::{DateTime, Utc};

use sha2::{Digest, Sha256};
use tenantry_public::db::{DbError, OnConstraint};
use tenantry_public::{CompanyId, UserId};

use crate::audit::{Acting, Action, Entry};
use crate::binding::{TenantConn, TenantDb};
use crate::ids::{DocumentId, ProjectId};
use crate::ordering::{Order, SortColumn, SortKind, SortValue, Window};
use crate::rows;
use deadpool_postgres::GenericClient;

/// The most characters a document title may have.
pub const MAX_TITLE: usize = 300;
/// The most bytes (UTF-8) of a note's markdown body: 1 MiB.
pub const MAX_NOTE_BYTES: usize = 1024 * 1024;
/// The most characters of a stored file name.
pub const MAX_FILENAME: usize = 255;
/// What a note's content is served as.
pub const NOTE_CONTENT_TYPE: &str = "text/markdown; charset=utf-8";
/// The namespace of the per-tenant storage lock (`pg_advisory_xact_lock(ns, hashtext(schema))`);
/// apart from the migration lock's.
const STORAGE_LOCK_NAMESPACE: i32 = 0x646f_6373; // "docs"

tenantry_public::text_enum! {
    /// A markdown note written through the API, or an uploaded file.
    pub enum DocumentKind { Note = "note", File = "file" }
}

tenantry_public::text_enum! {
    /// The columns `GET /documents` may be ordered by (each followed by the id).
    pub enum DocumentSort { CreatedAt = "created_at", Title = "title", Size = "size" }
}

impl SortColumn for DocumentSort {
    const ALL: &'static [Self] = Self::ALL;

    fn as_str(self) -> &'static str {
        self.as_str()
    }

    fn expr(self) -> &'static str {
        match self {
            Self::CreatedAt => "created_at",
            Self::Title => "title",
            Self::Size => "size_bytes",
        }
    }

    fn kind(self) -> SortKind {
        match self {
            Self::CreatedAt => SortKind::Time,
            Self::Title => SortKind::Text,
            Self::Size => SortKind::Int,
        }
    }
}

/// A document list ordering.
pub type DocumentOrder = Order<DocumentSort>;
/// A page of documents as [`list`] is asked for it.
pub type DocumentWindow = Window<DocumentSort, DocumentId>;

impl Order<DocumentSort> {
    /// The default ordering: newest first.
    pub const NEWEST: Self = Order::desc(DocumentSort::CreatedAt);
}

#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub id: DocumentId,
    /// `None`: the organization's own document.
    pub project_id: Option<ProjectId>,
    pub title: String,
    pub kind: DocumentKind,
    /// The sanitised name of an uploaded file; `None` for notes.
    pub filename: Option<String>,
    /// Sniffed from the bytes for files; [`NOTE_CONTENT_TYPE`] for notes.
    pub content_type: String,
    pub size_bytes: i64,
    /// Lowercase hex SHA-256 of the content.
    pub sha256: String,
    pub created_by: UserId,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

// Deleting a document (`rows::delete`) takes its bytes too: `document_contents` cascades.
rows::table!(
    Document, "documents", id: DocumentId, deleted: DocumentDeleted,
    not_found: DocumentError::NotFound,
    columns: [
        id,
        project_id,
        title,
        kind,
        filename,
        content_type,
        size_bytes,
        sha256,
        created_by,
        created_at,
        updated_at,
    ]
);

crate::audit::audited!(Document, "document", id: id, [project_id, title, kind, filename, content_type, size_bytes, sha256]);

/// Content ready to store: the bytes with their type, size and digest.
#[derive(Debug, Clone)]
pub struct Content {
    bytes: Vec<u8>,
    content_type: String,
    sha256: String,
}

impl Content {
    /// A note's markdown body (the caller has checked [`MAX_NOTE_BYTES`]).
    pub fn note(body: String) -> Self {
        Self::with_type(body.into_bytes(), NOTE_CONTENT_TYPE.to_owned())
    }

    /// An uploaded file's bytes; the type is sniffed from them ([`sniff`]), never taken from
    /// the client.
    pub fn file(bytes: Vec<u8>) -> Self {
        let content_type = sniff(&bytes);
        Self::with_type(bytes, content_type)
    }

    fn with_type(bytes: Vec<u8>, content_type: String) -> Self {
        let sha256 = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Self {
            bytes,
            content_type,
            sha256,
        }
    }

    pub fn size(&self) -> i64 {
        i64::try_from(self.bytes.len()).unwrap_or(i64::MAX)
    }
}

/// The media type of `bytes` from their magic numbers (`infer`); else `text/plain` for valid
/// UTF-8, else `application/octet-stream`.
pub fn sniff(bytes: &[u8]) -> String {
    match infer::get(bytes) {
        Some(kind) => kind.mime_type().to_owned(),
        None if std::str::from_utf8(bytes).is_ok() => "text/plain; charset=utf-8".to_owned(),
        None => "application/octet-stream".to_owned(),
    }
}

/// A client's file name made safe to store and to send back in `Content-Disposition`: only the
/// last path part (`/` or `\`), no control characters or quotes, no leading dots (no `..`, no
/// hidden files), surrounding spaces trimmed, at most [`MAX_FILENAME`] characters; `file` when
/// nothing is left.
pub fn sanitise_filename(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | '\'' | '`'))
        .collect();
    let cleaned: String = cleaned
        .trim()
        .trim_start_matches('.')
        .trim()
        .chars()
        .take(MAX_FILENAME)
        .collect();
    let cleaned = cleaned.trim_end().to_owned();
    if cleaned.is_empty() {
        "file".to_owned()
    } else {
        cleaned
    }
}

/// A validated new document; the acting member is its creator.
#[derive(Debug, Clone)]
pub struct NewDocument {
    pub project_id: Option<ProjectId>,
    pub title: String,
    pub kind: DocumentKind,
    /// Sanitised ([`sanitise_filename`]); files only.
    pub filename: Option<String>,
    pub content: Content,
}

/// A validated partial update; `None` leaves a field as it is, `Some(None)` moves the document
/// to the organization.
#[derive(Debug, Clone, Default)]
pub struct DocumentPatch {
    pub title: Option<String>,
    pub project_id: Option<Option<ProjectId>>,
    /// A note's new body; refused for files ([`DocumentError::NotANote`]).
    pub body: Option<Content>,
}

/// Whose documents a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Project(ProjectId),
    /// The organization's own documents (no project).
    Organization,
}

/// Filters for [`list`]; every field is optional.
#[derive(Debug, Clone, Default)]
pub struct DocumentFilter {
    pub owner: Option<Owner>,
    pub kind: Option<DocumentKind>,
    /// Case-insensitive substring of the title or the file name.
    pub search: Option<String>,
}

impl Document {
    /// This document's value of the `sort` column.
    pub fn sort_value(&self, sort: DocumentSort) -> SortValue {
        match sort {
            DocumentSort::CreatedAt => SortValue::Time(Some(self.created_at)),
            DocumentSort::Title => SortValue::Text(Some(self.title.clone())),
            DocumentSort::Size => SortValue::Int(Some(self.size_bytes)),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("no such document in this organization")]
    NotFound,
    /// The project is not one of this organization's (never says whether it exists elsewhere).
    #[error("no such project in this organization")]
    UnknownProject,
    /// A body was given for an uploaded file, whose content never changes.
    #[error("only a note's body can be changed")]
    NotANote,
    /// Storing this would take the organization past its plan's storage.
    #[error(
        "the {plan} plan allows at most {max_mb} MB of documents (max_storage_mb); delete documents or upgrade the plan"
    )]
    StorageLimit { plan: String, max_mb: i32 },
    #[error(transparent)]
    Db(#[from] DbError),
}

/// Tenant migration V7's key from `documents.project_id` to `projects`: a violation is a
/// project that is not this tenant's.
const PROJECT_FK: &str = "documents_project_id_fkey";

impl rows::Listed for Document {
    type Filter = DocumentFilter;
    type Sort = DocumentSort;
    const FILTERS: &'static str = FILTERS;

    fn params(filter: &DocumentFilter) -> rows::Params {
        let (project, organization) = match filter.owner {
            Some(Owner::Project(p)) => (Some(p), false),
            Some(Owner::Organization) => (None, true),
            None => (None, false),
        };
        let pattern = filter
            .search
            .as_deref()
            .map(|s| format!("%{}%", escape_like(s)));
        vec![
            Box::new(project),
            Box::new(organization),
            Box::new(filter.kind),
            Box::new(pattern),
        ]
    }
}

/// The document filters as SQL, on parameters `$1` to `$4`: the project, organization-only, the
/// kind and the search pattern.
const FILTERS: &str = "($1::uuid is null or project_id = $1) \
    and (not $2 or project_id is null) \
    and ($3::text is null or kind = $3) \
    and ($4::text is null or title ilike $4 or filename ilike $4)";

/// `%`, `_` and `\` taken literally in an `ilike` pattern.
fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub async fn get(db: &impl TenantDb, id: DocumentId) -> Result<Option<Document>, DbError> {
    db.client()
        .query_opt(
            &format!("select {COLUMNS} from documents where id = $1"),
            &[&id],
        )
        .await?
        .as_ref()
        .map(Document::try_from)
        .transpose()
}

/// A document with its bytes, read together (`None` when there is no such document).
pub async fn content(
    db: &impl TenantDb,
    id: DocumentId,
) -> Result<Option<(Document, Vec<u8>)>, DbError> {
    db.client()
        .query_opt(
            &format!(
                "select {COLUMNS}, content from documents \
                   join document_contents on document_id = id where id = $1"
            ),
            &[&id],
        )
        .await?
        .map(|row| Ok((Document::try_from(&row)?, row.try_get(11)?)))
        .transpose()
}

/// The bytes the tenant's documents take: the figure the plan's `max_storage_mb` limits.
pub async fn storage_used(db: &impl TenantDb) -> Result<i64, DbError> {
    Ok(db
        .client()
        .query_one(
            "select coalesce(sum(size_bytes), 0)::bigint from documents",
            &[],
        )
        .await?
        .try_get(0)?)
}

/// Takes the tenant's storage lock for the rest of `db`'s transaction. Every change that adds
/// bytes takes it before reading the storage figure, so two concurrent uploads queue on it and
/// cannot both pass the limit; reads and deletions never take it.
async fn lock_storage(db: &impl TenantDb) -> Result<(), DbError> {
    db.client()
        .execute(
            "select pg_advisory_xact_lock($1, hashtext(current_schema()))",
            &[&STORAGE_LOCK_NAMESPACE],
        )
        .await?;
    Ok(())
}

/// Refuses a change that adds `adding` bytes and frees `freeing` if the total would pass the
/// plan's `max_storage_mb` (null: unlimited). The caller holds the storage lock.
async fn check_storage(
    db: &impl TenantDb,
    company: CompanyId,
    adding: i64,
    freeing: i64,
) -> Result<(), DocumentError> {
    let client = db.client();
    let plan = client
        .query_one(
            "select p.code, p.max_storage_mb from public.companies c \
               join public.plans p on p.code = c.plan where c.id = $1",
            &[&company],
        )
        .await
        .map_err(DbError::from)?;
    let (code, max_mb): (String, Option<i32>) = (
        plan.try_get(0).map_err(DbError::from)?,
        plan.try_get(1).map_err(DbError::from)?,
    );
    let Some(max_mb) = max_mb else {
        return Ok(());
    };
    let used = storage_used(db).await?;
    if used - freeing + adding > i64::from(max_mb) * 1024 * 1024 {
        return Err(DocumentError::StorageLimit { plan: code, max_mb });
    }
    Ok(())
}

/// Creates a document and stores its content, audited as `document.created`; nothing is
/// stored when the plan's storage would be exceeded or the project is not this tenant's.
pub async fn create(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    new: &NewDocument,
) -> Result<Document, DocumentError> {
    let tx = conn.transaction().await?;
    lock_storage(&tx).await?;
    check_storage(&tx, acting.company, new.content.size(), 0).await?;
    let row = tx
        .client()
        .query_one(
            &format!(
                "insert into documents (id, project_id, title, kind, filename, content_type, \
                     size_bytes, sha256, created_by) \
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9) returning {COLUMNS}"
            ),
            &[
                &DocumentId::new(),
                &new.project_id,
                &new.title,
                &new.kind,
                &new.filename,
                &new.content.content_type,
                &new.content.size(),
                &new.content.sha256,
                &acting.user,
            ],
        )
        .await
        .map_err(DbError::from)
        .on_constraint(PROJECT_FK, || DocumentError::UnknownProject)?;
    let document = Document::try_from(&row)?;
    tx.client()
        .execute(
            "insert into document_contents (document_id, content) values ($1, $2)",
            &[&document.id, &new.content.bytes],
        )
        .await
        .map_err(DbError::from)?;
    acting
        .commit(tx, Entry::created(Action::DocumentCreated, &document))
        .await?;
    Ok(document)
}

/// Applies a patch, audited as `document.updated` with the document before and after. A new
/// note body replaces the content (and is checked against the plan's storage).
pub async fn update(
    conn: &mut TenantConn,
    acting: &Acting<'_>,
    id: DocumentId,
    patch: &DocumentPatch,
) -> Result<Document, DocumentError> {
    let tx = conn.transaction().await?;
    if patch.body.is_some() {
        // The storage lock before the row lock, so the size read under it is current.
        lock_storage(&tx).await?;
    }
    let before = rows::lock::<Document>(&tx, &id).await?;
    if let Some(body) = &patch.body {
        if before.kind != DocumentKind::Note {
            return Err(DocumentError::NotANote);
        }
        check_storage(&tx, acting.company, body.size(), before.size_bytes).await?;
    }
    let body = patch.body.as_ref();
    let row = tx
        .client()
        .query_one(
            &format!(
                "update documents set \
                    title = coalesce($2, title), \
                    project_id = case when $3 then $4 else project_id end, \
                    size_bytes = coalesce($5, size_bytes), \
                    sha256 = coalesce($6, sha256), \
                    updated_at = now() \
                  where id = $1 returning {COLUMNS}"
            ),
            &[
                &id,
                &patch.title,
                &patch.project_id.is_some(),
                &patch.project_id.flatten(),
                &body.map(Content::size),
                &body.map(|b| b.sha256.as_str()),
            ],
        )
        .await
        .map_err(DbError::from)
        .on_constraint(PROJECT_FK, || DocumentError::UnknownProject)?;
    let after = Document::try_from(&row)?;
    if let Some(body) = body {
        tx.client()
            .execute(
                "update document_contents set content = $2 where document_id = $1",
                &[&id, &body.bytes],
            )
            .await
            .map_err(DbError::from)?;
    }
    acting
        .commit(tx, Entry::changed(Action::DocumentUpdated, &before, &after))
        .await?;
    Ok(after)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_lose_paths_controls_quotes_and_leading_dots() {
        assert_eq!(sanitise_filename("../../etc/passwd"), "passwd");
        assert_eq!(sanitise_filename(r"C:\Users\me\report.pdf"), "report.pdf");
        assert_eq!(sanitise_filename("a\"b'c\r\n\u{7}.txt"), "abc.txt");
        assert_eq!(sanitise_filename(".."), "file");
        assert_eq!(sanitise_filename("  .hidden "), "hidden");
        assert_eq!(sanitise_filename("dir/"), "file");
        assert_eq!(sanitise_filename("résumé.pdf"), "résumé.pdf");
        assert_eq!(
            sanitise_filename(&"x".repeat(300)).chars().count(),
            MAX_FILENAME
        );
    }

    #[test]
    fn content_types_are_sniffed_from_the_bytes() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), "image/png");
        assert_eq!(sniff(b"%PDF-1.7\n"), "application/pdf");
        assert_eq!(
            sniff("plain text é".as_bytes()),
            "text/plain; charset=utf-8"
        );
        assert_eq!(sniff(&[0xff, 0xfe, 0x00, 0x80]), "application/octet-stream");
    }

    #[test]
    fn content_knows_its_size_and_digest() {
        let c = Content::note("abc".into());
        assert_eq!(c.size(), 3);
        assert_eq!(
            c.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(c.content_type, NOTE_CONTENT_TYPE);
    }

    #[test]
    fn like_patterns_take_wildcards_literally() {
        assert_eq!(escape_like(r"50%_a\b"), r"50\%\_a\\b");
    }
}
