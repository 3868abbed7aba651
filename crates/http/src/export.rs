//! CSV exports (`GET /tasks/export`, `GET /projects/export`): content negotiation, RFC 4180
//! records with cells neutralised against formula injection, and a streamed answer that writes
//! rows as the database sends them, so an export of any size holds only a chunk in memory.

use actix_web::http::header::{self, ContentDisposition, DispositionParam, DispositionType};
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use futures_util::{stream, Stream, StreamExt};
use std::fmt::Display;
use utoipa::IntoParams;

use crate::error::ApiError;

/// The media type of every export.
pub const CSV: &str = "text/csv; charset=utf-8";

/// The query parameter an export takes besides the list's filters.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// `csv`, the only format (the same as `Accept: text/csv`).
    #[param(schema_with = crate::schema::export_format)]
    pub format: Option<String>,
}

/// Refuses an export the client cannot take: `format` other than `csv` (400), or an `Accept`
/// header that admits neither `text/csv`, `text/*` nor `*/*` (406). No `Accept` takes anything.
pub fn negotiate(req: &HttpRequest) -> Result<(), ApiError> {
    let pairs = actix_web::web::Query::<Vec<(String, String)>>::from_query(req.query_string())
        .map_err(crate::error::query_error)?;
    if let Some((_, format)) = pairs.iter().rev().find(|(k, _)| k == "format") {
        if format.trim() != "csv" {
            return Err(ApiError::BadRequest("format must be csv".into()));
        }
    }
    let Some(accept) = req.headers().get(header::ACCEPT) else {
        return Ok(());
    };
    let accept = accept.to_str().unwrap_or_default();
    if accept.trim().is_empty() || accepts_csv(accept) {
        Ok(())
    } else {
        Err(ApiError::NotAcceptable(
            "exports are text/csv; send Accept: text/csv (or */*)".into(),
        ))
    }
}

/// Whether an `Accept` value admits `text/csv` with a quality above zero.
fn accepts_csv(accept: &str) -> bool {
    accept.split(',').any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        let refused = parts.any(|p| {
            p.strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        !refused && matches!(media.as_str(), "text/csv" | "text/*" | "*/*")
    })
}

pub use tenantry_tenant::csv::Record;
use tenantry_tenant::csv::{header as header_record, record};

/// How many rows go into one chunk of the body.
const ROWS_PER_CHUNK: usize = 512;

/// The streamed CSV answer: `200`, `text/csv`, `Content-Disposition: attachment` with a dated
/// filename (`{name}-YYYY-MM-DD.csv`), the header row, then one record per row as `rows` yields
/// them. A database error mid-way ends the body early (the status is already sent) and is logged.
pub fn respond<T, E, S, W>(name: &str, header: &[&str], rows: S, mut write: W) -> HttpResponse
where
    T: 'static,
    E: Display + 'static,
    S: Stream<Item = Result<T, E>> + 'static,
    W: FnMut(&T, &mut Record<'_>) + 'static,
{
    let mut head = String::new();
    header_record(&mut head, header);
    let body = rows.ready_chunks(ROWS_PER_CHUNK).map(move |chunk| {
        let mut out = String::with_capacity(chunk.len() * 160);
        for row in chunk {
            match row {
                Ok(row) => record(&mut out, |r| write(&row, r)),
                Err(e) => {
                    tracing::error!(error = %e, "an export stopped part-way");
                    return Err(actix_web::error::ErrorInternalServerError("export failed"));
                }
            }
        }
        Ok::<Bytes, actix_web::Error>(Bytes::from(out))
    });
    let filename = format!("{name}-{}.csv", chrono::Utc::now().format("%Y-%m-%d"));
    HttpResponse::Ok()
        .content_type(CSV)
        .insert_header(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename(filename)],
        })
        .streaming(stream::once(async move { Ok(Bytes::from(head)) }).chain(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers_that_admit_csv() {
        for ok in [
            "text/csv",
            "*/*",
            "text/*",
            "application/json, text/csv;q=0.5",
            "TEXT/CSV",
        ] {
            assert!(accepts_csv(ok), "{ok}");
        }
        for refused in ["application/json", "text/html", "text/csv;q=0", "image/*"] {
            assert!(!accepts_csv(refused), "{refused}");
        }
    }
}
