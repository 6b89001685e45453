//! The history's limits and its links: what `/history`'s server function enforces and how a page
//! links to the next.

use model::page::HistoryQuery;

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
    ] {
        if let Some(value) = value {
            encoded.append_pair(name, value);
        }
    }
    encoded.append_pair("before", &before.to_string());
    format!("/history?{}", encoded.finish())
}
