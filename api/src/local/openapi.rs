//! The OpenAPI 3.1 document served at `/openapi.json`.
//!
//! Paths, parameters and responses are written by hand (`openapi.json`
//! beside this file); the schemas of the response bodies are generated
//! from the types the handlers serialize ([`super::responses`]), and the
//! problem types from [`crate::problem::TYPES`] and each operation's roles
//! from [`super::access::ROUTES`], so none can drift from the code. Request bodies keep their hand-written schemas: they say what
//! the lenient readers accept (`5.0` as a whole number, `null` for absent),
//! which a derived schema would not.

use std::sync::LazyLock;

use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::transform::RecursiveTransform;
use schemars::{JsonSchema, Schema};
use serde_json::{Value, json};

use super::access::ROUTES;
use super::responses::{
    AuditRecord, BlockView, EntryLocation, GrantView, Identity, LedgerSummary, Listing, Members,
    NewToken, NodeStatus, ObjectInfo, PrincipalView, ProposalId, ProposalView, Tokens,
};
use crate::problem::{TYPE_PREFIX, TYPES};

/// The hand-written part of the document.
const BASE: &str = include_str!("openapi.json");

static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    // Built from constants: a failure here is a bug, caught by the tests.
    serde_json::to_string_pretty(&document_value()).unwrap_or_default()
});

/// The OpenAPI 3.1 description of every route (checked against the
/// routers and validated by tests), built once.
pub fn openapi_json() -> &'static str {
    &DOCUMENT
}

/// The document as JSON: the hand-written part, the generated body
/// schemas, and every problem type.
pub fn document_value() -> Value {
    let mut doc: Value = serde_json::from_str(BASE).unwrap_or_else(|_| json!({}));
    let generated = body_schemas();
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        for (name, schema) in generated {
            // A generated schema never replaces a hand-written one.
            debug_assert!(
                !schemas.contains_key(&name),
                "schema {name} is written twice"
            );
            schemas.entry(name).or_insert(schema);
        }
    }
    if let Some(kind) = doc.pointer_mut("/components/schemas/Problem/properties/type") {
        kind["enum"] = TYPES
            .iter()
            .map(|t| Value::from(format!("{TYPE_PREFIX}{}", t.code)))
            .collect();
        let listed: Vec<String> = TYPES
            .iter()
            .map(|t| format!("{} ({}): {}", t.code, t.status, t.about))
            .collect();
        kind["description"] = format!(
            "urn:quorate:problem:<code>; the codes are stable. {}.",
            listed.join("; ")
        )
        .into();
    }
    annotate_roles(&mut doc);
    doc
}

/// Each local operation gets `x-quorate-roles` (who may call it), a
/// sentence saying so, and a 403 that names `role-required`.
fn annotate_roles(doc: &mut Value) {
    let problem =
        json!({"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}});
    for route in ROUTES {
        let path = route.path.replace("{*", "{");
        let method = route.method.as_str().to_ascii_lowercase();
        // The 403 a route already documents (not-a-member, a peer's
        // refusal) is kept, with role-required beside it.
        let existing = doc
            .pointer(&format!(
                "/paths/{}/{method}/responses/403/$ref",
                path.replace('~', "~0").replace('/', "~1")
            ))
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix('#'))
            .and_then(|r| doc.pointer(&format!("{r}/description")))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let Some(operation) = doc
            .get_mut("paths")
            .and_then(|p| p.get_mut(&path))
            .and_then(|p| p.get_mut(&method))
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        let roles: Vec<&str> = std::iter::once("admin")
            .chain(route.roles.iter().map(|r| r.name()))
            .collect();
        let sentence = format!("Roles: {}.", roles.join(", "));
        let description = match operation.get("description").and_then(Value::as_str) {
            Some(text) => format!("{text} {sentence}"),
            None => sentence,
        };
        operation.insert("description".into(), description.into());
        operation.insert("x-quorate-roles".into(), json!(roles));
        let refusal = "The caller's roles do not open this route (role-required)";
        let forbidden = match existing {
            Some(text) => format!("{refusal}; or {text}"),
            None => refusal.to_owned(),
        };
        if let Some(responses) = operation
            .get_mut("responses")
            .and_then(Value::as_object_mut)
        {
            responses.insert(
                "403".into(),
                json!({"description": forbidden, "content": problem}),
            );
        }
    }
}

/// The schemas of every response body, by name, as
/// `#/components/schemas/<name>` refers to them.
fn body_schemas() -> serde_json::Map<String, Value> {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    settings.meta_schema = None;
    let mut generator: SchemaGenerator = settings
        .with_transform(RecursiveTransform(integer_bounds))
        .into_generator();
    fn add<T: JsonSchema>(generator: &mut SchemaGenerator) {
        generator.subschema_for::<T>();
    }
    add::<NodeStatus>(&mut generator);
    add::<Identity>(&mut generator);
    add::<Members>(&mut generator);
    add::<ProposalId>(&mut generator);
    add::<ProposalView>(&mut generator);
    add::<GrantView>(&mut generator);
    add::<ObjectInfo>(&mut generator);
    add::<crate::objects::Written>(&mut generator);
    add::<Listing>(&mut generator);
    add::<AuditRecord>(&mut generator);
    add::<EntryLocation>(&mut generator);
    add::<LedgerSummary>(&mut generator);
    add::<BlockView>(&mut generator);
    add::<PrincipalView>(&mut generator);
    add::<Tokens>(&mut generator);
    add::<NewToken>(&mut generator);
    add::<super::responses::JwtRevocations>(&mut generator);
    add::<super::responses::UpstreamsView>(&mut generator);
    add::<super::responses::JwtRevocationView>(&mut generator);
    add::<super::responses::LiveEvent>(&mut generator);
    add::<super::endorsement::EndorsementPolicy>(&mut generator);
    add::<super::endorsement::EndorsementPolicyView>(&mut generator);
    add::<super::catalog::Offer>(&mut generator);
    add::<super::catalog::OfferView>(&mut generator);
    add::<super::catalog::Offers>(&mut generator);
    add::<super::access_requests::AccessRequestView>(&mut generator);
    add::<super::access_requests::AccessRequests>(&mut generator);
    generator.take_definitions(true)
}

/// An unsigned integer's schema gets the maximum of its width, so the
/// document states the whole range (JSON Schema's `integer` has none).
fn integer_bounds(schema: &mut Schema) {
    let maximum = match schema.get("format").and_then(Value::as_str) {
        Some("uint8") => u64::from(u8::MAX),
        Some("uint16") => u64::from(u16::MAX),
        Some("uint32") => u64::from(u32::MAX),
        Some("uint64" | "uint") => u64::MAX,
        _ => return,
    };
    schema.insert("maximum".into(), maximum.into());
}

#[cfg(test)]
mod tests {
    use super::openapi_json;

    /// Every `.route("…")` in the routers' source, as OpenAPI paths.
    fn routes_in_source() -> Vec<String> {
        let mut routes = Vec::new();
        for source in [include_str!("routes.rs"), include_str!("../gateway.rs")] {
            for piece in source.split(".route(").skip(1) {
                let Some(path) = piece.trim_start().strip_prefix('"') else {
                    continue;
                };
                let path = &path[..path.find('"').unwrap()];
                if path.starts_with('/') {
                    routes.push(path.replace("{*", "{"));
                }
            }
        }
        routes
    }

    #[test]
    fn the_openapi_document_lists_every_route_and_no_other() {
        let doc: serde_json::Value = serde_json::from_str(openapi_json()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let documented: std::collections::BTreeSet<String> =
            doc["paths"].as_object().unwrap().keys().cloned().collect();
        let routed: std::collections::BTreeSet<String> = routes_in_source().into_iter().collect();
        assert!(routed.len() >= 20, "found only {routed:?}");
        assert_eq!(documented, routed);
    }

    /// Every local route has an access rule, each rule a route, and the
    /// document shows each operation's roles.
    #[test]
    fn every_local_route_declares_its_roles_and_the_document_shows_them() {
        let doc: serde_json::Value = serde_json::from_str(openapi_json()).unwrap();
        for route in super::ROUTES {
            let path = route.path.replace("{*", "{");
            let method = route.method.as_str().to_ascii_lowercase();
            let operation = &doc["paths"][&path][&method];
            assert!(operation.is_object(), "{method} {path} is not documented");
            let roles = operation["x-quorate-roles"].as_array().unwrap();
            assert_eq!(roles[0], "admin", "{method} {path}");
            assert_eq!(roles.len(), 1 + route.roles.iter().count());
            assert!(
                operation["responses"]["403"]["description"]
                    .as_str()
                    .unwrap()
                    .contains("role-required")
            );
        }
        let local: Vec<String> = routes_in_source()
            .into_iter()
            .filter(|p| p.starts_with("/v1/") || p == "/metrics")
            .collect();
        for path in &local {
            for (method, _) in doc["paths"][path].as_object().unwrap() {
                let declared = super::ROUTES.iter().any(|r| {
                    r.path.replace("{*", "{") == *path
                        && (r.method.as_str().eq_ignore_ascii_case(method)
                            || (method == "head" && r.method == axum::http::Method::GET))
                });
                assert!(declared, "{method} {path} has no access rule");
            }
        }
    }

    /// Validated with the reference validator (`openapi-spec-validator`,
    /// installed by `.ci/run`); skipped when it is absent unless
    /// `QUORATE_REQUIRE_OPENAPI_VALIDATOR` is set.
    #[test]
    fn the_openapi_document_validates() {
        let check = std::process::Command::new("python3")
            .args([
                "-c",
                "import json,sys; from openapi_spec_validator import validate; validate(json.load(sys.stdin))",
            ])
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn();
        let required = std::env::var_os("QUORATE_REQUIRE_OPENAPI_VALIDATOR").is_some();
        let Ok(mut child) = check else {
            assert!(!required, "python3 is required");
            return;
        };
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(openapi_json().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        if stderr.contains("ModuleNotFoundError") && !required {
            eprintln!("skipped: openapi-spec-validator is not installed");
            return;
        }
        assert!(
            out.status.success(),
            "the OpenAPI document does not validate: {stderr}"
        );
    }
}
