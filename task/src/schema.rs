//! A task type's input, read from its JSON Schema: the form's fields ([`fields`]), and the
//! checks every input passes before it is queued and again on the worker ([`check`]). Both
//! follow from the one schema `schemars` derives from the Rust type, so a bound is written once,
//! as an attribute on the input's field.
//!
//! Inputs are JSON objects of scalar fields: whole numbers, numbers, text, one of a list of
//! strings (a unit-only enum), on/off. A type whose schema has anything else is refused when it
//! is registered, with the reason, rather than showing a form that cannot be filled in.

use serde_json::{Map, Value};

use model::form::{Field, FieldError, FieldKind, FieldValue, MULTILINE_FROM};

/// The fields of an object schema, in the order the type declares them.
pub(crate) fn fields(schema: &Value) -> Result<Vec<Field>, String> {
    let object = schema.as_object().ok_or("the schema is not an object")?;
    if object.get("type").and_then(Value::as_str) != Some("object") {
        return Err("the input must be a struct with named fields".into());
    }
    let required: Vec<&str> = object
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let defs = object.get("$defs").and_then(Value::as_object);
    let properties = object
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    properties
        .iter()
        .map(|(name, field)| {
            // A field of an enum type is a `$ref`, beside the field's own docs and default.
            let property = resolve(field, defs)?;
            let documented = if field.get("description").is_some() || field.get("title").is_some() {
                field
            } else {
                property
            };
            let (label, help) = label_and_help(name, documented);
            Ok(Field {
                name: name.clone(),
                label,
                help,
                kind: kind(property, defs).map_err(|why| format!("field {name}: {why}"))?,
                required: required.contains(&name.as_str()) && field.get("default").is_none(),
            })
        })
        .collect()
}

/// Follows a `$ref` into the schema's `$defs`.
fn resolve<'a>(
    property: &'a Value,
    defs: Option<&'a Map<String, Value>>,
) -> Result<&'a Value, String> {
    match property.get("$ref").and_then(Value::as_str) {
        None => Ok(property),
        Some(reference) => reference
            .strip_prefix("#/$defs/")
            .and_then(|name| defs?.get(name))
            .ok_or_else(|| format!("unresolved reference {reference}")),
    }
}

/// A doc comment's first paragraph is the label; what follows is the help.
fn label_and_help(name: &str, property: &Value) -> (String, Option<String>) {
    let text = property
        .get("title")
        .or_else(|| property.get("description"))
        .and_then(Value::as_str);
    let Some(text) = text else {
        return (name.to_owned(), None);
    };
    let (label, rest) = match property.get("title") {
        Some(_) => (text, property.get("description").and_then(Value::as_str)),
        None => match text.split_once("\n\n") {
            Some((label, rest)) => (label, Some(rest)),
            None => (text, None),
        },
    };
    let label = label.trim().trim_end_matches('.').replace('\n', " ");
    let help = rest.map(|help| help.trim().replace('\n', " "));
    (label, help.filter(|help| !help.is_empty()))
}

fn kind(property: &Value, defs: Option<&Map<String, Value>>) -> Result<FieldKind, String> {
    if let Some(options) = choices(property, defs) {
        return Ok(FieldKind::Choice { options });
    }
    let int = |key| property.get(key).and_then(Value::as_i64);
    let num = |key| property.get(key).and_then(Value::as_f64);
    match property.get("type").and_then(Value::as_str) {
        Some("integer") => Ok(FieldKind::Integer {
            min: int("minimum"),
            max: int("maximum"),
        }),
        Some("number") => Ok(FieldKind::Number {
            min: num("minimum"),
            max: num("maximum"),
        }),
        Some("string") => {
            let max_len = property.get("maxLength").and_then(Value::as_u64);
            Ok(FieldKind::Text {
                max_len,
                multiline: max_len.is_none_or(|max| max > MULTILINE_FROM),
            })
        }
        Some("boolean") => Ok(FieldKind::Toggle),
        other => Err(format!(
            "a form has no field for {}",
            other.map_or_else(|| property.to_string(), str::to_owned)
        )),
    }
}

/// A unit-only enum: `{"enum": [...]}`, or `{"oneOf": [...]}` when its variants have docs
/// (each then `{"const": ...}` or `{"enum": [...]}`, with a description for its label).
fn choices(property: &Value, defs: Option<&Map<String, Value>>) -> Option<Vec<(String, String)>> {
    let strings = |values: &Value| -> Option<Vec<String>> {
        values
            .as_array()?
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    if let Some(values) = property.get("enum") {
        return Some(
            strings(values)?
                .into_iter()
                .map(|v| (v.clone(), v))
                .collect(),
        );
    }
    let variants = property.get("oneOf")?.as_array()?;
    let mut options = Vec::new();
    for variant in variants {
        let variant = resolve(variant, defs).ok()?;
        let values = match (variant.get("const"), variant.get("enum")) {
            (Some(Value::String(one)), _) => vec![one.clone()],
            (None, Some(values)) => strings(values)?,
            _ => return None,
        };
        let label = variant.get("description").and_then(Value::as_str);
        for value in values {
            let label = label.map_or_else(
                || value.clone(),
                |l| l.trim().trim_end_matches('.').to_owned(),
            );
            options.push((value, label));
        }
    }
    Some(options)
}

/// What the form first offers for each field that says: its default, or else its first
/// example (`#[schemars(example = ..)]`: a value to start from that is still required).
pub(crate) fn defaults(schema: &Value) -> Map<String, Value> {
    schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|properties| {
            properties
                .iter()
                .filter_map(|(name, p)| {
                    let offered = p
                        .get("default")
                        .or_else(|| p.get("examples")?.as_array()?.first())?;
                    Some((name.clone(), offered.clone()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `FIELD=VALUE` pairs as an input of the type whose input schema is `schema` (as a server
/// publishes it): the form's parser and messages, for clients such as the command line. (Each
/// field's parse checks its limits; the server checks the whole again.)
pub fn input_from_fields<'a>(
    schema: &Value,
    posted: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Value, FieldError> {
    from_form(&fields(schema).map_err(FieldError::whole)?, posted)
}

/// A form's posted fields as the input object: each parsed by its field (the same function the
/// browser runs), unknown names refused.
pub(crate) fn from_form<'a>(
    fields: &[Field],
    posted: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Value, FieldError> {
    let posted: Vec<(&str, &str)> = posted.into_iter().collect();
    if let Some((unknown, _)) = posted
        .iter()
        .find(|(name, _)| !fields.iter().any(|f| f.name == *name))
    {
        return Err(unknown_field(fields, unknown));
    }
    let mut input = Map::new();
    for field in fields {
        let mut values = posted.iter().filter(|(name, _)| *name == field.name);
        let raw = values.next().map(|(_, raw)| *raw);
        if values.next().is_some() {
            return Err(FieldError::at(
                &field.name,
                format!("{} was given twice.", field.name),
            ));
        }
        if let Some(value) = field
            .parse(raw)
            .map_err(|message| FieldError::at(&field.name, message))?
        {
            input.insert(field.name.clone(), to_json(value));
        }
    }
    Ok(Value::Object(input))
}

fn unknown_field(fields: &[Field], unknown: &str) -> FieldError {
    FieldError::whole(format!(
        "this task has no field {unknown:?}: its fields are {}",
        names(fields)
    ))
}

fn names(fields: &[Field]) -> String {
    fields
        .iter()
        .map(|f| f.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn to_json(value: FieldValue) -> Value {
    match value {
        FieldValue::Integer(x) => Value::from(x),
        FieldValue::Number(x) => Value::from(x),
        FieldValue::Text(text) => Value::from(text),
        FieldValue::Toggle(on) => Value::from(on),
    }
}

/// Checks an input object against the fields: no unknown key, every required one present,
/// each of its kind and within its limits. The same checks and words as the form's.
pub(crate) fn check(fields: &[Field], input: &Value) -> Result<(), FieldError> {
    let Some(object) = input.as_object() else {
        return Err(FieldError::whole(format!(
            "the input must be an object with the fields {}",
            names(fields)
        )));
    };
    if let Some(unknown) = object
        .keys()
        .find(|k| !fields.iter().any(|f| &f.name == *k))
    {
        return Err(unknown_field(fields, unknown));
    }
    for field in fields {
        let Some(value) = object.get(&field.name) else {
            if field.required {
                return Err(FieldError::at(
                    &field.name,
                    format!("Enter {}: {}.", field.name, field.expects()),
                ));
            }
            continue;
        };
        let wrong = || {
            FieldError::at(
                &field.name,
                format!("{} must be {}.", field.name, field.expects()),
            )
        };
        let value = match (&field.kind, value) {
            (FieldKind::Integer { .. }, Value::Number(x)) => {
                FieldValue::Integer(x.as_i64().ok_or_else(wrong)?)
            }
            (FieldKind::Number { .. }, Value::Number(x)) => {
                FieldValue::Number(x.as_f64().ok_or_else(wrong)?)
            }
            (FieldKind::Text { .. } | FieldKind::Choice { .. }, Value::String(text)) => {
                FieldValue::Text(text.clone())
            }
            (FieldKind::Toggle, Value::Bool(on)) => FieldValue::Toggle(*on),
            _ => return Err(wrong()),
        };
        field
            .check(&value)
            .map_err(|message| FieldError::at(&field.name, message))?;
    }
    Ok(())
}

/// The input as form text, in the fields' order; absent fields take their defaults.
pub(crate) fn form_values(
    fields: &[Field],
    input: &Value,
    defaults: &Map<String, Value>,
) -> Vec<String> {
    fields
        .iter()
        .map(
            |field| match input.get(&field.name).or_else(|| defaults.get(&field.name)) {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => text(other),
            },
        )
        .collect()
}

/// A scalar as a person types it: a float that is whole reads `1`, not JSON's `1.0`, and
/// others keep every digit (a deep zoom's centre needs them all).
fn text(value: &Value) -> String {
    match value.as_f64() {
        Some(x) if value.is_f64() => x.to_string(),
        _ => value.to_string(),
    }
}

/// Longest a text value is shown in brief.
const BRIEF_TEXT: usize = 24;

/// The input in brief, for the queue: `20` when there is one field, else
/// `width=800, text="lorem ipsum…"`.
pub(crate) fn brief(fields: &[Field], input: &Value) -> String {
    let show = |value: &Value| match value {
        Value::String(text) if text.chars().count() > BRIEF_TEXT => {
            let cut: String = text.chars().take(BRIEF_TEXT).collect();
            format!("{:?}", cut + "…")
        }
        Value::String(text) => format!("{text:?}"),
        other => text(other),
    };
    let present: Vec<(&str, &Value)> = fields
        .iter()
        .filter_map(|f| Some((f.name.as_str(), input.get(&f.name)?)))
        .collect();
    match present.as_slice() {
        [(_, value)] if fields.len() == 1 => show(value),
        _ => present
            .iter()
            .map(|(name, value)| format!("{name}={}", show(value)))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn floats_read_as_typed_with_every_digit() {
        assert_eq!(text(&json!(1.0)), "1");
        assert_eq!(text(&json!(-0.5)), "-0.5");
        assert_eq!(text(&json!(-0.743643887037151)), "-0.743643887037151");
        assert_eq!(text(&json!(1e12)), "1000000000000");
        assert_eq!(text(&json!(20)), "20");
        assert_eq!(text(&json!(true)), "true");
    }

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "n": {"description": "Upper bound\n\nCount up to\nthis.", "type": "integer",
                      "minimum": 2, "maximum": 100},
                "text": {"description": "Text to hash.", "type": "string", "default": "",
                         "maxLength": 10000},
                "algorithm": {"$ref": "#/$defs/Algo"},
                "zoom": {"type": "number", "default": 1.5, "examples": [3]},
                "count": {"type": "integer", "examples": [7]},
                "smooth": {"type": "boolean"}
            },
            "additionalProperties": false,
            "required": ["n", "algorithm", "smooth"],
            "$defs": {"Algo": {"oneOf": [
                {"type": "string", "enum": ["blake3"]},
                {"description": "SHA-256.", "type": "string", "const": "sha256"}
            ]}}
        })
    }

    #[test]
    fn fields_follow_the_schema_in_order_with_labels_limits_and_defaults() {
        let fields = fields(&schema()).unwrap();
        let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["n", "text", "algorithm", "zoom", "count", "smooth"]);
        assert_eq!(fields[0].label, "Upper bound");
        assert_eq!(fields[0].help.as_deref(), Some("Count up to this."));
        assert_eq!(
            fields[0].kind,
            FieldKind::Integer {
                min: Some(2),
                max: Some(100)
            }
        );
        assert!(fields[0].required);
        assert_eq!(
            (fields[1].label.as_str(), fields[1].required),
            ("Text to hash", false)
        );
        assert_eq!(
            fields[1].kind,
            FieldKind::Text {
                max_len: Some(10000),
                multiline: true
            }
        );
        assert_eq!(
            fields[2].kind,
            FieldKind::Choice {
                options: vec![
                    ("blake3".into(), "blake3".into()),
                    ("sha256".into(), "SHA-256".into())
                ]
            }
        );
        assert_eq!(
            fields[3].kind,
            FieldKind::Number {
                min: None,
                max: None
            }
        );
        assert_eq!(fields[5].kind, FieldKind::Toggle);
        let defaults = defaults(&schema());
        assert_eq!(
            form_values(&fields, &json!({"n": 5}), &defaults),
            ["5", "", "", "1.5", "7", ""]
        );
    }

    #[test]
    fn schemas_a_form_cannot_show_are_refused() {
        let nested = json!({"type": "object", "properties": {"p": {"type": "array"}}});
        assert!(fields(&nested).unwrap_err().contains("field p"));
        assert!(fields(&json!({"type": "integer"})).is_err());
    }

    #[test]
    fn posted_forms_become_inputs_or_say_which_field_is_wrong() {
        let fields = fields(&schema()).unwrap();
        let input = from_form(
            &fields,
            [("n", "7"), ("algorithm", "sha256"), ("smooth", "on")],
        )
        .unwrap();
        assert_eq!(
            input,
            json!({"n": 7, "text": "", "algorithm": "sha256", "smooth": true})
        );
        assert_eq!(check(&fields, &input), Ok(()));
        let refused =
            |posted: &[(&str, &str)]| from_form(&fields, posted.iter().copied()).unwrap_err();
        assert_eq!(
            refused(&[("algorithm", "sha256")]).field.as_deref(),
            Some("n")
        );
        assert_eq!(
            refused(&[("n", "1"), ("algorithm", "sha256")])
                .field
                .as_deref(),
            Some("n")
        );
        assert_eq!(
            refused(&[("n", "x"), ("algorithm", "sha256")])
                .field
                .as_deref(),
            Some("n")
        );
        assert_eq!(
            refused(&[("n", "5"), ("algorithm", "md5")])
                .field
                .as_deref(),
            Some("algorithm")
        );
        let extra = refused(&[("n", "5"), ("algorithm", "sha256"), ("evil", "1")]);
        assert!(
            extra.field.is_none() && extra.message.contains("no field \"evil\""),
            "{extra:?}"
        );
        assert_eq!(
            refused(&[("n", "5"), ("n", "6"), ("algorithm", "sha256")])
                .field
                .as_deref(),
            Some("n")
        );
    }

    #[test]
    fn json_inputs_get_the_same_checks() {
        let fields = fields(&schema()).unwrap();
        let ok = json!({"n": 7, "algorithm": "blake3", "smooth": false});
        assert_eq!(check(&fields, &ok), Ok(()));
        for (bad, field) in [
            (
                json!({"n": "7", "algorithm": "blake3", "smooth": false}),
                Some("n"),
            ),
            (
                json!({"n": 7.5, "algorithm": "blake3", "smooth": false}),
                Some("n"),
            ),
            (
                json!({"n": 700, "algorithm": "blake3", "smooth": false}),
                Some("n"),
            ),
            (json!({"algorithm": "blake3", "smooth": false}), Some("n")),
            (
                json!({"n": 7, "algorithm": "md5", "smooth": false}),
                Some("algorithm"),
            ),
            (
                json!({"n": 7, "algorithm": "blake3", "smooth": 1}),
                Some("smooth"),
            ),
            (
                json!({"n": 7, "algorithm": "blake3", "smooth": false, "x": 1}),
                None,
            ),
            (json!([7]), None),
        ] {
            assert_eq!(
                check(&fields, &bad).unwrap_err().field.as_deref(),
                field,
                "{bad}"
            );
        }
    }

    #[test]
    fn inputs_in_brief_are_short() {
        let one =
            fields(&json!({"type": "object", "properties": {"n": {"type": "integer"}}})).unwrap();
        assert_eq!(brief(&one, &json!({"n": 20})), "20");
        let many = fields(&schema()).unwrap();
        let long = "x".repeat(100);
        assert_eq!(
            brief(&many, &json!({"n": 3, "text": long, "algorithm": "sha256"})),
            format!("n=3, text=\"{}…\", algorithm=\"sha256\"", "x".repeat(24))
        );
    }
}
