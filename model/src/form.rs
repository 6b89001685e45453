//! A task type's input form, as data: which fields it has, their kinds and limits, and the
//! values they offer. The server draws it from the type's JSON Schema and renders it; the
//! browser checks what was typed with [`Field::parse`] for an immediate message; the server
//! enforces the same function, so the limits and the words are written once.

use serde::{Deserialize, Serialize};

/// A task type as the picker lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskTypeInfo {
    /// Its stable name: the `?task=` of the page's URL.
    pub name: String,
    pub title: String,
    /// One paragraph.
    pub description: String,
}

/// What a field accepts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldKind {
    /// A whole number within its bounds.
    Integer { min: Option<i64>, max: Option<i64> },
    /// Any finite number within its bounds.
    Number { min: Option<f64>, max: Option<f64> },
    /// Text of at most `max_len` characters; `multiline` asks for a text area.
    Text {
        max_len: Option<u64>,
        multiline: bool,
    },
    /// One of a list: (value, label) pairs.
    Choice { options: Vec<(String, String)> },
    /// On or off.
    Toggle,
}

/// One input of a task type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Field {
    /// The input's key, and the form field's `name`.
    pub name: String,
    pub label: String,
    /// Longer help, shown under the field.
    pub help: Option<String>,
    pub kind: FieldKind,
    /// Without a default, a value must be given.
    pub required: bool,
}

/// A field's value, parsed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FieldValue {
    Integer(i64),
    Number(f64),
    Text(String),
    Toggle(bool),
}

/// Text areas rather than one-line inputs for text that may be longer than this.
pub const MULTILINE_FROM: u64 = 200;

impl Field {
    /// Parses what was typed into the field (`None`: the field was not posted at all, as a
    /// browser does for an unticked checkbox). `Ok(None)` means "use the default".
    pub fn parse(&self, raw: Option<&str>) -> Result<Option<FieldValue>, String> {
        let name = &self.name;
        if let FieldKind::Toggle = self.kind {
            return match raw.map(str::trim) {
                None | Some("" | "false" | "off") => Ok(Some(FieldValue::Toggle(false))),
                Some("true" | "on") => Ok(Some(FieldValue::Toggle(true))),
                Some(other) => Err(format!("{name} must be on or off (got \"{other}\").")),
            };
        }
        let raw = match &self.kind {
            // Text is taken as typed: spaces may matter.
            FieldKind::Text { .. } => raw.unwrap_or_default(),
            _ => raw.unwrap_or_default().trim(),
        };
        if raw.is_empty() && !matches!(self.kind, FieldKind::Text { .. }) {
            return if self.required {
                Err(format!("Enter {name}: {}.", self.expects()))
            } else {
                Ok(None)
            };
        }
        let value = match &self.kind {
            FieldKind::Integer { .. } => FieldValue::Integer(
                raw.parse()
                    .map_err(|_| format!("{name} must be a whole number (got \"{raw}\")."))?,
            ),
            FieldKind::Number { .. } => {
                let x: f64 = raw
                    .parse()
                    .map_err(|_| format!("{name} must be a number (got \"{raw}\")."))?;
                if !x.is_finite() {
                    return Err(format!("{name} must be a finite number (got \"{raw}\")."));
                }
                FieldValue::Number(x)
            }
            FieldKind::Choice { .. } => FieldValue::Text(raw.to_owned()),
            FieldKind::Text { .. } => FieldValue::Text(raw.to_owned()),
            FieldKind::Toggle => unreachable!("handled above"),
        };
        self.check(&value)?;
        Ok(Some(value))
    }

    /// Checks a value already of the right kind against the field's limits.
    pub fn check(&self, value: &FieldValue) -> Result<(), String> {
        let name = &self.name;
        match (&self.kind, value) {
            (FieldKind::Integer { min, max }, FieldValue::Integer(x)) => {
                bounds(name, *x, *min, *max, |v| v.to_string())
            }
            (FieldKind::Number { min, max }, FieldValue::Number(x)) => {
                bounds(name, *x, *min, *max, number_text)
            }
            (FieldKind::Text { max_len, .. }, FieldValue::Text(text)) => match max_len {
                Some(max) if text.chars().count() as u64 > *max => Err(format!(
                    "{name} must be at most {max} characters (got {}).",
                    text.chars().count()
                )),
                _ => Ok(()),
            },
            (FieldKind::Choice { options }, FieldValue::Text(choice)) => {
                if options.iter().any(|(value, _)| value == choice) {
                    Ok(())
                } else {
                    Err(format!(
                        "{name} must be one of {} (got \"{choice}\").",
                        options
                            .iter()
                            .map(|(value, _)| value.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                }
            }
            (FieldKind::Toggle, FieldValue::Toggle(_)) => Ok(()),
            _ => Err(format!("{name} must be {}.", self.expects())),
        }
    }

    /// "a whole number from 0 to 93", for messages.
    pub fn expects(&self) -> String {
        match &self.kind {
            FieldKind::Integer { min, max } => {
                format!("a whole number{}", range_words(*min, *max))
            }
            FieldKind::Number { min, max } => format!(
                "a number{}",
                range_words(min.map(number_text), max.map(number_text))
            ),
            FieldKind::Text {
                max_len: Some(max), ..
            } => {
                format!("text of at most {max} characters")
            }
            FieldKind::Text { max_len: None, .. } => "text".to_owned(),
            FieldKind::Choice { options } => format!(
                "one of {}",
                options
                    .iter()
                    .map(|(value, _)| value.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            FieldKind::Toggle => "on or off".to_owned(),
        }
    }
}

/// `x` as a person writes it: `2.5`, `-0.75`, `1000000`, to 6 decimals at most. Written out
/// with integers because core's float formatter would add about 18 KB to the browser's bundle,
/// for messages alone.
pub fn number_text(x: f64) -> String {
    if !x.is_finite() || x.abs() >= 1e15 {
        // Not a bound a form would have; the integer path below cannot hold it.
        return if x.is_nan() {
            "NaN".into()
        } else if x > 0.0 {
            "a very large number".into()
        } else {
            "a very small number".into()
        };
    }
    let millionths = (x.abs() * 1e6).round() as u64;
    let (whole, mut frac) = (millionths / 1_000_000, millionths % 1_000_000);
    let sign = if x < 0.0 && millionths > 0 { "-" } else { "" };
    if frac == 0 {
        return format!("{sign}{whole}");
    }
    let mut digits = 6;
    while frac % 10 == 0 {
        frac /= 10;
        digits -= 1;
    }
    format!("{sign}{whole}.{frac:0digits$}")
}

fn range_words<T: ToString>(min: Option<T>, max: Option<T>) -> String {
    match (min, max) {
        (Some(min), Some(max)) => format!(" from {} to {}", min.to_string(), max.to_string()),
        (Some(min), None) => format!(" of {} or more", min.to_string()),
        (None, Some(max)) => format!(" of at most {}", max.to_string()),
        (None, None) => String::new(),
    }
}

fn bounds<T: PartialOrd + Copy>(
    name: &str,
    x: T,
    min: Option<T>,
    max: Option<T>,
    show: impl Fn(T) -> String,
) -> Result<(), String> {
    match (min, max) {
        (Some(min), _) if x < min => Err(format!(
            "{name} must be {} or more (got {}).",
            show(min),
            show(x)
        )),
        (_, Some(max)) if x > max => Err(format!(
            "{name} must be at most {} (got {}).",
            show(max),
            show(x)
        )),
        _ => Ok(()),
    }
}

/// Why an input was refused, and which field it was about (none: the input as a whole).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: Option<String>,
    pub message: String,
}

impl FieldError {
    pub fn at(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn whole(message: impl Into<String>) -> Self {
        Self {
            field: None,
            message: message.into(),
        }
    }
}

impl core::fmt::Display for FieldError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A task type's form as the page renders it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskForm {
    /// The task type's name, posted with the form.
    pub task: String,
    pub title: String,
    pub fields: Vec<Field>,
    /// What each field offers, as text, in the fields' order.
    pub values: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn integer(min: i64, max: i64) -> Field {
        Field {
            name: "n".into(),
            label: "n".into(),
            help: None,
            kind: FieldKind::Integer {
                min: Some(min),
                max: Some(max),
            },
            required: true,
        }
    }

    #[test]
    fn integers_are_parsed_and_bounded_with_their_messages() {
        let n = integer(0, 93);
        assert_eq!(n.parse(Some(" 12 ")), Ok(Some(FieldValue::Integer(12))));
        assert_eq!(n.parse(Some("93")), Ok(Some(FieldValue::Integer(93))));
        assert_eq!(
            n.parse(Some("")).unwrap_err(),
            "Enter n: a whole number from 0 to 93."
        );
        assert_eq!(
            n.parse(None).unwrap_err(),
            "Enter n: a whole number from 0 to 93."
        );
        for bad in ["2.5", "abc", "1e3"] {
            assert!(
                n.parse(Some(bad)).unwrap_err().contains("whole number"),
                "{bad}"
            );
        }
        assert_eq!(
            n.parse(Some("-1")).unwrap_err(),
            "n must be 0 or more (got -1)."
        );
        assert_eq!(
            n.parse(Some("94")).unwrap_err(),
            "n must be at most 93 (got 94)."
        );
        assert!(n.parse(Some("99999999999999999999")).is_err(), "beyond i64");
    }

    #[test]
    fn numbers_text_choices_and_toggles_refuse_what_they_must() {
        let zoom = Field {
            name: "zoom".into(),
            label: "Zoom".into(),
            help: None,
            kind: FieldKind::Number {
                min: Some(0.5),
                max: None,
            },
            required: false,
        };
        assert_eq!(zoom.parse(Some("")), Ok(None), "the default applies");
        assert_eq!(zoom.parse(Some("2.5")), Ok(Some(FieldValue::Number(2.5))));
        assert!(zoom.parse(Some("0.1")).unwrap_err().contains("0.5 or more"));
        assert!(zoom.parse(Some("NaN")).unwrap_err().contains("finite"));
        assert!(zoom.parse(Some("x")).unwrap_err().contains("a number"));

        let text = Field {
            name: "text".into(),
            label: "Text".into(),
            help: None,
            kind: FieldKind::Text {
                max_len: Some(3),
                multiline: false,
            },
            required: true,
        };
        assert_eq!(
            text.parse(Some("héé")),
            Ok(Some(FieldValue::Text("héé".into())))
        );
        assert_eq!(
            text.parse(Some("abcd")).unwrap_err(),
            "text must be at most 3 characters (got 4)."
        );

        let choice = Field {
            name: "algorithm".into(),
            label: "Algorithm".into(),
            help: None,
            kind: FieldKind::Choice {
                options: vec![
                    ("sha256".into(), "SHA-256".into()),
                    ("blake3".into(), "BLAKE3".into()),
                ],
            },
            required: true,
        };
        assert!(choice.parse(Some("blake3")).is_ok());
        assert_eq!(
            choice.parse(Some("md5")).unwrap_err(),
            "algorithm must be one of sha256, blake3 (got \"md5\")."
        );

        let toggle = Field {
            name: "smooth".into(),
            label: "Smooth".into(),
            help: None,
            kind: FieldKind::Toggle,
            required: false,
        };
        assert_eq!(toggle.parse(None), Ok(Some(FieldValue::Toggle(false))));
        assert_eq!(toggle.parse(Some("on")), Ok(Some(FieldValue::Toggle(true))));
        assert!(toggle.parse(Some("maybe")).is_err());
        assert!(
            toggle
                .check(&FieldValue::Integer(1))
                .unwrap_err()
                .contains("on or off")
        );
    }

    #[test]
    fn numbers_read_as_written_without_the_float_formatter() {
        for (x, text) in [
            (0.0, "0"),
            (2.5, "2.5"),
            (-0.75, "-0.75"),
            (1e6, "1000000"),
            (0.1 + 0.2, "0.3"),
            (3.000_000_4, "3"),
            (-1e-9, "0"),
            (1.234_567_89, "1.234568"),
        ] {
            assert_eq!(number_text(x), text, "{x}");
        }
    }
}
