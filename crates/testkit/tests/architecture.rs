//! Architecture invariants over `cargo metadata`: dependencies point one way and domain crates
//! know nothing about HTTP or Redis.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
            "--manifest-path",
        ])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml"))
        .output()
        .expect("cargo metadata");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Normal (non-dev, non-build) dependency names of a workspace package.
fn deps(meta: &Value, package: &str) -> BTreeSet<String> {
    let p = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == package)
        .unwrap_or_else(|| panic!("package {package} not in the workspace"));
    p["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"].is_null())
        .map(|d| d["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn dependencies_point_one_way() {
    let meta = metadata();
    let public = deps(&meta, "tenantry-public");
    let tenant = deps(&meta, "tenantry-tenant");
    let http = deps(&meta, "tenantry-http");
    let worker = deps(&meta, "tenantry-worker");
    let ctl = deps(&meta, "tenantry-ctl");

    for forbidden in [
        "tenantry-tenant",
        "tenantry-http",
        "tenantry-worker",
        "tenantry-ctl",
        "actix-web",
        "redis",
    ] {
        assert!(
            !public.contains(forbidden),
            "tenantry-public depends on {forbidden}"
        );
    }
    assert!(tenant.contains("tenantry-public"));
    for forbidden in [
        "tenantry-http",
        "tenantry-worker",
        "tenantry-ctl",
        "actix-web",
        "redis",
        "tracing-subscriber",
    ] {
        assert!(
            !tenant.contains(forbidden),
            "tenantry-tenant depends on {forbidden}"
        );
    }
    assert!(!public.contains("tracing-subscriber"));
    assert!(!http.contains("tenantry-worker"), "http imports worker");
    assert!(!worker.contains("tenantry-http"), "worker imports http");
    assert!(!worker.contains("actix-web"), "worker imports actix");
    assert!(
        !ctl.contains("actix-web") && !ctl.contains("tenantry-http"),
        "ctl imports the web layer"
    );
}

/// The dependency table in ARCHITECTURE.md ("Workspace dependencies"): package → the workspace
/// packages it depends on (normal dependencies only).
fn drawn_dependencies() -> Vec<(String, BTreeSet<String>)> {
    let doc = include_str!("../../../ARCHITECTURE.md");
    let table = doc
        .split("<!-- workspace-dependencies -->")
        .nth(1)
        .expect("ARCHITECTURE.md has a workspace-dependencies table");
    table
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            let package = cells.first()?.trim_matches('`');
            if !package.starts_with("tenantry-") {
                return None; // the header and separator rows
            }
            let depends = cells
                .get(1)?
                .split(',')
                .map(|d| d.trim().trim_matches('`'))
                .filter(|d| d.starts_with("tenantry-"))
                .map(str::to_owned)
                .collect();
            Some((package.to_owned(), depends))
        })
        .collect()
}

/// Every workspace package depends on exactly the workspace packages ARCHITECTURE.md draws for
/// it: an arrow added in code but not in the map (or the reverse) fails here.
#[test]
fn dependencies_are_as_drawn_in_architecture_md() {
    let meta = metadata();
    let drawn = drawn_dependencies();
    let members: BTreeSet<String> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    let listed: BTreeSet<String> = drawn.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(listed, members, "ARCHITECTURE.md lists every package once");
    for (package, expected) in drawn {
        let actual: BTreeSet<String> = deps(&meta, &package)
            .into_iter()
            .filter(|d| d.starts_with("tenantry-"))
            .collect();
        assert_eq!(
            actual, expected,
            "{package}: workspace dependencies differ from ARCHITECTURE.md"
        );
    }
}

#[test]
fn the_workspace_has_the_expected_members() {
    let meta = metadata();
    let names: BTreeSet<&str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for expected in [
        "tenantry-public",
        "tenantry-tenant",
        "tenantry-http",
        "tenantry-worker",
        "tenantry-ctl",
        "tenantry-testkit",
    ] {
        assert!(
            names.contains(expected),
            "{expected} missing from {names:?}"
        );
    }
}

/// A workspace crate named `http` would shadow the `http` crate actix-web is built on.
#[test]
fn no_package_is_named_plain_http() {
    let meta = metadata();
    let packages = meta["packages"].as_array().unwrap();
    assert!(!packages.is_empty());
    for p in packages {
        let name = p["name"].as_str().unwrap();
        assert_ne!(name, "http", "a workspace package is named plain `http`");
        for t in p["targets"].as_array().unwrap() {
            let kinds = t["kind"].as_array().unwrap();
            if kinds.iter().any(|k| k == "lib") {
                assert_ne!(
                    t["name"], "http",
                    "{name} has a library target named `http`"
                );
            }
        }
        for d in p["dependencies"].as_array().unwrap() {
            assert_ne!(
                d["rename"], "http",
                "{name} renames a dependency to plain `http`"
            );
        }
    }
}
