//! The API's OpenAPI 3.1 document: what `utoipa` generates from the handlers and their types,
//! plus each task type's input and output schemas (the ones its form is drawn from) as
//! components.

use serde_json::Value;
use utoipa::openapi::OpenApi;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};

use crate::ssr::AppState;

pub(super) fn base_document() -> OpenApi {
    let mut api = utoipa::openapi::OpenApiBuilder::new()
        .info(
            utoipa::openapi::InfoBuilder::new()
                .title("Offload")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Submit CPU-heavy tasks to an Offload cluster and follow them. \
                     Authenticate with `Authorization: Bearer <token>` (`offload token create \
                     NAME`). Errors are RFC 9457 problems (`application/problem+json`).",
                ))
                .build(),
        )
        .build();
    let components = api.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "token",
        SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
    );
    api.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
        "token",
        Vec::<String>::new(),
    )]);
    api
}

/// Each task type's input and output schemas, as components `{type}.Input` and
/// `{type}.Output`: the schemas the forms are drawn from and the workers check, as `schemars`
/// wrote them (OpenAPI 3.1 uses the same JSON Schema dialect).
pub(super) fn add_task_type_schemas(document: &mut Value, state: &AppState) {
    let Some(registry) = state.cluster.registry() else {
        return;
    };
    let Some(schemas) = document
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for kind in registry.types() {
        let prefix = format!("{}.", kind.name());
        for (part, schema) in [
            ("Input", kind.input_schema()),
            ("Output", kind.output_schema()),
        ] {
            schemas.extend(component_schemas(&prefix, part, schema));
        }
    }
}

/// A schemars document as OpenAPI components: the root as `{prefix}{root}`, each of its
/// `$defs` as `{prefix}{name}`, with their references rewritten to match.
fn component_schemas(prefix: &str, root: &str, schema: &Value) -> Vec<(String, Value)> {
    let mut schema = schema.clone();
    let defs = schema
        .as_object_mut()
        .and_then(|o| {
            o.remove("$schema");
            o.remove("$defs")
        })
        .and_then(|d| match d {
            Value::Object(map) => Some(map),
            _ => None,
        })
        .unwrap_or_default();
    let mut out = vec![(format!("{prefix}{root}"), schema)];
    out.extend(
        defs.into_iter()
            .map(|(name, def)| (format!("{prefix}{name}"), def)),
    );
    for (_, schema) in &mut out {
        rewrite_refs(schema, prefix);
    }
    out
}

fn rewrite_refs(value: &mut Value, prefix: &str) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                match (key.as_str(), inner) {
                    ("$ref", Value::String(target)) => {
                        if let Some(name) = target.strip_prefix("#/$defs/") {
                            *target = format!("#/components/schemas/{prefix}{name}");
                        }
                    }
                    (_, inner) => rewrite_refs(inner, prefix),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| rewrite_refs(v, prefix)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schemars_documents_become_components_with_their_references_rewritten() {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "title": "Input",
            "type": "object",
            "properties": {"algorithm": {"$ref": "#/$defs/Algorithm"}},
            "$defs": {"Algorithm": {"type": "string", "enum": ["sha256"]}},
        });
        let components = component_schemas("hash-chain.", "Input", &schema);
        assert_eq!(components.len(), 2);
        assert_eq!(components[0].0, "hash-chain.Input");
        assert!(components[0].1.get("$schema").is_none());
        assert_eq!(
            components[0].1["properties"]["algorithm"]["$ref"],
            "#/components/schemas/hash-chain.Algorithm"
        );
        assert_eq!(components[1].0, "hash-chain.Algorithm");
    }
}
