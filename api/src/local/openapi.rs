//! The OpenAPI 3.1 document served at `/openapi.json`.

/// The OpenAPI 3.1 description of every route (checked against the
/// routers by a test).
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

#[cfg(test)]
mod tests {
    use super::OPENAPI_JSON;

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
        let doc: serde_json::Value = serde_json::from_str(OPENAPI_JSON).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let documented: std::collections::BTreeSet<String> =
            doc["paths"].as_object().unwrap().keys().cloned().collect();
        let routed: std::collections::BTreeSet<String> = routes_in_source().into_iter().collect();
        assert!(routed.len() >= 20, "found only {routed:?}");
        assert_eq!(documented, routed);
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
            .write_all(OPENAPI_JSON.as_bytes())
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
