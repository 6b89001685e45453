//! The task page's wire types: what a queued task and a terminal line look like, the live
//! updates a page receives on its one stream, and what the page is first rendered from.

use serde::{Deserialize, Serialize};

use crate::form::{FieldError, TaskForm, TaskTypeInfo};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    Queued,
    Running,
}

impl TaskStatus {
    /// Its serde name, for the row's `data-status`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
        }
    }
}

/// One of a session's unfinished tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueuedTask {
    pub id: u64,
    /// Its task type's name.
    pub task: String,
    /// Its input in brief: `20`, or `n=1000, text="abc…"`.
    pub args: String,
    pub status: TaskStatus,
    /// From 0.0 to 1.0.
    pub progress: f64,
    /// Server clock, ms since the Unix epoch.
    pub submitted_at_ms: u64,
    /// A batch's one row, not a task: `id` is the batch's, `args` its specification in brief,
    /// and this its members' counts (`12 of 21 done, 1 failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
}

impl QueuedTask {
    /// How the queue names it: `primes(1000000)`, `hash-chain(text="abc", rounds=10)`,
    /// `batch 7 square(n=20..40)`.
    pub fn call(&self) -> String {
        let call = format!("{}({})", self.task, self.args);
        match self.batch {
            Some(_) => format!("batch {} {call}", self.id),
            None => call,
        }
    }

    /// Whether `line` reports on it.
    pub fn ends_with(&self, line: &TerminalLine) -> bool {
        line.task == self.id && line.batch == self.batch.is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Finished,
    Failed,
    Cancelled,
    Lost,
}

impl Outcome {
    pub const ALL: [Self; 4] = [Self::Finished, Self::Failed, Self::Cancelled, Self::Lost];

    /// The outcome called `name` (its serde name), if there is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.name() == name)
    }

    /// Its serde name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Finished => "finished",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Lost => "lost",
        }
    }
}

/// One line of the results terminal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TerminalLine {
    /// The task it reports on.
    pub task: u64,
    pub outcome: Outcome,
    pub text: String,
    /// Its output has a picture (`/tasks/{task}/output`), shown under the line.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub image: bool,
    /// It reports on a batch, whose id `task` is.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub batch: bool,
}

impl TerminalLine {
    /// The page it opens: its task's detail, or its batch's page.
    pub fn href(&self) -> String {
        if self.batch {
            format!("/batches/{}", self.task)
        } else {
            format!("/tasks/{}", self.task)
        }
    }
}

/// What a task page receives on its one live stream: `{"snapshot": {...}}`, `{"task": {...}}`,
/// `{"done": {...}}` or `"restarting"`. Externally tagged: an internal `"type"` tag would make
/// the browser's bundle carry serde's buffering deserializer, about 8 KB gzipped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PageUpdate {
    /// The whole state: sent first on every (re)connection and after the page fell behind.
    /// It is the truth: the server keeps it across restarts.
    Snapshot {
        server_now_ms: u64,
        tasks: Vec<QueuedTask>,
        lines: Vec<TerminalLine>,
    },
    /// A task was queued, started or progressed.
    Task(QueuedTask),
    /// A task ended: it leaves the queue and its line joins the terminal.
    Done(TerminalLine),
    /// The server is stopping; the stream ends and the page reconnects to the next one.
    Restarting,
}

/// What the task page shows when it is first rendered, before its live stream opens: enough
/// for a browser without JavaScript to see its queue, its results and its form.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskPageView {
    /// Every task type, for the picker, in the registry's order.
    pub types: Vec<TaskTypeInfo>,
    /// The chosen type's form, offering the session's next input for it (the seed's n + 1
    /// after each submit) or the type's defaults.
    pub form: TaskForm,
    pub tasks: Vec<QueuedTask>,
    pub lines: Vec<TerminalLine>,
    /// Why the last form post was refused, when the page comes back from one.
    pub error: Option<FieldError>,
    /// The session's caps (its counts are those of `tasks`).
    pub quota: Quota,
    /// The sweep form filled in: with a batch's specification (`/?task=T&sweep=ID`), or as
    /// it was when its members were counted (`/?task=T&count=1&n=20..40…`).
    pub sweep: Option<SweepForm>,
}

/// The sweep form filled in, to edit and submit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SweepForm {
    /// The batch whose specification it shows.
    pub batch: Option<u64>,
    /// Each field's text in the form's syntax (`20..40`), in the fields' order.
    pub values: Vec<String>,
    /// Its varied fields are paired, not combined every way.
    pub zip: bool,
    pub reuse: bool,
    /// Its members, counted and each checked as a submission would.
    pub count: Option<u64>,
    /// Why a submission of it would be refused.
    pub error: Option<FieldError>,
}

/// What one owner (a session or a token) may still do: its tasks against the caps that
/// keep the cluster fair (`--max-running-per-session`, `--max-queued-per-session`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quota {
    pub running: usize,
    pub max_running: usize,
    pub queued: usize,
    pub max_queued: usize,
}

impl Quota {
    /// `3 of 3 running · 12 of 100 queued`.
    pub fn line(&self) -> String {
        format!(
            "{} of {} running · {} of {} queued",
            self.running, self.max_running, self.queued, self.max_queued
        )
    }

    /// Why a queued task waits: the owner's running cap, or the cluster.
    pub fn waiting(&self) -> String {
        if self.running >= self.max_running {
            format!(
                "waiting: you have {} running, the most at once",
                self.running
            )
        } else {
            "waiting for a free worker".to_owned()
        }
    }

    /// This quota with the running and queued counts of `tasks` (an owner's unfinished ones;
    /// a batch's row counts as none: its members wait in the batch, not in the queue).
    pub fn of(self, tasks: &[QueuedTask]) -> Self {
        let (mut running, mut queued) = (0, 0);
        for task in tasks.iter().filter(|t| t.batch.is_none()) {
            match task.status {
                TaskStatus::Running => running += 1,
                TaskStatus::Queued => queued += 1,
            }
        }
        Self {
            running,
            queued,
            ..self
        }
    }

    /// [`Self::line`], then each open batch as what it is: `… · batch 7: 412 of 10000 done`.
    pub fn line_with_batches(&self, tasks: &[QueuedTask]) -> String {
        let mut line = self.line();
        for task in tasks {
            if let Some(counts) = &task.batch {
                line += &format!(" · batch {}: {counts}", task.id);
            }
        }
        line
    }
}

/// The answer to a submission: the queued task, and what the form offers next.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submitted {
    pub task: QueuedTask,
    /// What the form offers for the next submission, as (field, value) pairs.
    pub next: Option<Vec<(String, String)>>,
}

/// One task of the caller's, as its detail page shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDetail {
    pub id: u64,
    /// Its type's name, and title (the name again for a type this build no longer has).
    pub task: String,
    pub title: String,
    /// `primes(1000000)`.
    pub call: String,
    /// The input, as pretty JSON.
    pub input: String,
    /// The output, as pretty JSON, once it finished (cut at [`DETAIL_OUTPUT_MAX`] bytes).
    pub output: Option<String>,
    /// The media type of its binary output (`/tasks/{id}/output`), if it has one.
    pub output_media: Option<String>,
    /// How it ended, once it did.
    pub outcome: Option<Outcome>,
    /// Its terminal line, once it ended.
    pub line: Option<String>,
    /// Server clock, ms since the Unix epoch.
    pub submitted_at_ms: u64,
    /// The worker's clock, recorded when it ended.
    pub started_at_ms: Option<u64>,
    pub finished_at_ms: Option<u64>,
    /// `host-pid/thread`, and how many times a worker started it, once it ended.
    pub worker: Option<String>,
    pub attempts: Option<u32>,
    /// The same task as commands: `offload submit …` and the API call with `curl`.
    pub command: String,
    pub curl: String,
}

/// What the history page was asked for: its query parameters as sent (the server checks them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HistoryQuery {
    /// `type`: a task type's name.
    pub kind: Option<String>,
    /// `outcome`: one of [`OUTCOME_FILTERS`].
    pub outcome: Option<String>,
    /// `q`: text to find in the input or the result.
    pub text: Option<String>,
    /// `before`: the cursor, the last id of the previous page.
    pub before: Option<String>,
    /// `batch`: only this batch's members.
    pub batch: Option<String>,
}

/// The history's outcome filter: (value, label); `unfinished` is queued or running.
pub const OUTCOME_FILTERS: [(&str, &str); 5] = [
    ("finished", "Finished"),
    ("failed", "Failed"),
    ("cancelled", "Cancelled"),
    ("lost", "Lost"),
    ("unfinished", "Not finished"),
];

/// One page of the caller's tasks, newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HistoryPage {
    pub query: HistoryQuery,
    /// Every task type, (name, title), for the type filter.
    pub types: Vec<(String, String)>,
    pub rows: Vec<HistoryRow>,
    /// The address of the next (older) page with the same filters, when there is one.
    pub older: Option<String>,
    /// The id of the owner's newest task when the page was made, whatever the filters.
    pub newest: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryRow {
    pub id: u64,
    /// `primes(1000000)`.
    pub call: String,
    /// None while it is queued or running.
    pub outcome: Option<Outcome>,
    /// Its terminal line, once it ended.
    pub summary: Option<String>,
    pub submitted_at_ms: u64,
    /// The row stands for this batch, of which the task is the first member.
    pub batch: Option<BatchLine>,
}

/// Most bytes of an output the detail page shows.
pub const DETAIL_OUTPUT_MAX: usize = 64 * 1024;

/// What the footer shows about the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub version: String,
    pub workers: usize,
    pub backend: crate::Backend,
}

/// The seed's queue text, each task's input in brief: `Task queue: [3, 4]`.
pub fn queue_label(tasks: &[QueuedTask]) -> String {
    let args: Vec<String> = tasks
        .iter()
        .map(|t| match t.batch {
            Some(_) => format!("batch {}", t.id),
            None => t.args.clone(),
        })
        .collect();
    format!("Task queue: [{}]", args.join(", "))
}

/// `x` (0 or more) with one decimal, halves rounded up (12.34 → "12.3"), without the float formatter: the browser's bundle
/// would otherwise carry it for this alone.
pub fn one_decimal(x: f64) -> String {
    let tenths = (x.max(0.0) * 10.0).round() as u64;
    format!("{}.{}", tenths / 10, tenths % 10)
}

/// Seconds with millisecond precision, as the terminal prints them.
pub fn secs(ms: f64) -> String {
    format!("{:.3}", ms / 1e3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_decimal_prints_tenths_rounding_halves_up() {
        for x in [0.0, 0.04, 1.26, 12.34, 99.94, 100.0, 1234.56] {
            assert_eq!(one_decimal(x), format!("{x:.1}"), "{x}");
        }
        assert_eq!(one_decimal(1.25), "1.3");
        assert_eq!(one_decimal(99.96), "100.0");
        assert_eq!(one_decimal(-3.0), "0.0");
    }

    #[test]
    fn queue_label_matches_the_seed() {
        let task = |n: u64| QueuedTask {
            id: n,
            task: "t".into(),
            args: n.to_string(),
            status: TaskStatus::Queued,
            progress: 0.0,
            submitted_at_ms: 0,
            batch: None,
        };
        assert_eq!(queue_label(&[]), "Task queue: []");
        assert_eq!(queue_label(&[task(34), task(35)]), "Task queue: [34, 35]");
    }

    #[test]
    fn a_batch_is_one_row_that_the_caps_do_not_count() {
        let task = |id: u64, batch: Option<&str>| QueuedTask {
            id,
            task: "t".into(),
            args: "n=1..3".into(),
            status: TaskStatus::Running,
            progress: 0.0,
            submitted_at_ms: 0,
            batch: batch.map(str::to_owned),
        };
        let tasks = [task(7, None), task(7, Some("1 of 3 done"))];
        assert_eq!(queue_label(&tasks), "Task queue: [n=1..3, batch 7]");
        assert_eq!(tasks[1].call(), "batch 7 t(n=1..3)");
        let caps = Quota {
            max_running: 3,
            max_queued: 100,
            ..Quota::default()
        };
        assert_eq!(
            caps.of(&tasks).line_with_batches(&tasks),
            "1 of 3 running · 0 of 100 queued · batch 7: 1 of 3 done"
        );
        let line = TerminalLine {
            task: 7,
            outcome: Outcome::Finished,
            text: String::new(),
            image: false,
            batch: true,
        };
        assert!(tasks[1].ends_with(&line) && !tasks[0].ends_with(&line));
        assert_eq!(line.href(), "/batches/7");
    }

    #[test]
    fn updates_round_trip_as_json() {
        let update = PageUpdate::Done(TerminalLine {
            task: 7,
            outcome: Outcome::Finished,
            text: "t(20)=6765 in 0.001sec".into(),
            image: true,
            batch: false,
        });
        let json = serde_json::to_string(&update).unwrap();
        assert_eq!(serde_json::from_str::<PageUpdate>(&json).unwrap(), update);
    }
}

/// What the batch page was asked for: its query parameters as sent (the server checks them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchQuery {
    /// `sort`: a column's name (by index when absent).
    pub sort: Option<String>,
    /// `order`: `desc` for largest first.
    pub order: Option<String>,
    /// `outcome`: one of [`OUTCOME_FILTERS`].
    pub outcome: Option<String>,
    /// `page`: from 1.
    pub page: Option<String>,
}

/// A batch's page: its counts and progress, a page of its members as a table, and a plot.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchView {
    pub id: u64,
    /// Its type's name, and title.
    pub task: String,
    pub title: String,
    /// `running`, `finished` or `cancelled`.
    pub state: String,
    pub members: u64,
    /// Members by where they are: (label, count), the empty ones left out.
    pub counts: Vec<(String, u64)>,
    /// From 0 to 1.
    pub progress: f64,
    pub elapsed_ms: u64,
    pub remaining_ms: Option<u64>,
    /// The table's columns, and the one its rows are sorted by.
    pub columns: Vec<String>,
    pub query: BatchQuery,
    pub rows: Vec<BatchRow>,
    /// Rows the filter keeps, and the page shown of them (from 1).
    pub shown: u64,
    pub page: u64,
    pub pages: u64,
    /// An SVG plot of an output column against a varied input, when the batch has both.
    pub plot: Option<String>,
    /// The type's output is a picture: rows show it small.
    pub pictures: bool,
    /// Its specification varies fields, so the task page's sweep form can show it again.
    pub editable: bool,
}

/// One member in the batch's table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchRow {
    pub task: u64,
    /// The cells, as text, in the columns' order.
    pub cells: Vec<String>,
    /// It finished with a picture.
    pub picture: bool,
}

/// One of the owner's batches, as the task page lists its latest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchLine {
    pub id: u64,
    /// `Batch 7: <the type's title> × 21`.
    pub title: String,
    /// `running`, `finished` or `cancelled`.
    pub state: String,
    /// `12 of 21 done, 1 failed`.
    pub counts: String,
}

/// The owner's latest batches the task page lists.
pub const RECENT_BATCHES: usize = 5;

/// Members a page of the batch's table shows.
pub const BATCH_PAGE_ROWS: usize = 100;
