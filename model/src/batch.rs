//! A batch's specification: which fields of a task type's input vary, over which values, and
//! how varied fields combine. Written once for the API, the command line and (later) the form:
//! the same words refuse the same specification wherever it comes from.
//!
//! A specification is resolved against the type's [`Field`]s into a [`Plan`], whose members
//! are computed by index rather than held: a plan of 10,000 members is a few lists of values.

use serde::{Deserialize, Serialize};

use crate::form::{Field, FieldKind, FieldValue, number_text};
use crate::page::Outcome;

/// One value of a list, as JSON writes it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Bool(bool),
    Integer(i64),
    Number(f64),
    Text(String),
}

/// Evenly spaced, or spaced by a constant ratio.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    #[default]
    Linear,
    Log,
}

/// Numbers from `from` to `to` (both included when the steps land on them), by `step` or in
/// `count` values (neither: steps of 1).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    pub from: f64,
    pub to: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    #[serde(default)]
    pub scale: Scale,
}

/// How one field varies.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Vary {
    List(Vec<Scalar>),
    Range(Range),
}

/// How several varied fields make members.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Combine {
    /// Every combination; the field declared last changes fastest.
    #[default]
    Grid,
    /// The first values together, then the second ones, …: every list as long.
    Zip,
}

/// Why a specification was refused, and at which field when it is about one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub field: Option<String>,
    pub message: String,
}

impl SpecError {
    fn at(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }

    fn whole(message: impl Into<String>) -> Self {
        Self {
            field: None,
            message: message.into(),
        }
    }
}

impl core::fmt::Display for SpecError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Vary {
    /// The command line's and the form's syntax: `20..40` (steps of 1), `20..40:2` (a step),
    /// `1..1000*7` (7 values), `1..1000*7:log` (7 values, a constant ratio apart), `1,5,10` (a
    /// list). None: the text is one plain value.
    pub fn parse(text: &str) -> Result<Option<Self>, String> {
        let text = text.trim();
        if let Some((from, rest)) = text.split_once("..") {
            let number = |part: &str, what: &str| -> Result<f64, String> {
                part.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| format!("{what} of the range {text:?} is not a number"))
            };
            let from = number(from, "the start")?;
            let mut range = Range {
                from,
                to: 0.0,
                step: None,
                count: None,
                scale: Scale::Linear,
            };
            if let Some((to, count)) = rest.split_once('*') {
                range.to = number(to, "the end")?;
                let (count, scale) = match count.split_once(':') {
                    Some((count, "log")) => (count, Scale::Log),
                    Some((_, other)) => {
                        return Err(format!(
                            "{other:?} in {text:?} is not a scale: write :log or nothing"
                        ));
                    }
                    None => (count, Scale::Linear),
                };
                range.count = Some(count.trim().parse().map_err(|_| {
                    format!("the count of the range {text:?} is not a whole number")
                })?);
                range.scale = scale;
            } else if let Some((to, step)) = rest.split_once(':') {
                range.to = number(to, "the end")?;
                range.step = Some(number(step, "the step")?);
            } else {
                range.to = number(rest, "the end")?;
            }
            return Ok(Some(Self::Range(range)));
        }
        if text.contains(',') {
            return Ok(Some(Self::List(
                text.split(',')
                    .map(|v| Scalar::Text(v.trim().to_owned()))
                    .collect(),
            )));
        }
        Ok(None)
    }

    /// The first value, as typed: a base input is checked with it, by the same parser as a
    /// single task's (each member then gets its own).
    pub fn first_text(&self) -> String {
        match self {
            Self::List(values) => match values.first() {
                Some(Scalar::Text(text)) => text.clone(),
                Some(Scalar::Integer(x)) => x.to_string(),
                Some(Scalar::Number(x)) => x.to_string(),
                Some(Scalar::Bool(on)) => on.to_string(),
                None => String::new(),
            },
            Self::Range(range) => range.from.to_string(),
        }
    }

    /// How many values this gives at most, without computing them (ranges on whole-number
    /// fields may give fewer once rounded).
    fn bound(&self, field: &str) -> Result<u64, SpecError> {
        match self {
            Self::List(values) => Ok(values.len() as u64),
            Self::Range(range) => range.bound(field),
        }
    }

    /// The values for `field`, each checked by the field's own rules.
    fn values(&self, field: &Field) -> Result<Vec<FieldValue>, SpecError> {
        let name = &field.name;
        let values: Vec<FieldValue> = match self {
            Self::List(values) => values
                .iter()
                .map(|v| scalar_value(field, v))
                .collect::<Result<_, _>>()?,
            Self::Range(range) => {
                let numbers = range.numbers(name)?;
                match field.kind {
                    FieldKind::Integer { .. } => {
                        let mut whole: Vec<i64> =
                            numbers.iter().map(|x| x.round() as i64).collect();
                        // A log range on whole numbers rounds its low end onto the same values.
                        whole.dedup();
                        whole.into_iter().map(FieldValue::Integer).collect()
                    }
                    FieldKind::Number { .. } => {
                        numbers.into_iter().map(FieldValue::Number).collect()
                    }
                    _ => {
                        return Err(SpecError::at(
                            name,
                            format!("{name} is not a number: vary it by a list of values"),
                        ));
                    }
                }
            }
        };
        if values.is_empty() {
            return Err(SpecError::at(name, format!("{name} varies over no value")));
        }
        for value in &values {
            field
                .check(value)
                .map_err(|message| SpecError::at(name, message))?;
        }
        Ok(values)
    }
}

impl Range {
    fn bound(&self, name: &str) -> Result<u64, SpecError> {
        let Self {
            from,
            to,
            step,
            count,
            scale,
        } = *self;
        if !from.is_finite() || !to.is_finite() {
            return Err(SpecError::at(
                name,
                format!("{name}'s range must be finite"),
            ));
        }
        if scale == Scale::Log && (from <= 0.0 || to <= 0.0) {
            return Err(SpecError::at(
                name,
                format!("{name}'s logarithmic range must be above 0 at both ends"),
            ));
        }
        match (step, count) {
            (Some(_), Some(_)) => Err(SpecError::at(
                name,
                format!("{name}'s range takes a step or a count, not both"),
            )),
            (_, Some(0)) => Err(SpecError::at(
                name,
                format!("{name}'s range needs a count of at least 1"),
            )),
            (_, Some(count)) => Ok(count),
            (Some(_), None) if scale == Scale::Log => Err(SpecError::at(
                name,
                format!("{name}'s logarithmic range takes a count, not a step"),
            )),
            (step, None) => {
                let step = step.unwrap_or(1.0).abs();
                if !(step.is_finite() && step > 0.0) {
                    return Err(SpecError::at(
                        name,
                        format!("{name}'s step must be a number above 0"),
                    ));
                }
                // A hair of tolerance, so that 0..1:0.1 ends on 1 despite rounding.
                let steps = ((to - from).abs() / step + 1e-9).floor();
                Ok(if steps >= u64::MAX as f64 {
                    u64::MAX
                } else {
                    steps as u64 + 1
                })
            }
        }
    }

    /// The numbers, once [`Range::bound`] is known to be within the cap.
    fn numbers(&self, name: &str) -> Result<Vec<f64>, SpecError> {
        let n = self.bound(name)?;
        let Self {
            from, to, scale, ..
        } = *self;
        let at = |k: u64| -> f64 {
            if n == 1 {
                return from;
            }
            let t = k as f64 / (n - 1) as f64;
            match (scale, self.count) {
                (Scale::Log, _) => from * (to / from).powf(t),
                (Scale::Linear, Some(_)) => from + (to - from) * t,
                (Scale::Linear, None) => {
                    let step = self.step.unwrap_or(1.0).abs();
                    from + (k as f64) * step * if to < from { -1.0 } else { 1.0 }
                }
            }
        };
        Ok((0..n)
            .map(|k| match k {
                0 => from,
                // Counted ranges end exactly on `to`, not on a rounding of it.
                k if k == n - 1 && self.count.is_some() => to,
                k => at(k),
            })
            .collect())
    }
}

/// A list's value as `field`'s kind.
fn scalar_value(field: &Field, value: &Scalar) -> Result<FieldValue, SpecError> {
    let name = &field.name;
    let wrong = || SpecError::at(name, format!("{name} must be {}.", field.expects()));
    Ok(match (&field.kind, value) {
        // Text, as typed on the command line or in the form, is parsed as the form parses it.
        (_, Scalar::Text(text)) => field
            .parse(Some(text))
            .map_err(|message| SpecError::at(name, message))?
            .ok_or_else(wrong)?,
        (FieldKind::Integer { .. }, Scalar::Integer(x)) => FieldValue::Integer(*x),
        (FieldKind::Integer { .. }, Scalar::Number(x)) if x.fract() == 0.0 && x.abs() < 9e15 => {
            FieldValue::Integer(*x as i64)
        }
        (FieldKind::Number { .. }, Scalar::Integer(x)) => FieldValue::Number(*x as f64),
        (FieldKind::Number { .. }, Scalar::Number(x)) => FieldValue::Number(*x),
        (FieldKind::Toggle, Scalar::Bool(on)) => FieldValue::Toggle(*on),
        _ => return Err(wrong()),
    })
}

/// A specification resolved against a type's fields: each varied field's values, in the
/// order the type declares its fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub varied: Vec<(String, Vec<FieldValue>)>,
    pub combine: Combine,
}

impl Plan {
    /// Resolves `vary` (field name → how it varies) against `fields`; refused past `cap`
    /// members, before any value is computed.
    pub fn new(
        fields: &[Field],
        vary: &[(String, Vary)],
        combine: Combine,
        cap: usize,
    ) -> Result<Self, SpecError> {
        if vary.is_empty() {
            return Err(SpecError::whole(
                "a batch varies at least one field: name it under \"vary\"",
            ));
        }
        if let Some((unknown, _)) = vary
            .iter()
            .find(|(name, _)| !fields.iter().any(|f| &f.name == name))
        {
            let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
            return Err(SpecError::at(
                unknown,
                format!(
                    "there is no field {unknown:?} to vary: the fields are {}",
                    names.join(", ")
                ),
            ));
        }
        let varied: Vec<(&Field, &Vary)> = fields
            .iter()
            .filter_map(|f| vary.iter().find(|(n, _)| *n == f.name).map(|(_, v)| (f, v)))
            .collect();
        let mut bound: u64 = match combine {
            Combine::Grid => 1,
            Combine::Zip => 0,
        };
        for (field, vary) in &varied {
            let n = vary.bound(&field.name)?;
            bound = match combine {
                Combine::Grid => bound.saturating_mul(n),
                Combine::Zip => bound.max(n),
            };
        }
        if bound > cap as u64 {
            return Err(SpecError::whole(format!(
                "the batch would have {} members: at most {cap} are allowed",
                if bound == u64::MAX {
                    "more than 18 quintillion".to_owned()
                } else {
                    bound.to_string()
                }
            )));
        }
        let varied = varied
            .into_iter()
            .map(|(field, vary)| Ok((field.name.clone(), vary.values(field)?)))
            .collect::<Result<Vec<_>, SpecError>>()?;
        if combine == Combine::Zip {
            let (first, values) = &varied[0];
            if let Some((other, others)) = varied.iter().find(|(_, v)| v.len() != values.len()) {
                return Err(SpecError::at(
                    other,
                    format!(
                        "zipped fields vary over as many values each: {first} has {}, {other} has {}",
                        values.len(),
                        others.len()
                    ),
                ));
            }
        }
        Ok(Self { varied, combine })
    }

    /// How many members.
    pub fn len(&self) -> usize {
        match self.combine {
            Combine::Grid => self.varied.iter().map(|(_, v)| v.len()).product(),
            Combine::Zip => self.varied.first().map_or(0, |(_, v)| v.len()),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Member `index`'s varied values (`index` < [`Plan::len`]).
    pub fn member(&self, index: usize) -> Vec<(&str, &FieldValue)> {
        match self.combine {
            Combine::Zip => self
                .varied
                .iter()
                .map(|(name, values)| (name.as_str(), &values[index]))
                .collect(),
            Combine::Grid => {
                let mut rest = index;
                let mut member: Vec<(&str, &FieldValue)> = self
                    .varied
                    .iter()
                    .rev()
                    .map(|(name, values)| {
                        let value = &values[rest % values.len()];
                        rest /= values.len();
                        (name.as_str(), value)
                    })
                    .collect();
                member.reverse();
                member
            }
        }
    }
}

impl Plan {
    /// How field `name` varies, in the form's syntax (`20..40`, `0..90:10`, `1,5,10`), so that
    /// the form posts this plan again; None when it does not vary.
    pub fn field_text(&self, name: &str) -> Option<String> {
        let (_, values) = self.varied.iter().find(|(n, _)| n == name)?;
        let integers: Option<Vec<i64>> = values
            .iter()
            .map(|v| match v {
                FieldValue::Integer(x) => Some(*x),
                _ => None,
            })
            .collect();
        if let Some([first, second, .., last]) = integers.as_deref()
            && values.len() > 2
        {
            let step = second - first;
            let even = step > 0
                && integers
                    .as_deref()
                    .is_some_and(|xs| xs.windows(2).all(|w| w[1] - w[0] == step));
            if even {
                return Some(match step {
                    1 => format!("{first}..{last}"),
                    _ => format!("{first}..{last}:{step}"),
                });
            }
        }
        let texts: Vec<String> = values.iter().map(value_text).collect();
        Some(texts.join(","))
    }

    /// The varied fields in brief: `n=20..40`, `n=0..90:10`, up to three values listed
    /// (`n=1,5,10`), or the first two and the last of more (`n=1,2,…,64`).
    pub fn brief(&self) -> String {
        self.varied
            .iter()
            .map(|(name, values)| {
                let text = self.field_text(name).unwrap_or_default();
                match values.as_slice() {
                    [first, second, _, .., last] if text.contains(',') => format!(
                        "{name}={},{},…,{}",
                        value_text(first),
                        value_text(second),
                        value_text(last)
                    ),
                    _ => format!("{name}={text}"),
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A batch's counts as a person reads them: `12 of 21 done, 1 failed`; `ended` counts its
/// members by outcome, in [`Outcome::ALL`]'s order.
pub fn counts_text(ended: [u64; 4], members: u64) -> String {
    let mut text = format!("{} of {members} done", ended.iter().sum::<u64>());
    for (n, outcome) in ended.into_iter().zip(Outcome::ALL).skip(1) {
        if n > 0 {
            text.push_str(&format!(", {n} {}", outcome.name()));
        }
    }
    text
}

/// A member's varied values in brief: `n=20, size=64`.
pub fn brief(member: &[(&str, &FieldValue)]) -> String {
    member
        .iter()
        .map(|(name, value)| format!("{name}={}", value_text(value)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A value as the form would show it.
pub fn value_text(value: &FieldValue) -> String {
    match value {
        FieldValue::Integer(x) => x.to_string(),
        FieldValue::Number(x) => number_text(*x),
        FieldValue::Text(text) => text.clone(),
        FieldValue::Toggle(on) => if *on { "on" } else { "off" }.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn integer(name: &str, min: i64, max: i64) -> Field {
        Field {
            name: name.into(),
            label: name.into(),
            help: None,
            kind: FieldKind::Integer {
                min: Some(min),
                max: Some(max),
            },
            required: true,
        }
    }

    fn choice(name: &str) -> Field {
        Field {
            name: name.into(),
            label: name.into(),
            help: None,
            kind: FieldKind::Choice {
                options: vec![("a".into(), "A".into()), ("b".into(), "B".into())],
            },
            required: true,
        }
    }

    fn ints(plan: &Plan, field: usize) -> Vec<i64> {
        plan.varied[field]
            .1
            .iter()
            .map(|v| match v {
                FieldValue::Integer(x) => *x,
                other => panic!("not an integer: {other:?}"),
            })
            .collect()
    }

    fn plan(fields: &[Field], vary: &[(&str, &str)], combine: Combine) -> Result<Plan, SpecError> {
        let vary: Vec<(String, Vary)> = vary
            .iter()
            .map(|(name, text)| ((*name).to_owned(), Vary::parse(text).unwrap().unwrap()))
            .collect();
        Plan::new(fields, &vary, combine, 10_000)
    }

    #[test]
    fn the_command_lines_syntax_reads_ranges_steps_counts_scales_and_lists() {
        let range = |from, to, step, count, scale| {
            Some(Vary::Range(Range {
                from,
                to,
                step,
                count,
                scale,
            }))
        };
        assert_eq!(
            Vary::parse("20..40").unwrap(),
            range(20.0, 40.0, None, None, Scale::Linear)
        );
        assert_eq!(
            Vary::parse(" -5..5:2.5 ").unwrap(),
            range(-5.0, 5.0, Some(2.5), None, Scale::Linear)
        );
        assert_eq!(
            Vary::parse("1..1000*4").unwrap(),
            range(1.0, 1000.0, None, Some(4), Scale::Linear)
        );
        assert_eq!(
            Vary::parse("1..1000*4:log").unwrap(),
            range(1.0, 1000.0, None, Some(4), Scale::Log)
        );
        assert_eq!(
            Vary::parse("1,5, 10").unwrap(),
            Some(Vary::List(vec![
                Scalar::Text("1".into()),
                Scalar::Text("5".into()),
                Scalar::Text("10".into())
            ]))
        );
        assert_eq!(Vary::parse("20").unwrap(), None);
        assert!(Vary::parse("a..b").unwrap_err().contains("not a number"));
        assert!(Vary::parse("1..9*x").unwrap_err().contains("whole number"));
        assert!(
            Vary::parse("1..9*3:ln")
                .unwrap_err()
                .contains("not a scale")
        );
        assert!(Vary::parse("1..").unwrap_err().contains("the end"));
    }

    #[test]
    fn ranges_give_their_values_on_whole_number_fields() {
        let n = [integer("n", 0, 1_000_000)];
        assert_eq!(
            ints(&plan(&n, &[("n", "20..40")], Combine::Grid).unwrap(), 0),
            (20..=40).collect::<Vec<_>>()
        );
        assert_eq!(
            ints(&plan(&n, &[("n", "40..20:5")], Combine::Grid).unwrap(), 0),
            vec![40, 35, 30, 25, 20]
        );
        assert_eq!(
            ints(&plan(&n, &[("n", "0..10:3")], Combine::Grid).unwrap(), 0),
            vec![0, 3, 6, 9]
        );
        assert_eq!(
            ints(
                &plan(&n, &[("n", "1..1000*4:log")], Combine::Grid).unwrap(),
                0
            ),
            vec![1, 10, 100, 1000]
        );
        // Rounded onto the same whole numbers at the low end: each kept once.
        assert_eq!(
            ints(&plan(&n, &[("n", "1..4*7:log")], Combine::Grid).unwrap(), 0),
            vec![1, 2, 3, 4]
        );
        assert_eq!(
            ints(&plan(&n, &[("n", "0..100*5")], Combine::Grid).unwrap(), 0),
            vec![0, 25, 50, 75, 100]
        );
    }

    #[test]
    fn grids_combine_every_value_and_zips_pair_them() {
        let fields = [integer("a", 0, 9), choice("c")];
        let grid = plan(&fields, &[("c", "a,b"), ("a", "1..3")], Combine::Grid).unwrap();
        assert_eq!(grid.len(), 6);
        let briefs: Vec<String> = (0..grid.len()).map(|i| brief(&grid.member(i))).collect();
        assert_eq!(
            briefs,
            [
                "a=1, c=a", "a=1, c=b", "a=2, c=a", "a=2, c=b", "a=3, c=a", "a=3, c=b"
            ]
        );
        let zip = plan(&fields, &[("a", "1..2"), ("c", "a,b")], Combine::Zip).unwrap();
        assert_eq!(zip.len(), 2);
        assert_eq!(brief(&zip.member(1)), "a=2, c=b");
        let uneven = plan(&fields, &[("a", "1..3"), ("c", "a,b")], Combine::Zip).unwrap_err();
        assert_eq!(uneven.field.as_deref(), Some("c"));
        assert!(uneven.message.contains("a has 3, c has 2"), "{uneven}");
    }

    #[test]
    fn refusals_name_the_field_and_say_the_count_past_the_cap() {
        let n = [integer("n", 0, 100)];
        let over = plan(&n, &[("n", "0..10000000000")], Combine::Grid).unwrap_err();
        assert_eq!(
            over.message,
            "the batch would have 10000000001 members: at most 10000 are allowed"
        );
        let fields = [integer("a", 0, 1_000_000), integer("b", 0, 1_000_000)];
        let grid = plan(&fields, &[("a", "0..999"), ("b", "0..99")], Combine::Grid);
        assert!(grid.unwrap_err().message.contains("100000 members"));
        let huge = Plan::new(
            &fields,
            &[
                ("a".into(), Vary::parse("0..1e300").unwrap().unwrap()),
                ("b".into(), Vary::parse("0..1e300").unwrap().unwrap()),
            ],
            Combine::Grid,
            10_000,
        );
        assert!(
            huge.unwrap_err()
                .message
                .contains("more than 18 quintillion")
        );
        let out = plan(&n, &[("n", "90..110")], Combine::Grid).unwrap_err();
        assert_eq!(out.field.as_deref(), Some("n"));
        assert!(out.message.contains("at most 100"), "{out}");
        let unknown = plan(&n, &[("m", "1..2")], Combine::Grid).unwrap_err();
        assert!(unknown.message.contains("no field \"m\""), "{unknown}");
        let text = plan(&[choice("c")], &[("c", "1..2")], Combine::Grid).unwrap_err();
        assert!(text.message.contains("vary it by a list"), "{text}");
        let bad_choice = plan(&[choice("c")], &[("c", "a,z")], Combine::Grid).unwrap_err();
        assert!(bad_choice.message.contains("one of a, b"), "{bad_choice}");
        for (spec, words) in [
            ("1..9:0", "above 0"),
            ("0..9*3:log", "above 0 at both ends"),
            ("1..9*0", "count of at least 1"),
        ] {
            let error = plan(&n, &[("n", spec)], Combine::Grid).unwrap_err();
            assert!(error.message.contains(words), "{spec}: {error}");
        }
        assert!(Plan::new(&n, &[], Combine::Grid, 10).is_err());
    }

    #[test]
    fn json_specifications_read_lists_and_ranges() {
        let list: Vary = serde_json::from_str(r#"[1, 2.0, "3"]"#).unwrap();
        let range: Vary = serde_json::from_str(r#"{"from": 1, "to": 9, "count": 3}"#).unwrap();
        let n = [integer("n", 0, 100)];
        let plan = Plan::new(
            &n,
            &[("n".into(), list), ("m".into(), range.clone())][..1],
            Combine::Grid,
            10,
        )
        .unwrap();
        assert_eq!(ints(&plan, 0), vec![1, 2, 3]);
        let plan = Plan::new(&n, &[("n".into(), range)], Combine::Grid, 10).unwrap();
        assert_eq!(ints(&plan, 0), vec![1, 5, 9]);
        let fractional: Vary = serde_json::from_str("[1.5]").unwrap();
        assert!(Plan::new(&n, &[("n".into(), fractional)], Combine::Grid, 10).is_err());
        assert!(serde_json::from_str::<Vary>(r#"{"from": 1, "to": 2, "by": 1}"#).is_err());
    }

    #[test]
    fn a_plan_and_its_counts_read_briefly() {
        let fields = [integer("n", 0, 100), integer("m", 0, 100)];
        let vary = [
            ("n".to_owned(), Vary::parse("20..40").unwrap().unwrap()),
            ("m".to_owned(), Vary::parse("1,5").unwrap().unwrap()),
        ];
        let plan = Plan::new(&fields, &vary, Combine::Grid, 100).unwrap();
        assert_eq!(plan.brief(), "n=20..40, m=1,5");
        let uneven = [("n".to_owned(), Vary::parse("1,2,4,8").unwrap().unwrap())];
        let plan = Plan::new(&fields, &uneven, Combine::Grid, 100).unwrap();
        assert_eq!(plan.brief(), "n=1,2,…,8");
        assert_eq!(counts_text([12, 0, 0, 0], 21), "12 of 21 done");
        assert_eq!(
            counts_text([10, 1, 2, 0], 21),
            "13 of 21 done, 1 failed, 2 cancelled"
        );
    }

    #[test]
    fn a_plan_reads_back_in_the_forms_syntax() {
        let n = [integer("n", 0, 100)];
        for (typed, back) in [
            ("20..40", "20..40"),
            ("0..90:10", "0..90:10"),
            ("1,5,10", "1,5,10"),
            ("3,4", "3,4"),
        ] {
            let planned = plan(&n, &[("n", typed)], Combine::Grid).unwrap();
            assert_eq!(planned.field_text("n").as_deref(), Some(back), "{typed}");
            let again = plan(&n, &[("n", back)], Combine::Grid).unwrap();
            assert_eq!(again, planned, "{typed} posts the same plan again");
        }
        let plan = plan(&n, &[("n", "1..3")], Combine::Grid).unwrap();
        assert_eq!(plan.field_text("m"), None);
    }
}
