//! `/api/v1/documents`: notes and uploaded files, content downloads (headers, ETag, 304), lists,
//! the upload and plan storage limits (nothing stored when refused), audit and isolation.

use crate::helpers::*;
use reqwest::{Method, Response};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const BOUNDARY: &str = "tenantry-test-boundary-7f3a";
/// The first bytes of a PNG: enough for the type to be sniffed.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0";

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A multipart body of `(name, filename, bytes)` parts.
fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, filename, data) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        let disposition = match filename {
            Some(f) => format!(
                "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            ),
            None => format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n"),
        };
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn upload(app: &TestApp, t: &TestTenant, parts: &[(&str, Option<&str>, &[u8])]) -> Response {
    app.request(Method::POST, &t.host, "/api/v1/documents")
        .bearer_auth(&t.token)
        .header(
            "Content-Type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(multipart(parts))
        .send()
        .await
        .expect("request")
}

async fn note(app: &TestApp, t: &TestTenant, body: Value) -> Response {
    app.call(
        Method::POST,
        &t.host,
        "/api/v1/documents",
        Some(body),
        &t.token,
    )
    .await
}

async fn stored(app: &TestApp, schema: &str) -> (i64, i64) {
    (
        app.count(&format!("select count(*) from {schema}.documents"))
            .await,
        app.count(&format!("select count(*) from {schema}.document_contents"))
            .await,
    )
}

fn path_of(doc: &Value) -> String {
    format!("/api/v1/documents/{}", doc["id"].as_str().expect("id"))
}

#[tokio::test]
async fn documents_notes_round_trip_with_content_and_audit() {
    let (app, t) = spawn_tenant("acme").await;
    let project = app.project(&t, "Launch").await;
    let body = "# Plan\n\nShip it, \"soon\".\n";
    let r = note(
        &app,
        &t,
        json!({"title": "  Launch plan ", "project_id": project, "body": body}),
    )
    .await;
    let location = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let doc = expect_json(r, 201).await;
    let path = path_of(&doc);
    assert_eq!(location.as_deref(), Some(path.as_str()));
    assert_eq!(doc["title"], "Launch plan");
    assert_eq!(doc["kind"], "note");
    assert_eq!(doc["project_id"], project.as_str());
    assert!(doc["filename"].is_null());
    assert_eq!(doc["content_type"], "text/markdown; charset=utf-8");
    assert_eq!(doc["size_bytes"], body.len());
    assert_eq!(doc["sha256"], hex_sha256(body.as_bytes()));
    assert_eq!(doc["created_by"], t.owner_id.as_str());
    assert!(
        doc.get("body").is_none(),
        "content never passes through JSON"
    );

    assert_eq!(app.get_json(&t, &path, 200).await["title"], "Launch plan");

    let r = app.get_as(&t, &format!("{path}/content")).await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "text/markdown; charset=utf-8");
    assert_eq!(h["content-length"], body.len().to_string().as_str());
    assert_eq!(
        h["etag"].to_str().unwrap(),
        format!("\"{}\"", hex_sha256(body.as_bytes()))
    );
    assert_eq!(
        h["content-disposition"],
        "attachment; filename=\"Launch plan.md\"; filename*=UTF-8''Launch%20plan.md"
    );
    assert_eq!(r.text().await.unwrap(), body);

    // A new body, the organization instead of the project; absent fields stay.
    let r = app
        .call(
            Method::PATCH,
            &t.host,
            &path,
            Some(json!({"body": "v2", "project_id": null})),
            &t.token,
        )
        .await;
    let patched = expect_json(r, 200).await;
    assert_eq!(patched["title"], "Launch plan");
    assert!(patched["project_id"].is_null());
    assert_eq!(patched["size_bytes"], 2);
    assert_eq!(patched["sha256"], hex_sha256(b"v2"));
    let r = app.get_as(&t, &format!("{path}/content")).await;
    assert_eq!(r.text().await.unwrap(), "v2");
    let (before, after) = app.audit_change("tenant_acme", "document.updated").await;
    assert_eq!(
        (before["size_bytes"].clone(), after["size_bytes"].clone()),
        (json!(body.len()), json!(2))
    );

    let r = app.delete(&t.host, &path, &t.token).await;
    assert_eq!(r.status(), 204);
    let r = app.get_as(&t, &path).await;
    expect_problem(r, 404, "").await;
    let r = app.get_as(&t, &format!("{path}/content")).await;
    expect_problem(r, 404, "").await;
    assert_eq!(stored(&app, "tenant_acme").await, (0, 0));
    for action in ["document.created", "document.updated", "document.deleted"] {
        assert_eq!(app.audit_count("tenant_acme", action).await, 1, "{action}");
    }
}

#[tokio::test]
async fn documents_file_upload_sniffs_sanitises_and_downloads_with_etag() {
    let (app, t) = spawn_tenant("acme").await;
    let r = upload(
        &app,
        &t,
        &[
            ("title", None, b"Logo"),
            ("file", Some("../../etc/logo \\x.png"), PNG),
        ],
    )
    .await;
    let doc = expect_json(r, 201).await;
    assert_eq!(doc["kind"], "file");
    assert_eq!(doc["title"], "Logo");
    assert!(doc["project_id"].is_null());
    assert_eq!(
        doc["content_type"], "image/png",
        "sniffed, not the declared type"
    );
    assert_eq!(doc["size_bytes"], PNG.len());
    let sha = hex_sha256(PNG);
    assert_eq!(doc["sha256"], sha.as_str());
    let filename = doc["filename"].as_str().unwrap().to_owned();
    assert!(
        !filename.contains('/') && !filename.contains('\\') && filename.ends_with(".png"),
        "{filename}"
    );
    let content = format!("{}/content", path_of(&doc));

    let r = app.get_as(&t, &content).await;
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert_eq!(h["content-type"], "image/png");
    assert_eq!(h["content-length"], PNG.len().to_string().as_str());
    assert_eq!(h["etag"].to_str().unwrap(), format!("\"{sha}\""));
    let disposition = h["content-disposition"].to_str().unwrap();
    assert!(
        disposition.starts_with("attachment; filename=\"")
            && disposition.contains("filename*=UTF-8''"),
        "{disposition}"
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(r.bytes().await.unwrap().as_ref(), PNG);

    // If-None-Match: the current ETag (also weak, in a list) is 304 without the bytes.
    for tag in [
        format!("\"{sha}\""),
        format!("\"other\", W/\"{sha}\""),
        "*".into(),
    ] {
        let r = app
            .request(Method::GET, &t.host, &content)
            .bearer_auth(&t.token)
            .header("If-None-Match", tag.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 304, "{tag}");
        assert_eq!(r.headers()["etag"].to_str().unwrap(), format!("\"{sha}\""));
        assert!(r.bytes().await.unwrap().is_empty());
    }
    let r = app
        .request(Method::GET, &t.host, &content)
        .bearer_auth(&t.token)
        .header("If-None-Match", "\"stale\"")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A file's content never changes; its title does.
    let path = path_of(&doc);
    let r = app
        .call(
            Method::PATCH,
            &t.host,
            &path,
            Some(json!({"body": "x"})),
            &t.token,
        )
        .await;
    expect_field_errors(r, 422, &["body"]).await;
    let r = app
        .call(
            Method::PATCH,
            &t.host,
            &path,
            Some(json!({"title": "Logo v2"})),
            &t.token,
        )
        .await;
    assert_eq!(expect_json(r, 200).await["title"], "Logo v2");

    // Without a title, the file name is the title; text is sniffed as text.
    let r = upload(&app, &t, &[("file", Some("notes.txt"), "héllo".as_bytes())]).await;
    let doc = expect_json(r, 201).await;
    assert_eq!(doc["title"], "notes.txt");
    assert_eq!(doc["filename"], "notes.txt");
    assert_eq!(doc["content_type"], "text/plain; charset=utf-8");
}

#[tokio::test]
async fn documents_bad_input_is_a_problem_and_stores_nothing() {
    let (app, t) = spawn_tenant("acme").await;
    let cases = [
        (json!({}), "title"),
        (json!({"title": ""}), "title"),
        (json!({"title": "x".repeat(301)}), "title"),
        (json!({"title": "x", "project_id": "nope"}), "project_id"),
        (
            json!({"title": "x", "project_id": "0190a8f0-0000-7000-8000-000000000000"}),
            "project_id",
        ),
        (
            json!({"title": "x", "body": "é".repeat(documents_max_note() / 2 + 1)}),
            "body",
        ),
    ];
    for (body, field) in cases {
        let r = note(&app, &t, body).await;
        expect_field_errors(r, 422, &[field]).await;
    }
    // A file part is required in an upload.
    let r = upload(&app, &t, &[("title", None, b"no file")]).await;
    expect_field_errors(r, 422, &["file"]).await;
    let r = upload(
        &app,
        &t,
        &[("other", None, b"x"), ("file", Some("f.txt"), b"f")],
    )
    .await;
    expect_field_errors(r, 422, &["other"]).await;
    // The organization's own document leaves `project_id` out; an empty one is no id.
    let r = upload(
        &app,
        &t,
        &[("project_id", None, b""), ("file", Some("f.txt"), b"f")],
    )
    .await;
    expect_field_errors(r, 422, &["project_id"]).await;
    let r = app
        .request(Method::POST, &t.host, "/api/v1/documents")
        .bearer_auth(&t.token)
        .header("Content-Type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    expect_problem(r, 415, "multipart/form-data").await;
    let r = app
        .request(Method::POST, &t.host, "/api/v1/documents")
        .bearer_auth(&t.token)
        .header(
            "Content-Type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body("not multipart at all")
        .send()
        .await
        .unwrap();
    assert!(matches!(r.status().as_u16(), 400 | 422), "{}", r.status());
    for query in ["kind=pdf", "ordering=name", "project=nope"] {
        let r = app.get_as(&t, &format!("/api/v1/documents?{query}")).await;
        expect_problem(r, 400, query.split('=').next().unwrap()).await;
    }
    assert_eq!(stored(&app, "tenant_acme").await, (0, 0));
    assert_eq!(app.audit_count("tenant_acme", "document.created").await, 0);

    // A body of exactly 1 MiB is a note (its JSON is over MAX_BODY_BYTES' default).
    let r = note(
        &app,
        &t,
        json!({"title": "big", "body": "a".repeat(documents_max_note())}),
    )
    .await;
    assert_eq!(
        expect_json(r, 201).await["size_bytes"],
        documents_max_note()
    );
}

fn documents_max_note() -> usize {
    1024 * 1024
}

#[tokio::test]
async fn documents_oversized_upload_is_413_and_stores_nothing() {
    let (app, t) = spawn_tenant_with(&[("DOCUMENT_MAX_BYTES", "1000")], "acme").await;
    let r = upload(&app, &t, &[("file", Some("big.bin"), &[7u8; 1001])]).await;
    expect_problem(r, 413, "").await;
    assert_eq!(stored(&app, "tenant_acme").await, (0, 0));
    assert_eq!(app.audit_count("tenant_acme", "document.created").await, 0);
    // A declared length far past the limit is refused before the body is read.
    let r = upload(&app, &t, &[("file", Some("huge.bin"), &vec![7u8; 200_000])]).await;
    expect_problem(r, 413, "").await;
    assert_eq!(stored(&app, "tenant_acme").await, (0, 0));
    let r = upload(&app, &t, &[("file", Some("ok.bin"), &[7u8; 1000])]).await;
    assert_eq!(expect_json(r, 201).await["size_bytes"], 1000);
}

#[tokio::test]
async fn documents_past_the_plan_storage_are_403_plan_limit_and_store_nothing() {
    let (app, t) = spawn_tenant("acme").await;
    app.sql(
        "update public.plans set max_storage_mb = 1 \
          where code = (select plan from public.companies where slug = 'acme')",
    )
    .await;
    let half = vec![b'a'; 600 * 1024];
    let r = upload(&app, &t, &[("file", Some("one.txt"), &half)]).await;
    let first = expect_json(r, 201).await;
    let r = upload(&app, &t, &[("file", Some("two.txt"), &half)]).await;
    let problem = expect_problem(r, 403, "at most 1 MB of documents (max_storage_mb)").await;
    assert!(
        problem["type"].as_str().unwrap().ends_with("plan-limit"),
        "{problem}"
    );
    assert_eq!(stored(&app, "tenant_acme").await, (1, 1));
    assert_eq!(app.audit_count("tenant_acme", "document.created").await, 1);

    // A note growing past the limit is refused too, and left as it was.
    let r = note(&app, &t, json!({"title": "small", "body": "x"})).await;
    let small = expect_json(r, 201).await;
    let r = app
        .call(
            Method::PATCH,
            &t.host,
            &path_of(&small),
            Some(json!({"body": "b".repeat(500 * 1024)})),
            &t.token,
        )
        .await;
    let problem = expect_problem(r, 403, "max_storage_mb").await;
    assert!(problem["type"].as_str().unwrap().ends_with("plan-limit"));
    let r = app.get(&t.host, &path_of(&small), Some(&t.token)).await;
    assert_eq!(expect_json(r, 200).await["size_bytes"], 1);

    // Deleting frees the storage.
    let r = app.delete(&t.host, &path_of(&first), &t.token).await;
    assert_eq!(r.status(), 204);
    let r = upload(&app, &t, &[("file", Some("two.txt"), &half)]).await;
    assert_eq!(r.status(), 201);

    // Two concurrent uploads that each fit, but not together: exactly one is stored.
    app.sql("delete from tenant_acme.documents").await;
    let (part_a, part_b) = (
        [("file", Some("a.txt"), half.as_slice())],
        [("file", Some("b.txt"), half.as_slice())],
    );
    let (a, b) = tokio::join!(upload(&app, &t, &part_a), upload(&app, &t, &part_b));
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 403]);
    assert_eq!(stored(&app, "tenant_acme").await, (1, 1));
}

#[tokio::test]
async fn documents_list_filters_orderings_and_pages() {
    let (app, t) = spawn_tenant("acme").await;
    let project = app.project(&t, "Launch").await;
    let b = expect_json(
        note(
            &app,
            &t,
            json!({"title": "Beta notes", "project_id": project, "body": "bb"}),
        )
        .await,
        201,
    )
    .await;
    let a = expect_json(
        note(&app, &t, json!({"title": "Alpha 100%", "body": "a"})).await,
        201,
    )
    .await;
    let c = expect_json(
        upload(
            &app,
            &t,
            &[
                ("title", None, b"Charlie"),
                ("file", Some("chart.png"), PNG),
            ],
        )
        .await,
        201,
    )
    .await;
    let ids = |page: &Value| column(page, "id");
    let list = |q: &'static str| {
        let (app, t) = (&app, &t);
        async move { app.get_json(t, &format!("/api/v1/documents{q}"), 200).await }
    };
    let id = |d: &Value| d["id"].as_str().unwrap().to_owned();

    assert_eq!(
        ids(&list("").await),
        [id(&c), id(&a), id(&b)],
        "newest first"
    );
    assert_eq!(
        ids(&list("?ordering=created_at").await),
        [id(&b), id(&a), id(&c)]
    );
    assert_eq!(
        ids(&list("?ordering=title").await),
        [id(&a), id(&b), id(&c)]
    );
    assert_eq!(
        ids(&list("?ordering=-title").await),
        [id(&c), id(&b), id(&a)]
    );
    assert_eq!(
        ids(&list("?ordering=-size").await),
        [id(&c), id(&b), id(&a)]
    );
    assert_eq!(ids(&list("?ordering=size").await), [id(&a), id(&b), id(&c)]);
    assert_eq!(ids(&list("?kind=file").await), [id(&c)]);
    assert_eq!(ids(&list("?kind=note").await), [id(&a), id(&b)]);
    assert_eq!(ids(&list("?project=none").await), [id(&c), id(&a)]);
    let r = app
        .get_as(&t, &format!("/api/v1/documents?project={project}"))
        .await;
    assert_eq!(ids(&expect_json(r, 200).await), [id(&b)]);
    assert_eq!(
        ids(&list("?search=CHART").await),
        [id(&c)],
        "file names too"
    );
    assert_eq!(ids(&list("?search=100%25").await), [id(&a)]);
    assert!(
        ids(&list("?search=%25%25").await).is_empty(),
        "% is literal"
    );

    // Pages of one, by title: `next` keeps the ordering and filters.
    let mut seen = Vec::new();
    let mut next = Some("/api/v1/documents?ordering=title&kind=note&limit=1".to_owned());
    while let Some(path) = next {
        let page = app.get_json(&t, &path, 200).await;
        seen.extend(ids(&page));
        next = page["next"].as_str().map(|n| {
            assert!(
                n.contains("ordering=title") && n.contains("kind=note"),
                "{n}"
            );
            format!("/api/v1{}", n.split_once("/api/v1").unwrap().1)
        });
    }
    assert_eq!(seen, [id(&a), id(&b)]);
    // A cursor of one ordering is refused for another.
    let page = app
        .get_json(&t, "/api/v1/documents?ordering=title&limit=1", 200)
        .await;
    let cursor = page["next"]
        .as_str()
        .unwrap()
        .split("cursor=")
        .nth(1)
        .unwrap()
        .to_owned();
    let r = app
        .get_as(
            &t,
            &format!("/api/v1/documents?ordering=size&cursor={cursor}"),
        )
        .await;
    expect_problem(r, 400, "cursor").await;
}

#[tokio::test]
async fn documents_of_another_tenant_are_unknown_here_and_untouched() {
    let (app, a) = spawn_tenant("acme").await;
    let b = app.tenant("globex").await;
    let project = app.project(&a, "Secret").await;
    let doc = expect_json(
        note(
            &app,
            &a,
            json!({"title": "Secret", "project_id": project, "body": "s"}),
        )
        .await,
        201,
    )
    .await;
    let path = path_of(&doc);
    for (method, suffix, body) in [
        (Method::GET, "", None),
        (Method::GET, "/content", None),
        (Method::PATCH, "", Some(json!({"title": "Mine"}))),
        (Method::DELETE, "", None),
    ] {
        let r = app
            .call(
                method.clone(),
                &b.host,
                &format!("{path}{suffix}"),
                body,
                &b.token,
            )
            .await;
        expect_problem(r, 404, "").await;
    }
    assert!(column(&app.get_json(&b, "/api/v1/documents", 200).await, "id").is_empty());
    // Another tenant's project is no project here.
    let r = note(&app, &b, json!({"title": "x", "project_id": project})).await;
    expect_field_error(r, "project_id", "not a project of this organization").await;
    let r = upload(
        &app,
        &b,
        &[
            ("project_id", None, project.as_bytes()),
            ("file", Some("f.txt"), b"f"),
        ],
    )
    .await;
    expect_field_error(r, "project_id", "not a project of this organization").await;
    // And the document in its own tenant is as it was.
    assert_eq!(app.get_json(&a, &path, 200).await["title"], "Secret");
    assert_eq!(stored(&app, "tenant_globex").await, (0, 0));
    assert_eq!(
        app.audit_count("tenant_globex", "document.created").await,
        0
    );
}

#[tokio::test]
async fn documents_uploads_follow_the_role_matrix() {
    let (app, t) = spawn_tenant("acme").await;
    let viewer = app.member(&t, "viewer@acme.test", "viewer").await;
    let member = app.member(&t, "member@acme.test", "member").await;
    let viewer_key = app.create_key(&t.host, &t.token, "viewer").await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let member_key = app.create_key(&t.host, &t.token, "member").await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let send = |credential: (&'static str, String)| {
        let app = &app;
        let host = t.host.clone();
        async move {
            let (header, value) = credential;
            app.request(Method::POST, &host, "/api/v1/documents")
                .header(header, value)
                .header(
                    "Content-Type",
                    format!("multipart/form-data; boundary={BOUNDARY}"),
                )
                .body(multipart(&[("file", Some("f.txt"), b"f")]))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        send(("Authorization", format!("Bearer {viewer}"))).await,
        403
    );
    assert_eq!(send(("X-API-Key", viewer_key)).await, 403);
    assert_eq!(
        send(("Authorization", format!("Bearer {member}"))).await,
        201
    );
    assert_eq!(send(("X-API-Key", member_key)).await, 201);
    assert_eq!(stored(&app, "tenant_acme").await, (2, 2));
}
