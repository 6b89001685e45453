//! What the dashboard viewer page reads on the server: the views the dashboard lists (a real
//! Dask dashboard's too), and the line about the task database.

use std::time::Duration;

/// The views a dashboard lists in `/individual-plots.json`, or None when it does not answer
/// with such a list (then the viewer uses the built-in 27).
pub async fn fetch_views(base: &str) -> Option<Vec<(String, String)>> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .ok()?;
    let response = client
        .get(format!("{base}individual-plots.json"))
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    parse_plots(&response.text().await.ok()?)
}

/// `{"Title": "/individual-name", ...}` → [(name, individual-name)], keeping only paths that
/// are safe to append to the dashboard URL.
pub fn parse_plots(json: &str) -> Option<Vec<(String, String)>> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json).ok()?;
    let mut views: Vec<(String, String)> = map
        .values()
        .filter_map(|v| v.as_str())
        .filter_map(|p| p.strip_prefix('/'))
        .filter(|p| {
            p.starts_with("individual-")
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
        .map(|p| (p.trim_start_matches("individual-").to_owned(), p.to_owned()))
        .collect();
    views.sort();
    views.dedup();
    (!views.is_empty()).then_some(views)
}

/// `1.2 MB in use · 12,345 tasks of 17 owners · ended tasks kept 30 days, at most 100,000 per
/// owner · 12 pruned since start`.
pub fn database_line(store: &crate::ssr::store::Store) -> String {
    let (bytes, tasks, owners, pruned) = store.figures().read();
    let retention = store.retention();
    let age = match retention.max_age {
        None => "kept for ever".to_owned(),
        Some(age) => {
            let days = age.as_secs_f64() / 86_400.0;
            format!("kept {}", model::count(days.round() as u64, "day", "days"))
        }
    };
    format!(
        "{:.1} MB in use · {} of {} · ended tasks {age}, at most {} per owner · {} pruned since start",
        bytes as f64 / 1e6,
        model::count(tasks, "task", "tasks"),
        model::count(owners, "owner", "owners"),
        retention.per_owner,
        pruned,
    )
}

#[cfg(test)]
mod tests {
    use super::parse_plots;

    #[test]
    fn dask_lists_are_read_and_unsafe_paths_dropped() {
        let json = r#"{"Task Stream": "/individual-task-stream", "CPU": "/individual-cpu",
            "Cluster Map": "/statics/individual-cluster-map.html",
            "Evil": "/individual-x\"><script>", "Other": "javascript:alert(1)"}"#;
        assert_eq!(
            parse_plots(json).unwrap(),
            [
                ("cpu".to_owned(), "individual-cpu".to_owned()),
                (
                    "task-stream".to_owned(),
                    "individual-task-stream".to_owned()
                )
            ]
        );
        assert_eq!(parse_plots("{}"), None);
        assert_eq!(parse_plots("not json"), None);
    }
}
