//! The page's side of the live stream: a store of signals that [`PageUpdate`]s are applied to, and
//! (in the browser) one `EventSource` that reconnects with backoff and says so while it does.

use leptos::prelude::*;

use model::page::{PageUpdate, QueuedTask, TerminalLine};
pub use model::stream::Connection;

/// The session's queue and terminal as this page knows them.
#[derive(Clone, Copy)]
pub struct LiveStore {
    pub tasks: RwSignal<Vec<QueuedTask>>,
    pub lines: RwSignal<Vec<TerminalLine>>,
    pub connection: RwSignal<Connection>,
    /// The server's clock minus the browser's, for elapsed times.
    pub clock_offset_ms: RwSignal<f64>,
}

impl LiveStore {
    /// A store that starts from what the server rendered.
    pub fn new(tasks: Vec<QueuedTask>, lines: Vec<TerminalLine>) -> Self {
        Self {
            tasks: RwSignal::new(tasks),
            lines: RwSignal::new(lines),
            connection: RwSignal::new(Connection::AsLoaded),
            clock_offset_ms: RwSignal::new(0.0),
        }
    }

    /// The whole state as a snapshot, for a store that joins late.
    #[cfg(feature = "hydrate")]
    fn snapshot(&self) -> PageUpdate {
        PageUpdate::Snapshot {
            server_now_ms: (js_sys_now() + self.clock_offset_ms.get_untracked()) as u64,
            tasks: self.tasks.get_untracked(),
            lines: self.lines.get_untracked(),
        }
    }

    /// Applies one update from the server; `browser_now_ms` is the page's clock.
    pub fn apply(&self, update: PageUpdate, browser_now_ms: f64) {
        match update {
            PageUpdate::Snapshot {
                server_now_ms,
                tasks,
                lines,
            } => {
                self.clock_offset_ms
                    .set(server_now_ms as f64 - browser_now_ms);
                self.lines.set(lines);
                self.tasks.set(tasks);
            }
            PageUpdate::Restarting => self.connection.set(Connection::Restarting),
            PageUpdate::Task(task) => {
                // The submit answer races the stream: a fast task's result may come first.
                if self
                    .lines
                    .with_untracked(|lines| lines.iter().any(|l| task.ends_with(l)))
                {
                    return;
                }
                let batch = task.batch.is_some();
                self.tasks.update(|tasks| {
                    match tasks
                        .iter_mut()
                        .find(|t| t.id == task.id && t.batch.is_some() == batch)
                    {
                        Some(known) => {
                            let progress = known.progress.max(task.progress);
                            *known = task;
                            known.progress = progress;
                        }
                        None => {
                            tasks.push(task);
                            // A batch's row after the single tasks, as the server lists them.
                            tasks.sort_by_key(|t| (t.batch.is_some(), t.id));
                        }
                    }
                })
            }
            PageUpdate::Done(line) => {
                self.tasks
                    .update(|tasks| tasks.retain(|t| !t.ends_with(&line)));
                self.lines.update(|lines| {
                    if !lines
                        .iter()
                        .any(|l| l.task == line.task && l.batch == line.batch)
                    {
                        lines.push(line);
                    }
                });
            }
        }
    }
}

/// Shows the page's one live stream in `store`: the stream opens with the first page that
/// shows it and stays open while the app moves between its pages ([`crate::nav`]), so a page
/// that comes back joins it (catching up from what the stream has seen) instead of opening
/// another.
#[cfg(feature = "hydrate")]
pub fn connect(store: LiveStore) {
    shared::join(store);
}

#[cfg(feature = "hydrate")]
mod shared {
    use std::cell::RefCell;

    use leptos::prelude::*;
    use model::page::PageUpdate;
    use model::stream::{Connection, Follower};

    use super::{LiveStore, js_sys_now};

    thread_local! {
        static STREAM: RefCell<Option<Stream>> = const { RefCell::new(None) };
    }

    struct Stream {
        _follower: Follower,
        /// Everything the stream has said, applied: what a page that joins later catches up
        /// from. Its signals belong to a root that lives as long as the page.
        seen: LiveStore,
        /// The stores of the pages showing the stream now.
        showing: Vec<LiveStore>,
    }

    pub(super) fn join(store: LiveStore) {
        let joined = STREAM.with_borrow_mut(|stream| match stream {
            Some(stream) => {
                stream.showing.push(store);
                Some(stream.seen)
            }
            None => None,
        });
        match joined {
            // After hydration: the page's DOM is what the server rendered, then it catches up.
            Some(seen) => {
                Effect::new(move |_| {
                    store.apply(seen.snapshot(), js_sys_now());
                    store.connection.set(seen.connection.get_untracked());
                });
            }
            None => open(store),
        }
    }

    /// The app left the page whose stores show the stream; the next page's join. The stores
    /// left behind show what they last had, as a page without a stream does.
    pub fn left_page() {
        STREAM.with_borrow_mut(|stream| {
            if let Some(stream) = stream {
                for store in stream.showing.drain(..) {
                    store.connection.set(Connection::AsLoaded);
                }
            }
        });
    }

    fn each(f: impl Fn(&LiveStore)) {
        STREAM.with_borrow(|stream| {
            if let Some(stream) = stream {
                f(&stream.seen);
                stream.showing.iter().for_each(f);
            }
        });
    }

    fn open(first: LiveStore) {
        // A root of its own, so that `seen` lives as long as the page, whatever becomes of the
        // island that opened the stream. Making a root makes it the current owner: the
        // island's is put back.
        let island = Owner::current();
        let root = Owner::new_root(None);
        let seen =
            root.with(|| LiveStore::new(first.tasks.get_untracked(), first.lines.get_untracked()));
        std::mem::forget(root);
        if let Some(island) = island {
            island.set();
        }
        first.connection.set(Connection::Connecting);
        let on_state = |state| {
            each(|store| {
                // "Restarting" says more than "disconnected" until the next server answers.
                if !(matches!(state, Connection::Retrying(_))
                    && store.connection.get_untracked() == Connection::Restarting)
                {
                    store.connection.set(state);
                }
            })
        };
        let on_message = |text: String| match serde_json::from_str::<PageUpdate>(&text) {
            Ok(update) => {
                let now = js_sys_now();
                each(|store| store.apply(update.clone(), now));
            }
            Err(error) => leptos::logging::warn!("unreadable update: {error}"),
        };
        let follower = model::stream::follow("/api/events", on_state, on_message);
        STREAM.with_borrow_mut(|stream| {
            *stream = Some(Stream {
                _follower: follower,
                seen,
                showing: vec![first],
            })
        });
    }
}

#[cfg(feature = "hydrate")]
pub use shared::left_page;

/// The browser's clock, ms since the Unix epoch.
#[cfg(feature = "hydrate")]
pub fn js_sys_now() -> f64 {
    js_sys::Date::now()
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::page::{Outcome, TaskStatus};

    fn task(id: u64, progress: f64) -> QueuedTask {
        QueuedTask {
            id,
            task: "t".into(),
            args: id.to_string(),
            status: TaskStatus::Running,
            progress,
            submitted_at_ms: 0,
            batch: None,
        }
    }

    #[test]
    fn a_snapshot_is_the_truth_and_a_restart_notice_shows() {
        Owner::new().with(|| {
            let store = LiveStore::new(vec![task(7, 0.5)], vec![]);
            let line = TerminalLine {
                task: 7,
                outcome: Outcome::Finished,
                text: "t(7)=13 in 0.001sec (rerun after a restart)".into(),
                image: false,
                batch: false,
            };
            store.apply(PageUpdate::Restarting, 0.0);
            assert_eq!(store.connection.get_untracked(), Connection::Restarting);
            store.apply(
                PageUpdate::Snapshot {
                    server_now_ms: 0,
                    tasks: vec![],
                    lines: vec![line.clone()],
                },
                0.0,
            );
            assert!(store.tasks.get_untracked().is_empty());
            assert_eq!(store.lines.get_untracked(), vec![line]);
        });
    }

    #[test]
    fn progress_never_goes_backwards_and_done_tasks_leave_the_queue() {
        Owner::new().with(|| {
            let store = LiveStore::new(vec![], vec![]);
            store.apply(PageUpdate::Task(task(1, 0.5)), 0.0);
            store.apply(PageUpdate::Task(task(1, 0.2)), 0.0);
            assert_eq!(store.tasks.get_untracked()[0].progress, 0.5);
            let line = TerminalLine {
                task: 1,
                outcome: Outcome::Finished,
                text: "t(1)=1 in 0.001sec".into(),
                image: false,
                batch: false,
            };
            store.apply(PageUpdate::Done(line.clone()), 0.0);
            store.apply(PageUpdate::Done(line), 0.0); // a duplicate after a resync
            assert!(store.tasks.get_untracked().is_empty());
            assert_eq!(store.lines.get_untracked().len(), 1);
        });
    }

    #[test]
    fn a_submit_answer_arriving_after_the_result_does_not_requeue_the_task() {
        Owner::new().with(|| {
            let store = LiveStore::new(vec![], vec![]);
            store.apply(
                PageUpdate::Done(TerminalLine {
                    task: 3,
                    outcome: Outcome::Finished,
                    text: "t(3)=2 in 0.001sec".into(),
                    image: false,
                    batch: false,
                }),
                0.0,
            );
            store.apply(PageUpdate::Task(task(3, 0.0)), 0.0);
            assert!(store.tasks.get_untracked().is_empty());
        });
    }
}
