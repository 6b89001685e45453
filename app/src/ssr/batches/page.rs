//! The batch page's content: its counts, a page of its members' rows sorted and filtered as
//! asked, and an SVG plot of an output column against a varied input, drawn here on the
//! server (the page's bundle carries no chart code).

use std::cmp::Ordering;

use serde_json::Value;

use cluster::TaskType;
use std::collections::BTreeMap;

use model::batch::{Combine, counts_text};
use model::form::FieldError;
use model::form::number_text;
use model::page::{
    BATCH_PAGE_ROWS, BatchLine, BatchQuery, BatchRow, BatchView, OUTCOME_FILTERS, RECENT_BATCHES,
    SweepForm,
};

use super::BatchSpec;
use super::results::Columns;
use crate::AppError;
use crate::ssr::api::BatchDoc;
use crate::ssr::store::BatchRecord;
use crate::ssr::{AppState, SessionId};

/// The columns every table has before the input's: index, task, outcome.
const INPUTS_FROM: usize = 3;

/// `owner`'s batch `id` as its page shows it.
pub async fn view(
    state: &AppState,
    owner: &SessionId,
    id: u64,
    query: BatchQuery,
) -> Result<BatchView, AppError> {
    let record = crate::ssr::api::owned_batch(state, owner, id).await?;
    let doc = BatchDoc::of(state, owner, &record);
    let kind = crate::ssr::runner::task_type(state, &record.task_type)?;
    let columns = Columns::of(&kind);
    let names = columns.names().to_vec();
    let sort = match query.sort.as_deref().filter(|s| !s.is_empty()) {
        None => 0,
        Some(name) => names.iter().position(|c| c == name).ok_or_else(|| {
            AppError::invalid(format!(
                "there is no column {name:?} to sort by: the columns are {}",
                names.join(", ")
            ))
        })?,
    };
    let descending = match query.order.as_deref() {
        None | Some("" | "asc") => false,
        Some("desc") => true,
        Some(other) => {
            return Err(AppError::invalid(format!(
                "order is asc or desc (got {other:?})"
            )));
        }
    };
    let outcome = match query.outcome.as_deref().filter(|o| !o.is_empty()) {
        None => None,
        Some(o) if OUTCOME_FILTERS.iter().any(|(name, _)| *name == o) => Some(o.to_owned()),
        Some(other) => {
            return Err(AppError::invalid(format!(
                "there is no outcome {other:?} to filter by"
            )));
        }
    };
    let (members, _) = state
        .sessions
        .store()
        .members(record.id, None, record.members as usize)
        .await?;
    let rows: Vec<(u64, bool, Vec<Value>)> = members
        .iter()
        .map(|m| {
            let picture = m
                .task
                .output_media
                .as_deref()
                .is_some_and(|media| media.starts_with("image/"));
            (m.task.id, picture, columns.row(m))
        })
        .collect();
    let plot = plot(&names, kind.fields().len(), &rows);
    let mut kept: Vec<&(u64, bool, Vec<Value>)> = rows
        .iter()
        .filter(|(_, _, row)| outcome.as_deref().is_none_or(|o| row[2] == o))
        .collect();
    kept.sort_by(|a, b| {
        let order = compare(&a.2[sort], &b.2[sort]);
        if descending { order.reverse() } else { order }
    });
    let shown = kept.len() as u64;
    let pages = shown.div_ceil(BATCH_PAGE_ROWS as u64).max(1);
    let page = match query.page.as_deref().filter(|p| !p.is_empty()) {
        None => 1,
        Some(page) => page
            .parse::<u64>()
            .ok()
            .filter(|p| (1..=pages).contains(p))
            .ok_or_else(|| {
                AppError::invalid(format!("page is from 1 to {pages} (got {page:?})"))
            })?,
    };
    let rows = kept
        .into_iter()
        .skip((page - 1) as usize * BATCH_PAGE_ROWS)
        .take(BATCH_PAGE_ROWS)
        .map(|(task, picture, row)| BatchRow {
            task: *task,
            cells: row.iter().map(cell).collect(),
            picture: *picture,
        })
        .collect();
    let counts = [
        ("waiting", doc.counts.waiting),
        ("queued", doc.counts.queued),
        ("running", doc.counts.running),
        ("finished", doc.counts.finished),
        ("failed", doc.counts.failed),
        ("cancelled", doc.counts.cancelled),
        ("lost", doc.counts.lost),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .map(|(label, n)| (label.to_owned(), n))
    .collect();
    Ok(BatchView {
        id,
        task: kind.name().to_owned(),
        title: kind.title().to_owned(),
        state: doc.state.name().to_owned(),
        members: doc.members,
        counts,
        progress: doc.progress,
        elapsed_ms: doc.elapsed_ms,
        remaining_ms: doc.remaining_ms,
        columns: names,
        query: BatchQuery {
            sort: Some(columns.names()[sort].clone()),
            order: Some(if descending { "desc" } else { "asc" }.to_owned()),
            outcome,
            page: Some(page.to_string()),
        },
        rows,
        shown,
        page,
        pages,
        plot,
        pictures: kind.has_binary_output(),
        editable: BatchSpec::varies(&record.spec),
    })
}

/// The sweep form of `kind` filled in with `owner`'s batch `raw` (a query parameter), to edit
/// and submit again.
pub async fn sweep_form(
    state: &AppState,
    owner: &SessionId,
    kind: &TaskType,
    raw: &str,
) -> Result<SweepForm, AppError> {
    let id = raw.parse::<u64>().map_err(|_| {
        AppError::invalid(format!(
            "{raw:?} is not a batch: batches are numbered from 1"
        ))
    })?;
    let record = crate::ssr::api::owned_batch(state, owner, id).await?;
    if record.task_type != kind.name() {
        return Err(AppError::invalid(format!(
            "batch {id} runs {}, not {}: open it from its own page",
            record.task_type,
            kind.name()
        )));
    }
    let Some(BatchSpec::Vary { input, plan }) = serde_json::from_value(record.spec).ok() else {
        return Err(AppError::invalid(format!(
            "batch {id} lists its inputs one by one: the form cannot show it (submit it again \
             through the API)"
        )));
    };
    let form = kind.form(Some(&input));
    Ok(SweepForm {
        batch: Some(id),
        values: form
            .fields
            .iter()
            .zip(form.values)
            .map(|(field, value)| plan.field_text(&field.name).unwrap_or(value))
            .collect(),
        zip: plan.combine == model::batch::Combine::Zip,
        reuse: record.reuse,
        ..SweepForm::default()
    })
}

/// The sweep form of `kind` as sent to be counted (`count=1` and the form's fields, by GET):
/// its members counted and checked as [`Batches::submit`](super::Batches::submit) would, or
/// the refusal a submission would get.
pub fn counted(state: &AppState, kind: &TaskType, sent: &BTreeMap<String, String>) -> SweepForm {
    let form = kind.form(None);
    let values: Vec<String> = form
        .fields
        .iter()
        .zip(form.values)
        .map(|(field, default)| sent.get(&field.name).cloned().unwrap_or(default))
        .collect();
    let posted: Vec<(&str, &str)> = form
        .fields
        .iter()
        .zip(&values)
        .map(|(field, value)| (field.name.as_str(), value.as_str()))
        .collect();
    let zip = sent.get("combine").is_some_and(|c| c == "zip");
    let combine = if zip { Combine::Zip } else { Combine::Grid };
    let cap = state.batches.config().max_members;
    let checked = BatchSpec::from_form(kind, &posted, combine, cap).and_then(|spec| {
        spec.check(kind)?;
        Ok(spec.len() as u64)
    });
    let (count, error) = match checked {
        Ok(count) => (Some(count), None),
        Err(AppError::InvalidInput(error)) => (None, Some(error)),
        Err(other) => (None, Some(FieldError::whole(other.to_string()))),
    };
    SweepForm {
        batch: None,
        values,
        zip,
        reuse: sent.get("reuse").is_some_and(|r| r == "on"),
        count,
        error,
    }
}

/// `owner`'s latest batches, one line each.
pub async fn recent(state: &AppState, owner: &SessionId) -> Result<Vec<BatchLine>, AppError> {
    let (records, _) = state
        .sessions
        .store()
        .batches(&owner.0, None, RECENT_BATCHES)
        .await?;
    Ok(records
        .iter()
        .map(|record| line(state, owner, record))
        .collect())
}

/// `owner`'s batch `record` in one line: `Batch 7: Square × 21`, its state and counts.
pub fn line(state: &AppState, owner: &SessionId, record: &BatchRecord) -> BatchLine {
    let doc = BatchDoc::of(state, owner, record);
    let title = state
        .cluster
        .registry()
        .and_then(|r| r.get(&record.task_type))
        .map_or(record.task_type.as_str(), |kind| kind.title());
    let c = &doc.counts;
    BatchLine {
        id: record.id,
        title: format!("Batch {}: {title} × {}", record.id, doc.members),
        state: doc.state.name().to_owned(),
        counts: counts_text([c.finished, c.failed, c.cancelled, c.lost], doc.members),
    }
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        Value::Number(x) => match x.as_f64() {
            Some(x) if x.fract() != 0.0 => number_text(x),
            _ => x.to_string(),
        },
        other => other.to_string(),
    }
}

/// Numbers by value, text by text; empty cells last either way up.
fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Greater,
        (_, Value::Null) => Ordering::Less,
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        _ => cell(a).cmp(&cell(b)),
    }
}

/// Plot size, and the room left for the axes' labels.
const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 80.0;
const BOTTOM: f64 = 40.0;
const PAD: f64 = 12.0;

/// An axis: its column, its range, and whether it is drawn on a logarithmic scale (values
/// all above 0 and spanning more than a thousandfold).
struct Axis {
    name: String,
    min: f64,
    max: f64,
    log: bool,
}

impl Axis {
    fn of(name: &str, values: impl Iterator<Item = f64> + Clone) -> Option<Self> {
        let min = values.clone().fold(f64::INFINITY, f64::min);
        let max = values.fold(f64::NEG_INFINITY, f64::max);
        if !min.is_finite() || !max.is_finite() {
            return None;
        }
        Some(Self {
            name: name.to_owned(),
            min,
            max,
            log: min > 0.0 && max / min > 1e3,
        })
    }

    /// Where `x` falls, from 0 to 1.
    fn at(&self, x: f64) -> f64 {
        let (x, min, max) = if self.log {
            (x.ln(), self.min.ln(), self.max.ln())
        } else {
            (x, self.min, self.max)
        };
        if max > min {
            (x - min) / (max - min)
        } else {
            0.5
        }
    }
}

/// The first output column with numbers against the first input column whose numbers vary,
/// over the finished members; None when the batch has no such pair.
fn plot(names: &[String], inputs: usize, rows: &[(u64, bool, Vec<Value>)]) -> Option<String> {
    let finished: Vec<&Vec<Value>> = rows
        .iter()
        .map(|(_, _, row)| row)
        .filter(|row| row[2] == "finished")
        .collect();
    let numbers = |column: usize| -> Option<Vec<f64>> {
        finished.iter().map(|row| row[column].as_f64()).collect()
    };
    let outputs = INPUTS_FROM + inputs..names.len() - super::results::TRAILING;
    let x = (INPUTS_FROM..INPUTS_FROM + inputs).find(|&c| {
        numbers(c).is_some_and(|v| v.iter().any(|x| v.first().is_some_and(|first| x != first)))
    })?;
    let y = outputs.into_iter().find(|&c| numbers(c).is_some())?;
    let (xs, ys) = (numbers(x)?, numbers(y)?);
    let x_axis = Axis::of(&names[x], xs.iter().copied())?;
    let y_axis = Axis::of(&names[y], ys.iter().copied())?;
    let (plot_w, plot_h) = (WIDTH - LEFT - PAD, HEIGHT - BOTTOM - PAD);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" \
         class=\"batch-plot\" role=\"img\" aria-label=\"{} against {}, {} points\">",
        escape(&y_axis.name),
        escape(&x_axis.name),
        xs.len()
    );
    svg.push_str(&format!(
        "<path class=\"axes\" d=\"M{LEFT} {PAD}V{b}H{r}\" fill=\"none\" stroke=\"currentColor\"/>",
        b = HEIGHT - BOTTOM,
        r = WIDTH - PAD
    ));
    for (value, at) in [(x_axis.min, 0.0), (x_axis.max, 1.0)] {
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            LEFT + at * plot_w,
            HEIGHT - BOTTOM + 16.0,
            number_text(value)
        ));
    }
    for (value, at) in [(y_axis.min, 0.0), (y_axis.max, 1.0)] {
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            LEFT - 6.0,
            PAD + (1.0 - at) * plot_h + 4.0,
            number_text(value)
        ));
    }
    svg.push_str(&format!(
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}{}</text>",
        LEFT + plot_w / 2.0,
        HEIGHT - 6.0,
        escape(&x_axis.name),
        if x_axis.log { " (log)" } else { "" }
    ));
    svg.push_str(&format!(
        "<text x=\"{LEFT}\" y=\"{:.1}\" dx=\"6\">{}{}</text>",
        PAD + 10.0,
        escape(&y_axis.name),
        if y_axis.log { " (log)" } else { "" }
    ));
    for (x, y) in xs.iter().zip(&ys) {
        svg.push_str(&format!(
            "<circle class=\"point\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\"><title>{}={}: {}</title></circle>",
            LEFT + x_axis.at(*x) * plot_w,
            PAD + (1.0 - y_axis.at(*y)) * plot_h,
            escape(&x_axis.name),
            number_text(*x),
            number_text(*y)
        ));
    }
    svg.push_str("</svg>");
    Some(svg)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(n: u64, outcome: &str, output: Value) -> (u64, bool, Vec<Value>) {
        (
            n,
            false,
            vec![
                json!(n),
                json!(n),
                json!(outcome),
                json!(n),
                output,
                json!(0.1),
                Value::Null,
            ],
        )
    }

    #[test]
    fn the_plot_has_a_point_per_finished_member_and_goes_logarithmic_over_large_spans() {
        let names: Vec<String> = [
            "index",
            "task",
            "outcome",
            "n",
            "output",
            "seconds",
            "reused_from",
        ]
        .map(str::to_owned)
        .to_vec();
        let rows: Vec<_> = (1..=20)
            .map(|n| row(n, "finished", json!(2u64.pow(n as u32))))
            .chain([row(21, "failed", Value::Null)])
            .collect();
        let svg = plot(&names, 1, &rows).unwrap();
        assert_eq!(svg.matches("<circle").count(), 20);
        assert!(svg.contains("output (log)"), "{svg}");
        assert!(svg.contains("aria-label=\"output against n, 20 points\""));
        // Nothing varies: no plot.
        let same: Vec<_> = (0..3).map(|_| row(1, "finished", json!(1))).collect();
        assert!(plot(&names, 1, &same).is_none());
    }

    #[test]
    fn empty_cells_sort_last_and_numbers_by_value() {
        let mut values = [json!(10), Value::Null, json!(9), json!(100)];
        values.sort_by(compare);
        assert_eq!(values, [json!(9), json!(10), json!(100), Value::Null]);
    }
}
