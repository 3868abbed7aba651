//! `/api/v1/documents`: list (filters, orderings, keyset pages), create a note (JSON) or upload
//! a file (multipart), read, update and delete the documents of the caller's tenant, and
//! download a document's bytes. Content never passes through JSON answers: it is only served by
//! `GET /documents/{id}/content`, with its type, length, digest (`ETag`) and name.

use actix_multipart::Multipart;
use actix_web::dev::JsonBody;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tenantry_public::UserId;
use tenantry_tenant::access::Permission;
use tenantry_tenant::documents::{
    self, sanitise_filename, Content, Document, DocumentFilter, DocumentKind, DocumentOrder,
    DocumentPatch, DocumentSort, NewDocument, Owner, MAX_NOTE_BYTES, MAX_TITLE,
};
use tenantry_tenant::{rows, DocumentId, ProjectId};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::auth::TenantRequest;
use crate::error::{json_error, ApiError};
use crate::fields::{self, Field, Fields};
use crate::pagination::{self, ListQuery, Page, PageParams, Paging, SortKey};
use crate::routes::resource;
use crate::schema;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/documents").get(list).post(create))
        .service(
            resource("/documents/{id}")
                .get(get)
                .patch(update)
                .delete(delete),
        )
        .service(resource("/documents/{id}/content").get(content));
}

#[derive(OpenApi)]
#[openapi(paths(list, create, get, update, delete, content))]
pub struct Api;

/// The largest JSON body of a note's create or update: a 1 MiB body with room for JSON escaping
/// (quotes, backslashes and newlines double), whatever `MAX_BODY_BYTES` says for other routes.
const NOTE_JSON_LIMIT: usize = 2 * MAX_NOTE_BYTES + 64 * 1024;
/// The most bytes of one multipart text field (`title`, `project_id`).
const FORM_FIELD_LIMIT: usize = 16 * 1024;
/// What a multipart body may carry beyond the file itself (boundaries, part headers, the text
/// fields) before its declared length alone makes it too large.
const FORM_OVERHEAD: usize = 64 * 1024;

#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentView {
    #[schema(value_type = Uuid)]
    pub id: DocumentId,
    /// Null: the organization's own document.
    #[schema(value_type = Option<Uuid>)]
    pub project_id: Option<ProjectId>,
    #[schema(example = "Launch plan")]
    pub title: String,
    /// note or file.
    #[schema(example = "note")]
    pub kind: String,
    /// The sanitised name of an uploaded file; null for notes.
    #[schema(example = "plan.pdf")]
    pub filename: Option<String>,
    /// Sniffed from the bytes for files; `text/markdown; charset=utf-8` for notes.
    #[schema(example = "application/pdf")]
    pub content_type: String,
    pub size_bytes: i64,
    /// Lowercase hex SHA-256 of the content (also its `ETag`).
    pub sha256: String,
    #[schema(value_type = Uuid)]
    pub created_by: UserId,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Document> for DocumentView {
    fn from(d: Document) -> Self {
        Self {
            id: d.id,
            project_id: d.project_id,
            title: d.title,
            kind: d.kind.to_string(),
            filename: d.filename,
            content_type: d.content_type,
            size_bytes: d.size_bytes,
            sha256: d.sha256,
            created_by: d.created_by,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct DocumentQuery {
    /// Only documents of this project (id), or the organization's own (`none`).
    #[param(schema_with = schema::project_filter)]
    pub project: Option<String>,
    /// Only notes or only files.
    #[param(schema_with = schema::document_kind)]
    pub kind: Option<String>,
    /// Only documents whose title or file name contains this (case-insensitive).
    #[param(schema_with = schema::search)]
    pub search: Option<String>,
    /// -created_at (default), created_at, title, -title, size or -size.
    #[param(schema_with = schema::document_ordering)]
    pub ordering: Option<String>,
}

/// A note (JSON). Files are uploaded as `multipart/form-data` instead.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateNote {
    #[schema(example = "Launch plan")]
    #[schema(schema_with = schema::document_title, required = true)]
    pub title: Option<String>,
    /// A project of this organization; absent or null: the organization's own document.
    #[schema(schema_with = schema::id)]
    pub project_id: Option<String>,
    /// Markdown, at most 1 MiB of UTF-8 (absent: empty).
    #[schema(schema_with = schema::note_body)]
    pub body: Option<String>,
}

/// A file upload (`multipart/form-data`): the bytes in `file` (its file name is sanitised and
/// kept), with an optional title (default: the file name) and project.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // Only describes the multipart body, which is read part by part.
#[serde(deny_unknown_fields)] // Other parts are refused (422).
pub struct UploadFile {
    /// The file, at most `DOCUMENT_MAX_BYTES` (default 25 MiB). Its type is sniffed from the bytes.
    #[schema(schema_with = schema::binary)]
    file: String,
    #[schema(schema_with = schema::document_title)]
    title: Option<String>,
    /// A project of this organization; absent: the organization's own document.
    #[schema(schema_with = schema::form_id)]
    project_id: Option<String>,
}

/// Absent fields stay as they are; `project_id: null` makes it the organization's own document.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateDocument {
    #[schema(schema_with = schema::document_title_or_null)]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "fields::present")]
    #[schema(schema_with = schema::id)]
    pub project_id: Option<Option<String>>,
    /// A note's new markdown body (notes only; a file's content never changes).
    #[schema(schema_with = schema::note_body)]
    pub body: Option<String>,
}

fn project_id(raw: &str) -> Result<ProjectId, &'static str> {
    raw.trim()
        .parse()
        .map_err(|_| "must be a project id (UUID)")
}

/// A note body of at most [`MAX_NOTE_BYTES`] bytes.
fn note_body(value: &Option<String>) -> Field<Option<Content>> {
    match value {
        Some(b) if b.len() > MAX_NOTE_BYTES => Err(fields::invalid(
            "body",
            format!("must be at most {MAX_NOTE_BYTES} bytes of UTF-8"),
        )),
        other => Ok(other.clone().map(Content::note)),
    }
}

impl TryFrom<CreateNote> for NewDocument {
    type Error = ApiError;

    fn try_from(b: CreateNote) -> Result<Self, ApiError> {
        let (title, project_id, body) = (
            fields::name("title", &b.title, MAX_TITLE),
            fields::parse_opt("project_id", &b.project_id, project_id),
            note_body(&b.body),
        )
            .collect()?;
        Ok(NewDocument {
            project_id,
            title,
            kind: DocumentKind::Note,
            filename: None,
            content: body.unwrap_or_else(|| Content::note(String::new())),
        })
    }
}

impl TryFrom<UpdateDocument> for DocumentPatch {
    type Error = ApiError;

    fn try_from(b: UpdateDocument) -> Result<Self, ApiError> {
        let (title, project, body) = (
            fields::parse_opt("title", &b.title, |t| {
                tenantry_public::names::display_name(t, MAX_TITLE)
            }),
            b.project_id
                .as_ref()
                .map(|p| {
                    p.as_deref()
                        .map(|p| fields::check("project_id", project_id(p)))
                        .transpose()
                })
                .transpose(),
            note_body(&b.body),
        )
            .collect()?;
        Ok(DocumentPatch {
            title,
            project_id: project,
            body,
        })
    }
}

/// A JSON body of at most [`NOTE_JSON_LIMIT`] bytes (or `MAX_BODY_BYTES`, if larger), with the
/// statuses every JSON route answers.
async fn note_json<T: DeserializeOwned>(
    cx: &TenantRequest,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<T, ApiError> {
    let limit = NOTE_JSON_LIMIT.max(cx.state.settings.max_body_bytes);
    let mut payload = payload.into_inner();
    JsonBody::<T>::new(req, &mut payload, None, true)
        .limit(limit)
        .await
        .map_err(json_error)
}

/// The media type of the body, lowercased, without parameters.
fn media_type(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or_default().trim();
    Some(essence.to_ascii_lowercase())
}

fn malformed(e: actix_multipart::MultipartError) -> ApiError {
    ApiError::BadRequest(format!("the multipart body is not valid: {e}"))
}

/// Reads one part, refusing it with 413 as soon as it passes `limit` bytes (nothing of it is
/// kept, and the rest is not read).
async fn read_part(field: &mut actix_multipart::Field, limit: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(malformed)?;
        if out.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

async fn read_text(field: &mut actix_multipart::Field, name: &str) -> Result<String, ApiError> {
    let bytes = read_part(field, FORM_FIELD_LIMIT).await?;
    String::from_utf8(bytes).map_err(|_| ApiError::validation(name, "must be UTF-8 text"))
}

/// A file upload read from a multipart body, the file capped at `max` bytes while it is read
/// (413 before anything is stored). Parts: `file` (once, required), `title`, `project_id`; any
/// other part is 422.
async fn upload(
    req: &HttpRequest,
    payload: web::Payload,
    max: usize,
) -> Result<NewDocument, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > max.saturating_add(FORM_OVERHEAD)) {
        return Err(ApiError::PayloadTooLarge);
    }
    let mut form = Multipart::new(req.headers(), payload);
    let mut file: Option<(String, Vec<u8>)> = None;
    let (mut title, mut project) = (None, None);
    while let Some(part) = form.next().await {
        let mut part = part.map_err(malformed)?;
        match part.name().unwrap_or_default() {
            "file" => {
                if file.is_some() {
                    return Err(ApiError::validation("file", "must be given once"));
                }
                let name = part
                    .content_disposition()
                    .and_then(|cd| cd.get_filename())
                    .map(sanitise_filename)
                    .unwrap_or_else(|| "file".to_owned());
                file = Some((name, read_part(&mut part, max).await?));
            }
            "title" => title = Some(read_text(&mut part, "title").await?),
            "project_id" => project = Some(read_text(&mut part, "project_id").await?),
            other => {
                return Err(ApiError::validation(
                    other,
                    "is not a part of an upload (file, title, project_id)",
                ))
            }
        }
    }
    let (title, project_id, file) = (
        fields::parse_opt("title", &title, |t| {
            tenantry_public::names::display_name(t, MAX_TITLE)
        }),
        fields::parse_opt("project_id", &project, project_id),
        file.ok_or_else(|| fields::invalid("file", "is required")),
    )
        .collect()?;
    let (filename, bytes) = file;
    Ok(NewDocument {
        project_id,
        title: title.unwrap_or_else(|| filename.chars().take(MAX_TITLE).collect()),
        kind: DocumentKind::File,
        filename: Some(filename),
        content: Content::file(bytes),
    })
}

/// Filters and ordering from the query string: 400 naming the parameter when one is bad.
fn filter(q: &DocumentQuery) -> Result<(DocumentFilter, DocumentOrder), ApiError> {
    let owner = fields::query("project", &q.project, |p| match p.trim() {
        "none" => Ok(Owner::Organization),
        id => project_id(id)
            .map(Owner::Project)
            .map_err(|_| "must be a project id (UUID) or none"),
    })?;
    let kind = fields::query("kind", &q.kind, DocumentKind::parse)?;
    let search = fields::query("search", &q.search, |s| {
        if s.chars().count() > 200 {
            Err("must be at most 200 characters")
        } else if s.contains('\0') {
            Err("must not contain NUL characters")
        } else {
            Ok(s.trim().to_owned())
        }
    })?
    .filter(|s| !s.is_empty());
    let ordering = q
        .ordering
        .as_deref()
        .map(pagination::ordering::<DocumentSort>)
        .transpose()?
        .unwrap_or(DocumentOrder::NEWEST);
    Ok((
        DocumentFilter {
            owner,
            kind,
            search,
        },
        ordering,
    ))
}

/// The filters as the cursor is bound to them and `next` repeats them.
fn list_query(f: &DocumentFilter, ordering: DocumentOrder) -> ListQuery {
    let owner = f.owner.map(|o| match o {
        Owner::Project(p) => p.to_string(),
        Owner::Organization => "none".to_owned(),
    });
    ListQuery::new(ordering.name())
        .filter("project", owner)
        .filter("kind", f.kind)
        .filter("search", f.search.as_deref())
        .filter(
            "ordering",
            (ordering != DocumentOrder::NEWEST).then(|| ordering.name()),
        )
}

/// Lists the tenant's documents, newest first unless `ordering` says otherwise.
#[utoipa::path(get, path = "/api/v1/documents", tag = "documents", params(DocumentQuery, PageParams),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Page<DocumentView>),
              (status = 400, description = "Bad filter, ordering, cursor or limit")))]
pub async fn list(
    cx: TenantRequest,
    query: web::Query<DocumentQuery>,
    paging: Paging,
) -> Result<HttpResponse, ApiError> {
    cx.require(Permission::ContentRead)?;
    let (filter, ordering) = filter(&query)?;
    let page = paging.request::<SortKey<DocumentId>>(list_query(&filter, ordering))?;
    let window = page.window(ordering)?;
    let (conn, found) = cx.first_page::<Document>(&filter, &window).await?;
    drop(conn);
    Ok(HttpResponse::Ok().json(page.respond(
        found,
        |d| pagination::sort_key(&d.sort_value(ordering.sort), d.id),
        DocumentView::from,
    )))
}

/// Creates a note (`application/json`) or uploads a file (`multipart/form-data`). Viewers may
/// not. Nothing is stored unless everything is: an oversized body (413), the plan's storage
/// (403 `plan-limit`) or a project not of this organization (422) leave no row and no bytes.
#[utoipa::path(post, path = "/api/v1/documents", tag = "documents",
    request_body(content((CreateNote = "application/json"), (UploadFile = "multipart/form-data"))),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = DocumentView),
              (status = 400, description = "The body is not valid JSON or not a valid multipart body"),
              (status = 403, description = "Viewer, or (type ending in plan-limit) the plan's storage (max_storage_mb) would be exceeded"),
              (status = 413, description = "The file is larger than DOCUMENT_MAX_BYTES, or the note's JSON body larger than 2 MiB"),
              (status = 415, description = "The body is neither application/json nor multipart/form-data"),
              (status = 422, description = "Invalid values, a missing file, or a project not of this organization")))]
pub async fn create(
    cx: TenantRequest,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    cx.require(Permission::ContentWrite)?;
    let new = match media_type(&req).as_deref() {
        Some("multipart/form-data") => {
            upload(&req, payload, cx.state.settings.document_max_bytes).await?
        }
        Some(m) if m == "application/json" || m.ends_with("+json") => {
            NewDocument::try_from(note_json::<CreateNote>(&cx, &req, payload).await?)?
        }
        _ => {
            return Err(ApiError::UnsupportedMediaType(
                "the body must be application/json (a note) or multipart/form-data (a file)".into(),
            ))
        }
    };
    let mut conn = cx.bound().await?;
    let document = documents::create(&mut conn, &cx.acting(), &new).await?;
    Ok(HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            format!("/api/v1/documents/{}", document.id),
        ))
        .json(DocumentView::from(document)))
}

/// One document of this tenant (its description; the bytes are at `/content`).
#[utoipa::path(get, path = "/api/v1/documents/{id}", tag = "documents",
    params(("id" = Uuid, Path, description = "Document id")), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = DocumentView),
              (status = 404, description = "No such document in this organization")))]
pub async fn get(cx: TenantRequest, id: web::Path<DocumentId>) -> Result<HttpResponse, ApiError> {
    let document: Document = cx.row(Permission::ContentRead, &id.into_inner()).await?;
    Ok(HttpResponse::Ok().json(DocumentView::from(document)))
}

/// Changes a document's title or project, or a note's body. Viewers may not.
#[utoipa::path(patch, path = "/api/v1/documents/{id}", tag = "documents", request_body = UpdateDocument,
    params(("id" = Uuid, Path, description = "Document id")), security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = DocumentView),
              (status = 403, description = "Viewer, or (type ending in plan-limit) the plan's storage (max_storage_mb) would be exceeded"),
              (status = 404, description = "No such document in this organization"),
              (status = 413, description = "The JSON body is larger than 2 MiB"),
              (status = 422, description = "Invalid values, a body for a file, or a project not of this organization")))]
pub async fn update(
    cx: TenantRequest,
    id: web::Path<DocumentId>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    cx.require(Permission::ContentWrite)?;
    let patch = DocumentPatch::try_from(note_json::<UpdateDocument>(&cx, &req, payload).await?)?;
    let mut conn = cx.bound().await?;
    let document = documents::update(&mut conn, &cx.acting(), *id, &patch).await?;
    Ok(HttpResponse::Ok().json(DocumentView::from(document)))
}

/// Deletes a document and its content. Viewers may not.
#[utoipa::path(delete, path = "/api/v1/documents/{id}", tag = "documents",
    params(("id" = Uuid, Path, description = "Document id")), security(("bearer" = []), ("api_key" = [])),
    responses((status = 204, description = "Deleted"),
              (status = 403, description = "Viewer"),
              (status = 404, description = "No such document in this organization")))]
pub async fn delete(
    cx: TenantRequest,
    id: web::Path<DocumentId>,
) -> Result<HttpResponse, ApiError> {
    let mut conn = cx.connect(Permission::ContentWrite).await?;
    rows::delete::<Document>(&mut conn, &cx.acting(), *id).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The document's bytes, as an attachment named after the file (or the note's title, `.md`).
/// `ETag` is the SHA-256; a matching `If-None-Match` is 304 without the bytes.
#[utoipa::path(get, path = "/api/v1/documents/{id}/content", tag = "documents",
    params(("id" = Uuid, Path, description = "Document id"),
           ("If-None-Match" = Option<String>, Header, description = "An ETag from an earlier download")),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "The bytes, with the document's content type",
                content_type = "*/*", body = String,
                headers(("ETag" = String, description = "The quoted SHA-256 of the content"),
                        ("Content-Disposition" = String, description = "attachment, with an ASCII filename and an RFC 6266 filename*"))),
              (status = 304, description = "Not modified: If-None-Match names the current ETag",
                headers(("ETag" = String, description = "The quoted SHA-256 of the content"))),
              (status = 404, description = "No such document in this organization")))]
pub async fn content(
    cx: TenantRequest,
    id: web::Path<DocumentId>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let conn = cx.connect(Permission::ContentRead).await?;
    let document = documents::get(&conn, *id)
        .await?
        .ok_or(ApiError::NotFound)?;
    if none_match(&req, &document.sha256) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, etag(&document.sha256)))
            .finish());
    }
    // Bytes and description read together, so the ETag and name are those of these bytes.
    let (document, bytes) = documents::content(&conn, *id)
        .await?
        .ok_or(ApiError::NotFound)?;
    drop(conn);
    let name = match &document.filename {
        Some(name) => name.clone(),
        None => format!("{}.md", sanitise_filename(&document.title)),
    };
    Ok(HttpResponse::Ok()
        .content_type(document.content_type.as_str())
        .insert_header((header::ETAG, etag(&document.sha256)))
        .insert_header((header::CONTENT_DISPOSITION, attachment(&name)))
        .body(bytes))
}

fn etag(sha256: &str) -> String {
    format!("\"{sha256}\"")
}

/// Whether `If-None-Match` names this ETag (weak comparison, RFC 9110 §13.1.2) or is `*`.
fn none_match(req: &HttpRequest, sha256: &str) -> bool {
    let ours = etag(sha256);
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == ours)
}

/// `Content-Disposition: attachment` for a sanitised name (RFC 6266): an ASCII `filename`
/// (others replaced by `_`) for old clients and the exact name as `filename*=UTF-8''…`.
fn attachment(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.bytes() {
        // RFC 8187 attr-char: ALPHA / DIGIT / "!#$&+-.^_`|~" stay, everything else is %XX.
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attachments_carry_an_ascii_fallback_and_the_exact_name() {
        assert_eq!(
            attachment("résumé 2026.pdf"),
            "attachment; filename=\"r_sum_ 2026.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%202026.pdf"
        );
        assert_eq!(
            attachment("a;b.txt"),
            "attachment; filename=\"a;b.txt\"; filename*=UTF-8''a%3Bb.txt"
        );
    }
}
