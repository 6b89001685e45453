//! What a batch runs: its members' inputs, listed or computed from one input with varied
//! fields ([`model::batch::Plan`]), checked whole before anything is accepted.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use cluster::TaskType;
use model::batch::{Combine, Plan, Vary};
use model::form::FieldError;

use crate::AppError;

/// A batch's members, as recorded: each member's input is computed from this by its index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum BatchSpec {
    /// Every input listed.
    Inputs { inputs: Vec<Value> },
    /// One input, some of its fields varied.
    Vary { input: Value, plan: Plan },
}

impl BatchSpec {
    /// Inputs listed one by one: at most `cap`.
    pub fn inputs(inputs: Vec<Value>, cap: usize) -> Result<Self, AppError> {
        if inputs.is_empty() {
            return Err(AppError::invalid("a batch has at least one input"));
        }
        over_cap(inputs.len() as u64, cap)?;
        Ok(Self::Inputs { inputs })
    }

    /// `input` with the fields of `vary` varied and combined as `combine` says: at most `cap`
    /// members, refused before any is computed.
    pub fn vary(
        kind: &TaskType,
        input: Value,
        vary: &[(String, Vary)],
        combine: Combine,
        cap: usize,
    ) -> Result<Self, AppError> {
        let plan = Plan::new(kind.fields(), vary, combine, cap).map_err(|e| {
            AppError::InvalidInput(FieldError {
                field: e.field,
                message: e.message,
            })
        })?;
        Ok(Self::Vary { input, plan })
    }

    /// A posted form whose values may vary (`20..40`, `1,5,10`: see [`Vary::parse`]): the
    /// plain ones go into every member, the varied ones make the members.
    pub fn from_form(
        kind: &TaskType,
        posted: &[(&str, &str)],
        combine: Combine,
        cap: usize,
    ) -> Result<Self, AppError> {
        let mut vary = Vec::new();
        let mut firsts = Vec::new();
        let mut plain = Vec::new();
        for (name, value) in posted {
            match Vary::parse(value) {
                Ok(Some(how)) => {
                    firsts.push((*name, how.first_text()));
                    vary.push(((*name).to_owned(), how));
                }
                Ok(None) => plain.push((*name, *value)),
                Err(why) => {
                    return Err(AppError::InvalidInput(FieldError::at(
                        *name,
                        format!("{name}: {why}"),
                    )));
                }
            }
        }
        if vary.is_empty() {
            return Err(AppError::invalid(
                "vary at least one field: a range (20..40, 20..40:2, 1..1000*7:log) or a list (1,5,10)",
            ));
        }
        plain.extend(firsts.iter().map(|(name, first)| (*name, first.as_str())));
        let mut input = kind.from_form(plain).map_err(AppError::InvalidInput)?;
        if let Some(object) = input.as_object_mut() {
            for (name, _) in &vary {
                object.remove(name);
            }
        }
        Self::vary(kind, input, &vary, combine, cap)
    }

    /// How many members.
    pub fn len(&self) -> usize {
        match self {
            Self::Inputs { inputs } => inputs.len(),
            Self::Vary { plan, .. } => plan.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the spec on record (as [`BatchSpec`] serializes) varies fields, so that the
    /// sweep form can show it: read from its tag, without reading its inputs (up to 1 MB).
    pub fn varies(recorded: &Value) -> bool {
        recorded.get("kind").and_then(Value::as_str) == Some("vary")
    }

    /// What it varies, in brief: `n=20..40`; `21 inputs`.
    pub fn brief(&self) -> String {
        match self {
            Self::Inputs { inputs } => format!("{} inputs", inputs.len()),
            Self::Vary { plan, .. } => plan.brief(),
        }
    }

    /// Member `index`'s input (`index` < [`BatchSpec::len`]).
    pub fn member(&self, kind: &TaskType, index: usize) -> Value {
        match self {
            Self::Inputs { inputs } => inputs[index].clone(),
            Self::Vary { input, plan } => kind.with_values(input, &plan.member(index)),
        }
    }

    /// Checks every member as a single task's input is checked; the first that fails is
    /// named, with its field.
    pub fn check(&self, kind: &TaskType) -> Result<(), AppError> {
        for index in 0..self.len() {
            if let Err(error) = kind.check(&self.member(kind, index)) {
                let at = error
                    .field
                    .as_deref()
                    .map(|field| format!(", field {field}"))
                    .unwrap_or_default();
                return Err(AppError::InvalidInput(FieldError {
                    message: format!("member {} of the batch{at}: {}", index + 1, error.message),
                    field: error.field,
                }));
            }
        }
        Ok(())
    }
}

fn over_cap(members: u64, cap: usize) -> Result<(), AppError> {
    if members > cap as u64 {
        return Err(AppError::invalid(format!(
            "the batch would have {members} members: at most {cap} are allowed"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cluster::{Registry, Task, TaskContext, TaskError};
    use serde_json::json;

    struct Double;

    /// What to double.
    #[derive(Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    struct Number {
        /// At most 100.
        #[schemars(range(max = 100))]
        x: u64,
    }

    impl Task for Double {
        const NAME: &'static str = "double";
        const TITLE: &'static str = "Double";
        const DESCRIPTION: &'static str = "x twice.";
        type Input = Number;
        type Output = u64;
        fn summary(input: &Number, output: &u64) -> String {
            format!("double({})={output}", input.x)
        }
        fn run(input: Number, _: &TaskContext<'_>) -> Result<u64, TaskError> {
            Ok(input.x * 2)
        }
    }

    fn double() -> std::sync::Arc<TaskType> {
        Registry::empty()
            .register::<Double>()
            .first()
            .unwrap()
            .clone()
    }

    #[test]
    fn varied_members_are_the_input_with_their_values_and_are_checked_whole() {
        let kind = double();
        let vary = vec![("x".to_owned(), Vary::parse("20..40").unwrap().unwrap())];
        let spec = BatchSpec::vary(&kind, json!({}), &vary, Combine::Grid, 100).unwrap();
        assert_eq!(spec.len(), 21);
        assert_eq!(spec.member(&kind, 0), json!({"x": 20}));
        assert_eq!(spec.member(&kind, 20), json!({"x": 40}));
        spec.check(&kind).unwrap();
        // Recorded as JSON and read back the same.
        let again: BatchSpec =
            serde_json::from_str(&serde_json::to_string(&spec).unwrap()).unwrap();
        assert_eq!(again, spec);
        assert!(BatchSpec::varies(&serde_json::to_value(&spec).unwrap()));
        let listed = BatchSpec::inputs(vec![json!({"x": 1})], 100).unwrap();
        assert!(!BatchSpec::varies(&serde_json::to_value(&listed).unwrap()));
        let over = vec![("x".to_owned(), Vary::parse("90..110").unwrap().unwrap())];
        let error = BatchSpec::vary(&kind, json!({}), &over, Combine::Grid, 100).unwrap_err();
        assert!(error.to_string().contains("at most 100"), "{error}");
    }

    #[test]
    fn a_form_varies_the_fields_written_as_ranges_or_lists_and_keeps_the_others() {
        let kind = double();
        let spec = BatchSpec::from_form(&kind, &[("x", "1,5, 10")], Combine::Grid, 100).unwrap();
        assert_eq!(spec.len(), 3);
        assert_eq!(spec.member(&kind, 2), json!({"x": 10}));
        let plain = BatchSpec::from_form(&kind, &[("x", "7")], Combine::Grid, 100).unwrap_err();
        assert!(
            plain.to_string().starts_with("vary at least one field"),
            "{plain}"
        );
        let AppError::InvalidInput(error) =
            BatchSpec::from_form(&kind, &[("x", "1..y")], Combine::Grid, 100).unwrap_err()
        else {
            panic!("not an input error");
        };
        assert_eq!(error.field.as_deref(), Some("x"));
        // The first value is checked as a single task's input is, with the form's words.
        let first = BatchSpec::from_form(&kind, &[("x", "200..300")], Combine::Grid, 1000);
        assert!(first.unwrap_err().to_string().contains("at most 100"));
    }

    #[test]
    fn the_first_bad_member_is_named_with_its_field() {
        let kind = double();
        let spec = BatchSpec::inputs(
            vec![json!({"x": 1}), json!({"x": "y"}), json!({"z": 1})],
            10,
        )
        .unwrap();
        let AppError::InvalidInput(error) = spec.check(&kind).unwrap_err() else {
            panic!("not an input error");
        };
        assert_eq!(error.field.as_deref(), Some("x"));
        assert!(
            error
                .message
                .starts_with("member 2 of the batch, field x: "),
            "{}",
            error.message
        );
        let over = BatchSpec::inputs(vec![json!({}); 11], 10).unwrap_err();
        assert_eq!(
            over.to_string(),
            "the batch would have 11 members: at most 10 are allowed"
        );
        assert!(BatchSpec::inputs(vec![], 10).is_err());
    }
}
