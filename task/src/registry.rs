//! The [`Registry`]: every [`TaskType`] a process runs, known by name, so that a worker can run
//! a task it only has the name and the JSON input of (the seam that lets workers live in other
//! processes), and the page can draw each type's form.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::{Binary, Task, TaskContext, TaskError, schema};
use model::form::{Field, FieldError, FieldValue, TaskForm, TaskTypeInfo};

type Runner = fn(&Value, &TaskContext<'_>) -> Result<Value, TaskError>;

/// A registered task type, known by name: what the page, the scheduler and the workers need of
/// it without knowing its Rust type.
pub struct TaskType {
    name: &'static str,
    title: &'static str,
    description: &'static str,
    schema_hash: String,
    /// [`Task::VERSION`].
    version: u32,
    /// JSON Schemas (2020-12) of the input and the output, as `schemars` derives them.
    input_schema: Value,
    output_schema: Value,
    fields: Vec<Field>,
    /// The output's [`Binary`] field, if it has one.
    binary_field: Option<String>,
    defaults: Map<String, Value>,
    run: Runner,
    /// Decodes an input that passed the fields' checks, applies [`Task::validate`] and
    /// returns the expected duration.
    admit: fn(&Value) -> Result<Option<Duration>, String>,
    summary: fn(&Value, &Value) -> Option<String>,
    next_input: fn(&Value) -> Option<Value>,
}

impl fmt::Debug for TaskType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskType")
            .field("name", &self.name)
            .field("schema_hash", &self.schema_hash)
            .finish_non_exhaustive()
    }
}

impl TaskType {
    fn of<T: Task>() -> Result<Self, String> {
        let input_schema = schema_for::<T::Input>();
        let fields = schema::fields(&input_schema)?;
        if fields.iter().any(|f| f.name == "task") {
            // The form posts the type's name under that key.
            return Err(
                "its input has a field called \"task\", a name the form keeps for \
                        the task type"
                    .into(),
            );
        }
        let defaults = schema::defaults(&input_schema);
        let output_schema = schema_for::<T::Output>();
        let binary_field = binary_field(&output_schema)?;
        let schema_hash = {
            let digest = Sha256::digest(input_schema.to_string().as_bytes());
            digest[..8].iter().map(|b| format!("{b:02x}")).collect()
        };
        Ok(Self {
            name: T::NAME,
            title: T::TITLE,
            description: T::DESCRIPTION,
            schema_hash,
            version: T::VERSION,
            input_schema,
            output_schema,
            fields,
            defaults,
            binary_field,
            run: run_erased::<T>,
            // Decoded from a borrowed `Value`: no copy of the input on the submit path.
            admit: |input| {
                let input = T::Input::deserialize(input).map_err(|e| e.to_string())?;
                T::validate(&input)?;
                Ok(T::expected_duration(&input))
            },
            summary: |input, output| {
                let input = T::Input::deserialize(input).ok()?;
                let output = T::Output::deserialize(output).ok()?;
                Some(T::summary(&input, &output))
            },
            next_input: |input| {
                let input = T::Input::deserialize(input).ok()?;
                serde_json::to_value(T::next_input(&input)?).ok()
            },
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn title(&self) -> &'static str {
        self.title
    }

    pub fn description(&self) -> &'static str {
        self.description
    }

    /// Identifies the input schema (16 hex digits of its SHA-256): a worker runs a task only
    /// when its own build of the type has the same.
    pub fn schema_hash(&self) -> &str {
        &self.schema_hash
    }

    /// The input's JSON Schema: what the form is drawn from and every submission checked
    /// against.
    pub fn input_schema(&self) -> &Value {
        &self.input_schema
    }

    /// The output's JSON Schema.
    pub fn output_schema(&self) -> &Value {
        &self.output_schema
    }

    /// The input's fields, in declaration order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// For the picker.
    pub fn info(&self) -> TaskTypeInfo {
        TaskTypeInfo {
            name: self.name.to_owned(),
            title: self.title.to_owned(),
            description: self.description.to_owned(),
        }
    }

    /// The form, offering `input` (or the type's defaults where it has none).
    pub fn form(&self, input: Option<&Value>) -> TaskForm {
        TaskForm {
            task: self.name.to_owned(),
            title: self.title.to_owned(),
            values: schema::form_values(
                &self.fields,
                input.unwrap_or(&Value::Null),
                &self.defaults,
            ),
            fields: self.fields.clone(),
        }
    }

    /// A posted form as this type's input, checked as [`TaskType::check`] does.
    pub fn from_form<'a>(
        &self,
        posted: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Value, FieldError> {
        let input = schema::from_form(&self.fields, posted)?;
        self.check(&input)?;
        Ok(input)
    }

    /// Checks an input against the schema's fields and the type's own rules; returns how long
    /// it is expected to run.
    pub fn check(&self, input: &Value) -> Result<Option<Duration>, FieldError> {
        schema::check(&self.fields, input)?;
        (self.admit)(input).map_err(FieldError::whole)
    }

    /// `input` with `values` in their fields (a batch's member; checked by [`TaskType::check`]
    /// like any input). An input that is not an object is taken as an empty one.
    pub fn with_values(&self, input: &Value, values: &[(&str, &FieldValue)]) -> Value {
        let mut object = input.as_object().cloned().unwrap_or_default();
        for (name, value) in values {
            object.insert((*name).to_owned(), schema::to_json((*value).clone()));
        }
        Value::Object(object)
    }

    /// The input in brief: `20`, or `n=3, text="abc"`.
    pub fn brief(&self, input: &Value) -> String {
        schema::brief(&self.fields, input)
    }

    /// The result in one line (the output as JSON if it does not decode as this type's).
    pub fn summary(&self, input: &Value, output: &Value) -> String {
        (self.summary)(input, output)
            .unwrap_or_else(|| format!("{}({})={output}", self.name, self.brief(input)))
    }

    /// What an earlier result must have been computed from to be reused for `input`: this
    /// type, its input schema and [`Task::VERSION`], and the input itself with its keys in
    /// order. 64 bits of a SHA-256: equal keys are equal computations.
    pub fn reuse_key(&self, input: &Value) -> i64 {
        let mut hash = Sha256::new();
        for part in [self.name, &self.schema_hash, &self.version.to_string()] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        hash.update(canonical(input).as_bytes());
        let digest = hash.finalize();
        i64::from_le_bytes(digest[..8].try_into().expect("eight bytes"))
    }

    /// Whether its output carries a [`Binary`] (a picture).
    pub fn has_binary_output(&self) -> bool {
        self.binary_field.is_some()
    }

    /// Takes the bytes out of an output that has a [`Binary`] field, leaving their media type
    /// and size in its place (the form the output is stored and shown in).
    pub fn take_binary(&self, output: &mut Value) -> Result<Option<Binary>, String> {
        let Some(field) = self.binary_field.as_deref() else {
            return Ok(None);
        };
        let Some(slot) = output.get_mut(field) else {
            return Ok(None);
        };
        let Value::String(url) = slot.take() else {
            return Err(format!("the output's {field:?} is not a data: URL"));
        };
        let binary = Binary::from_data_url(&url)?;
        *slot = binary.stub();
        Ok(Some(binary))
    }

    /// What the form offers after `input`: the type's suggestion, else `input` itself.
    pub fn next_input(&self, input: &Value) -> Value {
        (self.next_input)(input).unwrap_or_else(|| input.clone())
    }
}

/// The top-level field of an output schema that holds a [`Binary`]: at most one, since it
/// becomes the task's one downloadable output.
fn binary_field(output: &Value) -> Result<Option<String>, String> {
    let reference = format!("#/$defs/{}", crate::binary::SCHEMA_NAME);
    let mut fields = output
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter(|(_, schema)| schema.get("$ref").and_then(Value::as_str) == Some(&reference))
        .map(|(name, _)| name.clone());
    match (fields.next(), fields.next()) {
        (Some(_), Some(_)) => Err("its output has more than one Binary field".into()),
        (field, _) => Ok(field),
    }
}

/// `value` as JSON with every object's keys sorted, whatever order they came in.
fn canonical(value: &Value) -> String {
    match value {
        Value::Object(object) => {
            let mut keys: Vec<&String> = object.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|key| format!("{}:{}", Value::from(key.as_str()), canonical(&object[key])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

fn schema_for<T: JsonSchema>() -> Value {
    schemars::schema_for!(T).to_value()
}

/// The tasks a cluster's workers can run, by name, in the order they were registered (the
/// first is the page's default).
///
/// Like Dask, where client and workers must import the same task code, every process of one
/// cluster builds its registry from the same `tasks` crate; a worker runs a task only if its
/// build of the type has the same input schema ([`TaskType::schema_hash`]).
#[derive(Clone, Default)]
pub struct Registry {
    types: Vec<Arc<TaskType>>,
}

impl Registry {
    /// A registry that knows no task yet.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Adds a task type.
    ///
    /// # Panics
    /// When the input's schema is not a form's (a field that is not a number, text, unit enum
    /// or bool), with the reason; or when the name is taken. Both are mistakes in the task's
    /// code, and the `tasks` crate's tests register every type.
    pub fn register<T: Task>(mut self) -> Self {
        let task = TaskType::of::<T>()
            .unwrap_or_else(|why| panic!("task type {:?} cannot be registered: {why}", T::NAME));
        assert!(
            self.get(T::NAME).is_none(),
            "task type {:?} is registered twice",
            T::NAME
        );
        self.types.push(Arc::new(task));
        self
    }

    /// The type called `name`. A scan: a registry holds a handful of types, and comparing a
    /// few short names is quicker than hashing one.
    pub fn get(&self, name: &str) -> Option<&Arc<TaskType>> {
        self.types.iter().find(|t| t.name == name)
    }

    /// Every type, in registration order.
    pub fn types(&self) -> &[Arc<TaskType>] {
        &self.types
    }

    /// The first type registered: the page's default.
    pub fn first(&self) -> Option<&Arc<TaskType>> {
        self.types.first()
    }

    /// Runs task `name`. `checked`: this process's scheduler checked the input when it was
    /// submitted (embedded workers); a NATS worker checks it again, since over the network it
    /// cannot trust that the submitter did.
    pub fn run(
        &self,
        name: &str,
        input: &Value,
        ctx: &TaskContext<'_>,
        checked: bool,
    ) -> Result<Value, TaskError> {
        match self.get(name) {
            Some(task) => {
                if !checked {
                    schema::check(&task.fields, input)
                        .map_err(|e| TaskError::InvalidInput(e.message))?;
                    (task.admit)(input).map_err(TaskError::InvalidInput)?;
                }
                (task.run)(input, ctx)
            }
            None => Err(TaskError::Failed(format!("unknown task {name:?}"))),
        }
    }
}

fn run_erased<T: Task>(input: &Value, ctx: &TaskContext<'_>) -> Result<Value, TaskError> {
    let input = T::Input::deserialize(input).map_err(|e| TaskError::InvalidInput(e.to_string()))?;
    let output = T::run(input, ctx)?;
    serde_json::to_value(output).map_err(|e| TaskError::Failed(format!("output: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TaskContext;
    use serde::Serialize;
    use std::sync::atomic::AtomicBool;

    /// Doubles a number below 1,000, refusing 13.
    struct Double;

    /// Double's input.
    #[derive(Debug, Serialize, Deserialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Number {
        /// The number
        ///
        /// Anything below 1,000 but 13.
        #[schemars(range(max = 999))]
        x: u32,
    }

    impl Task for Double {
        const NAME: &'static str = "double";
        const TITLE: &'static str = "Double";
        const DESCRIPTION: &'static str = "Twice the number.";
        type Input = Number;
        type Output = u32;

        fn validate(input: &Number) -> Result<(), String> {
            if input.x == 13 {
                Err("13 brings bad luck.".into())
            } else {
                Ok(())
            }
        }

        fn summary(input: &Number, output: &u32) -> String {
            format!("2×{}={output}", input.x)
        }

        fn next_input(input: &Number) -> Option<Number> {
            Some(Number { x: input.x + 1 })
        }

        fn run(input: Number, _: &TaskContext<'_>) -> Result<u32, TaskError> {
            Ok(input.x * 2)
        }
    }

    #[test]
    fn workers_refuse_unknown_tasks_and_undecodable_or_invalid_input() {
        let flag = AtomicBool::new(false);
        let publish = |_: f64| {};
        let ctx = TaskContext::new(&flag, &publish);
        let registry = Registry::empty().register::<Double>();
        let x = |x: Value| serde_json::json!({ "x": x });
        assert!(matches!(
            Registry::empty().run("double", &x(1.into()), &ctx, false),
            Err(TaskError::Failed(m)) if m.contains("unknown task")
        ));
        assert!(matches!(
            registry.run("double", &x("ten".into()), &ctx, false),
            Err(TaskError::InvalidInput(m)) if m.contains("whole number")
        ));
        assert!(matches!(
            registry.run("double", &x(1000.into()), &ctx, false),
            Err(TaskError::InvalidInput(m)) if m.contains("at most 999")
        ));
        assert!(matches!(
            registry.run("double", &x(13.into()), &ctx, false),
            Err(TaskError::InvalidInput(m)) if m.contains("bad luck")
        ));
        assert_eq!(
            registry.run("double", &x(10.into()), &ctx, false),
            Ok(Value::from(20))
        );
        assert_eq!(
            registry.run("double", &x(13.into()), &ctx, true),
            Ok(Value::from(26)),
            "checked at submit: not checked again"
        );
    }

    #[test]
    fn reuse_keys_are_equal_for_equal_inputs_in_any_key_order_and_differ_otherwise() {
        let registry = Registry::empty().register::<Double>();
        let double = registry.first().unwrap();
        let key = |text: &str| double.reuse_key(&serde_json::from_str(text).unwrap());
        assert_eq!(
            key(r#"{"x": 1, "y": [2, {"b": 1, "a": 2}]}"#),
            key(r#"{"y": [2, {"a": 2, "b": 1}], "x": 1}"#)
        );
        assert_ne!(key(r#"{"x": 1}"#), key(r#"{"x": 2}"#));
        assert_ne!(key(r#"{"x": 1}"#), key(r#"{"x": "1"}"#));
        assert_eq!(
            canonical(&serde_json::json!({"b": "\"", "a": null})),
            r#"{"a":null,"b":"\""}"#
        );
    }

    #[test]
    fn a_registered_type_describes_its_form_summary_and_next_input() {
        let registry = Registry::empty().register::<Double>();
        let double = registry.first().unwrap();
        assert_eq!(double.schema_hash().len(), 16);
        let form = double.form(None);
        assert_eq!(form.fields[0].label, "The number");
        assert_eq!(
            form.fields[0].help.as_deref(),
            Some("Anything below 1,000 but 13.")
        );
        assert_eq!(form.values, [""]);
        let input = double.from_form([("x", "21")]).unwrap();
        assert_eq!(double.summary(&input, &Value::from(42)), "2×21=42");
        assert_eq!(double.brief(&input), "21");
        let next = double.next_input(&input);
        assert_eq!(double.form(Some(&next)).values, ["22"]);
        let refused = double.from_form([("x", "13")]).unwrap_err();
        assert_eq!(
            (refused.field, refused.message.as_str()),
            (None, "13 brings bad luck.")
        );
        assert_eq!(
            double
                .from_form([("x", "1000")])
                .unwrap_err()
                .field
                .as_deref(),
            Some("x")
        );
    }

    #[test]
    #[should_panic(expected = "registered twice")]
    fn a_name_is_registered_once() {
        let _ = Registry::empty().register::<Double>().register::<Double>();
    }

    /// Draws a grey square: an output with a [`Binary`] field.
    struct Square;

    #[derive(Debug, Serialize, Deserialize, JsonSchema)]
    struct Picture {
        side: u32,
        pgm: Binary,
    }

    impl Task for Square {
        const NAME: &'static str = "square";
        const TITLE: &'static str = "Square";
        const DESCRIPTION: &'static str = "A grey square.";
        type Input = Number;
        type Output = Picture;

        fn summary(input: &Number, output: &Picture) -> String {
            format!("square({})={} bytes", input.x, output.pgm.bytes().len())
        }

        fn run(input: Number, _: &TaskContext<'_>) -> Result<Picture, TaskError> {
            let mut pgm = format!("P5 {0} {0} 255\n", input.x).into_bytes();
            pgm.resize(pgm.len() + (input.x * input.x) as usize, 128);
            Ok(Picture {
                side: input.x,
                pgm: Binary::new("image/x-portable-graymap", pgm),
            })
        }
    }

    #[test]
    fn a_binary_field_is_taken_out_of_the_output_and_its_stub_left() {
        let flag = AtomicBool::new(false);
        let publish = |_: f64| {};
        let ctx = TaskContext::new(&flag, &publish);
        let registry = Registry::empty().register::<Square>().register::<Double>();
        let square = registry.get("square").unwrap();
        let input = serde_json::json!({ "x": 3 });
        let mut output = registry.run("square", &input, &ctx, false).unwrap();
        assert_eq!(square.summary(&input, &output), "square(3)=20 bytes");
        let binary = square.take_binary(&mut output).unwrap().unwrap();
        assert_eq!(binary.media_type(), "image/x-portable-graymap");
        assert_eq!(&binary.bytes()[..13], b"P5 3 3 255\n\x80\x80");
        assert_eq!(
            output,
            serde_json::json!({
                "side": 3,
                "pgm": { "media_type": "image/x-portable-graymap", "bytes": 20 },
            })
        );
        let mut plain = Value::from(20);
        let double = registry.get("double").unwrap();
        assert_eq!(double.take_binary(&mut plain), Ok(None));
        let mut forged = serde_json::json!({ "side": 3, "pgm": 7 });
        assert!(square.take_binary(&mut forged).is_err());
    }

    #[derive(Debug, Serialize, Deserialize, JsonSchema)]
    struct Pictures {
        front: Binary,
        back: Binary,
    }

    struct TwoSides;

    impl Task for TwoSides {
        const NAME: &'static str = "two-sides";
        const TITLE: &'static str = "Two sides";
        const DESCRIPTION: &'static str = "Two pictures.";
        type Input = Number;
        type Output = Pictures;

        fn summary(_: &Number, _: &Pictures) -> String {
            String::new()
        }

        fn run(_: Number, _: &TaskContext<'_>) -> Result<Pictures, TaskError> {
            Err(TaskError::Failed("never run".into()))
        }
    }

    #[test]
    #[should_panic(expected = "more than one Binary field")]
    fn an_output_has_at_most_one_binary_field() {
        let _ = Registry::empty().register::<TwoSides>();
    }

    /// Its input has a field named like the form's own.
    struct Clash;

    #[derive(Debug, Serialize, Deserialize, JsonSchema)]
    struct Named {
        task: String,
    }

    impl Task for Clash {
        const NAME: &'static str = "clash";
        const TITLE: &'static str = "Clash";
        const DESCRIPTION: &'static str = "A field called task.";
        type Input = Named;
        type Output = u32;

        fn summary(_: &Named, _: &u32) -> String {
            String::new()
        }

        fn run(_: Named, _: &TaskContext<'_>) -> Result<u32, TaskError> {
            Ok(0)
        }
    }

    #[test]
    #[should_panic(expected = "a field called \"task\"")]
    fn no_input_field_may_be_called_task() {
        let _ = Registry::empty().register::<Clash>();
    }
}
