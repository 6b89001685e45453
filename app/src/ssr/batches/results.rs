//! A batch's results as a table: one row per member with its index, task, outcome, input
//! fields, the output's scalar fields as columns (read from the type's output schema), the
//! time it ran and the task whose result it reused; rendered as CSV or as JSON objects.

use serde_json::{Map, Value};

use cluster::TaskType;

use crate::ssr::store::MemberRecord;

/// What a row holds, by column.
#[derive(Debug, Clone, PartialEq)]
pub struct Columns {
    /// The input's fields, in the type's order.
    inputs: Vec<String>,
    /// The output's scalar fields, or the output itself when it is a scalar (None).
    outputs: Vec<Option<String>>,
    /// Each column's name, in order.
    names: Vec<String>,
}

/// Columns before the input's.
const LEADING: [&str; 3] = ["index", "task", "outcome"];
/// The columns after the output's: seconds from its start on a worker to its end, and the
/// task whose result it took instead of running (with reuse).
const SECONDS: &str = "seconds";
const REUSED_FROM: &str = "reused_from";
/// Columns after the output's.
pub const TRAILING: usize = 2;

impl Columns {
    pub fn of(kind: &TaskType) -> Self {
        let inputs: Vec<String> = kind.fields().iter().map(|f| f.name.clone()).collect();
        let outputs = output_fields(kind.output_schema());
        let mut names: Vec<String> = LEADING.iter().map(|c| (*c).to_owned()).collect();
        names.extend(inputs.iter().cloned());
        for output in &outputs {
            names.push(match output {
                None => "output".to_owned(),
                // An output field named as an input (or a leading column) says whose it is.
                Some(name)
                    if names.contains(name) || [SECONDS, REUSED_FROM].contains(&name.as_str()) =>
                {
                    format!("output.{name}")
                }
                Some(name) => name.clone(),
            });
        }
        names.push(SECONDS.to_owned());
        names.push(REUSED_FROM.to_owned());
        Self {
            inputs,
            outputs,
            names,
        }
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// A member's row, in the columns' order: null where it has no value (not ended, failed).
    pub fn row(&self, member: &MemberRecord) -> Vec<Value> {
        let task = &member.task;
        let mut row = vec![
            Value::from(member.index),
            Value::from(task.id),
            Value::from(task.outcome.map_or("unfinished", |o| o.name())),
        ];
        row.extend(
            self.inputs
                .iter()
                .map(|name| task.input.get(name).cloned().unwrap_or(Value::Null)),
        );
        row.extend(self.outputs.iter().map(|field| {
            let output = task.output.as_ref();
            match field {
                None => output.cloned(),
                Some(name) => output.and_then(|o| o.get(name)).cloned(),
            }
            .unwrap_or(Value::Null)
        }));
        let seconds = match (&task.ran, task.finished_at_ms) {
            (Some(ran), Some(end)) => {
                Value::from(end.saturating_sub(ran.started_at_ms) as f64 / 1e3)
            }
            _ => Value::Null,
        };
        row.push(seconds);
        row.push(task.reused_from.map_or(Value::Null, Value::from));
        row
    }

    /// A row as one JSON object, by column name.
    pub fn object(&self, row: Vec<Value>) -> Value {
        Value::Object(self.names.iter().cloned().zip(row).collect::<Map<_, _>>())
    }
}

/// The output's top-level fields that hold one number, text or truth (a picture or a list
/// is not a column); `[None]` when the output is itself such a value.
fn output_fields(schema: &Value) -> Vec<Option<String>> {
    if is_scalar(schema) {
        return vec![None];
    }
    schema
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(_, field)| is_scalar(field))
        .map(|(name, _)| Some(name.clone()))
        .collect()
}

fn is_scalar(schema: &Value) -> bool {
    let scalar = |t: &str| matches!(t, "integer" | "number" | "string" | "boolean" | "null");
    match schema.get("type") {
        Some(Value::String(t)) => t != "null" && scalar(t),
        Some(Value::Array(types)) => {
            types.iter().all(|t| t.as_str().is_some_and(scalar))
                && types.iter().any(|t| t != "null")
        }
        _ => false,
    }
}

/// Rows as CSV (RFC 4180), with a header. Text that a spreadsheet would run as a formula
/// (`=`, `+`, `-`, `@` first) is written with a `'` before it.
pub fn csv(columns: &Columns, rows: impl IntoIterator<Item = Vec<Value>>) -> String {
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = String>| {
        let cells: Vec<String> = cells.collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    };
    line(&mut out, &mut columns.names.iter().map(|name| cell(name)));
    for row in rows {
        line(
            &mut out,
            &mut row.iter().map(|value| match value {
                Value::Null => String::new(),
                Value::String(text) => cell(text),
                other => cell(&other.to_string()),
            }),
        );
    }
    out
}

fn cell(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) && text.parse::<f64>().is_err() {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scalar_output_fields_are_columns_and_pictures_are_not() {
        let schema = json!({
            "type": "object",
            "properties": {
                "width": {"type": "integer"},
                "largest": {"type": ["integer", "null"]},
                "png": {"$ref": "#/$defs/Binary"},
                "points": {"type": "array"},
            }
        });
        assert_eq!(
            output_fields(&schema),
            [Some("width".to_owned()), Some("largest".to_owned())]
        );
        assert_eq!(output_fields(&json!({"type": "integer"})), [None]);
    }

    #[test]
    fn csv_quotes_what_it_must_and_disarms_formulas() {
        let columns = Columns {
            inputs: vec!["text".into()],
            outputs: vec![None],
            names: vec!["index".into(), "text".into(), "output".into()],
        };
        let rows = vec![
            vec![json!(0), json!("a,\"b\""), json!(-1.5)],
            vec![json!(1), json!("=HYPERLINK(\"x\")"), Value::Null],
        ];
        assert_eq!(
            csv(&columns, rows),
            "index,text,output\r\n0,\"a,\"\"b\"\"\",-1.5\r\n1,\"'=HYPERLINK(\"\"x\"\")\",\r\n"
        );
    }
}
