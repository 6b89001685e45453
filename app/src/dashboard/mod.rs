//! The cluster dashboard: the seed's 27 individual views (same paths as Dask's), the `/status`
//! overview built from them, and the data they all draw from. Each view is a small component
//! over the shared [`model::frame::DashboardFrame`] and the chart helpers in [`charts`].

pub mod charts;
pub mod pages;
pub mod views;

use model::View;

/// `/individual-plots.json` as Dask serves it: `{"Title": "/individual-name", ...}`.
pub fn plots_json() -> serde_json::Map<String, serde_json::Value> {
    View::ALL
        .iter()
        .map(|view| (view.title().to_owned(), format!("/{}", view.path()).into()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plots_json_lists_all_27_with_dask_titles() {
        let json = plots_json();
        assert_eq!(json.len(), 27);
        assert_eq!(json["Task Stream"], "/individual-task-stream");
        assert_eq!(json["CPU"], "/individual-cpu");
        assert_eq!(
            json["Workers CPU Timeseries"],
            "/individual-workers-cpu-timeseries"
        );
    }
}
