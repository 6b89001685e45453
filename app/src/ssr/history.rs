//! The history's limits and its links: what `/history`'s server function enforces and how a page
//! links to the next.

use model::page::{HistoryQuery, OUTCOME_FILTERS, Outcome};

use crate::AppError;
use crate::ssr::store::TaskFilter;

/// Tasks a history page lists.
pub const HISTORY_PAGE: usize = 50;

/// Longest text the history searches for.
pub const SEARCH_MAX: usize = 200;

/// The longest type name the history's filter takes (no task type's name comes near it).
pub const TYPE_NAME_MAX: usize = 64;

/// `/history?…&before=ID`: the page after the one that ended with task `before`.
pub fn history_href(query: &HistoryQuery, before: u64) -> String {
    let mut encoded = form_urlencoded::Serializer::new(String::new());
    for (name, value) in [
        ("type", &query.kind),
        ("outcome", &query.outcome),
        ("q", &query.text),
        ("batch", &query.batch),
    ] {
        if let Some(value) = value {
            encoded.append_pair(name, value);
        }
    }
    encoded.append_pair("before", &before.to_string());
    format!("/history?{}", encoded.finish())
}

/// The record's filter for `query`, or why the query means nothing. A type this build no longer
/// runs stays findable (as through the API): any name is a filter, and one no task ever had
/// finds nothing.
pub fn filter(query: &HistoryQuery) -> Result<TaskFilter, AppError> {
    if query
        .kind
        .as_ref()
        .is_some_and(|kind| kind.len() > TYPE_NAME_MAX)
    {
        return Err(AppError::invalid(format!(
            "a task type's name is at most {TYPE_NAME_MAX} characters"
        )));
    }
    let ended = match query.outcome.as_deref() {
        None => None,
        Some("unfinished") => Some(None),
        Some(name) => Some(Some(Outcome::from_name(name).ok_or_else(|| {
            let names: Vec<&str> = OUTCOME_FILTERS.iter().map(|(v, _)| *v).collect();
            AppError::invalid(format!(
                "there is no outcome {name:?}: choose one of {}",
                names.join(", ")
            ))
        })?)),
    };
    if query
        .text
        .as_ref()
        .is_some_and(|text| text.chars().count() > SEARCH_MAX)
    {
        return Err(AppError::invalid(format!(
            "search for at most {SEARCH_MAX} characters"
        )));
    }
    let before = match query.before.as_deref() {
        None => None,
        Some(raw) => Some(raw.parse::<u64>().map_err(|_| {
            AppError::invalid(format!(
                "{raw:?} is not a page of your history: follow the \"Older tasks\" link"
            ))
        })?),
    };
    let batch = match query.batch.as_deref() {
        None => None,
        Some(raw) => Some(raw.parse::<u64>().map_err(|_| {
            AppError::invalid(format!(
                "{raw:?} is not a batch: batches are numbered from 1"
            ))
        })?),
    };
    // Unfiltered, the history lists a batch as one row; asked for, its members match too.
    let fold_batches =
        batch.is_none() && query.kind.is_none() && query.outcome.is_none() && query.text.is_none();
    Ok(TaskFilter {
        batch,
        fold_batches,
        kind: query.kind.clone(),
        ended,
        before,
        search: query.text.clone(),
        limit: HISTORY_PAGE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(kind: Option<&str>, outcome: Option<&str>, text: Option<&str>) -> HistoryQuery {
        HistoryQuery {
            kind: kind.map(str::to_owned),
            outcome: outcome.map(str::to_owned),
            text: text.map(str::to_owned),
            ..HistoryQuery::default()
        }
    }

    #[test]
    fn a_batch_is_a_filter_by_its_number() {
        let batch = |raw: &str| {
            filter(&HistoryQuery {
                batch: Some(raw.to_owned()),
                ..HistoryQuery::default()
            })
        };
        assert_eq!(batch("7").unwrap().batch, Some(7));
        assert!(
            batch("x")
                .unwrap_err()
                .to_string()
                .contains("is not a batch")
        );
        let href = history_href(
            &HistoryQuery {
                batch: Some("7".into()),
                ..HistoryQuery::default()
            },
            42,
        );
        assert_eq!(href, "/history?batch=7&before=42");
    }

    #[test]
    fn any_type_name_is_a_filter_and_each_refusal_says_why() {
        let found = filter(&query(Some("retired"), Some("unfinished"), Some("abc"))).unwrap();
        assert_eq!(found.kind.as_deref(), Some("retired"));
        assert_eq!(found.ended, Some(None));
        assert_eq!(found.limit, HISTORY_PAGE);
        let long = "x".repeat(TYPE_NAME_MAX + 1);
        for (bad, says) in [
            (query(Some(&long), None, None), "at most 64 characters"),
            (
                query(None, Some("won"), None),
                "there is no outcome \"won\"",
            ),
            (
                query(None, None, Some(&"y".repeat(201))),
                "at most 200 characters",
            ),
        ] {
            let refused = filter(&bad).unwrap_err().to_string();
            assert!(refused.contains(says), "{refused}");
        }
        let mut paged = query(None, None, None);
        paged.before = Some("x".into());
        assert!(filter(&paged).is_err());
    }
}
