//! The cluster's behaviour through its public API, on real worker threads.
//! Synchronisation is by events and handles only: no test sleeps.

use std::collections::HashMap;

use cluster::{
    ClusterConfig, ClusterEvent, EmbeddedCluster, EventKind, SubmitError, Submitter, Task,
    TaskContext, TaskError, TaskId, TaskState,
};
use tasks::Fibonacci;
use tokio::sync::broadcast;

fn iterative(n: u32) -> u64 {
    let (mut a, mut b) = (0u64, 1u64);
    for _ in 0..n {
        (a, b) = (b, a.wrapping_add(b));
    }
    a
}

/// A task that panics, to check that its worker survives.
struct Panics;

/// What to panic with.
#[derive(Debug, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
struct Message {
    message: String,
}

impl From<&str> for Message {
    fn from(message: &str) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl Task for Panics {
    const NAME: &'static str = "panics";
    const TITLE: &'static str = "Panics";
    const DESCRIPTION: &'static str = "Panics with its message.";
    type Input = Message;
    type Output = ();
    fn summary(_: &Message, _: &()) -> String {
        "never".into()
    }
    fn run(input: Message, _: &TaskContext<'_>) -> Result<(), TaskError> {
        panic!("{}", input.message);
    }
}

fn cluster(workers: usize, queue_capacity: usize) -> EmbeddedCluster {
    EmbeddedCluster::start(
        ClusterConfig {
            workers,
            queue_capacity,
            // The per-submitter caps have tests of their own (admission.rs).
            max_queued_per_submitter: queue_capacity,
            event_capacity: 1 << 16,
            ..ClusterConfig::default()
        },
        tasks::registry().register::<Panics>(),
    )
    .unwrap()
}

async fn next_matching(
    events: &mut broadcast::Receiver<ClusterEvent>,
    pred: impl Fn(&ClusterEvent) -> bool,
) -> ClusterEvent {
    loop {
        let event = events
            .recv()
            .await
            .expect("event stream open and not lagging");
        if pred(&event) {
            return event;
        }
    }
}

async fn started(events: &mut broadcast::Receiver<ClusterEvent>, id: TaskId) {
    next_matching(events, |e| {
        e.task == id && matches!(e.kind, EventKind::Started { .. })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_exact_against_an_iterative_fibonacci() {
    let cluster = cluster(4, 1000);
    let client = cluster.client();
    let who = Submitter::new("exact");
    // The naive recursion makes 2·F(n+1)−1 calls: beyond ~35 one call costs minutes to
    // centuries, so larger n are covered by the u64 bound test in the task's unit tests.
    let mut handles = Vec::new();
    for n in 0..=30 {
        handles.push((
            n,
            client
                .submit::<Fibonacci>(Fibonacci::n(n), &who)
                .await
                .unwrap(),
        ));
    }
    for (n, handle) in handles {
        let submitted = cluster::now_ms();
        let ended = handle.ended().await;
        assert_eq!(ended.outcome, Ok(iterative(n as u32).into()), "n = {n}");
        // Which of this process's four threads ran it, when, at the first attempt.
        let ran = ended.ran.expect("a task that ran says where");
        let (process, thread) = ran.worker.rsplit_once('/').unwrap();
        assert!(
            process.ends_with(&format!("-{}", std::process::id())),
            "{ran:?}"
        );
        assert!(thread.parse::<usize>().unwrap() < 4, "{ran:?}");
        assert_eq!(ran.attempt, 1);
        assert!(ran.started_at_ms <= cluster::now_ms() && ran.started_at_ms + 60_000 > submitted);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_submissions_from_ten_submitters_are_neither_lost_nor_duplicated() {
    let cluster = cluster(4, 10_000);
    let client = cluster.client();
    let mut events = client.events();
    let submitters: Vec<_> = (0..10).map(|i| Submitter::new(format!("s{i}"))).collect();

    let mut joins = Vec::new();
    for who in submitters.clone() {
        let client = client.clone();
        joins.push(tokio::spawn(async move {
            let mut handles = Vec::new();
            for i in 0..100u32 {
                let n = i64::from(i % 20);
                handles.push((
                    n,
                    client
                        .submit::<Fibonacci>(Fibonacci::n(n), &who)
                        .await
                        .unwrap(),
                ));
            }
            let mut ids = Vec::new();
            for (n, handle) in handles {
                ids.push(handle.id());
                assert_eq!(handle.result().await, Ok(iterative(n as u32)));
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for join in joins {
        ids.extend(join.await.unwrap());
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 1000, "every task got its own id");

    let mut seen: HashMap<TaskId, Vec<TaskState>> = HashMap::new();
    let mut finished = 0;
    while finished < 1000 {
        let event = events.recv().await.unwrap();
        if matches!(event.kind, EventKind::Progress { .. }) {
            continue;
        }
        let state = event.kind.state();
        finished += usize::from(state.is_done());
        seen.entry(event.task).or_default().push(state);
    }
    assert_eq!(seen.len(), 1000);
    for (id, states) in seen {
        assert_eq!(
            states,
            [TaskState::Queued, TaskState::Running, TaskState::Finished],
            "task {id}"
        );
    }
    let totals = client.stats().totals;
    assert_eq!((totals.submitted, totals.finished), (1000, 1000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_submitter_is_not_starved_by_the_first() {
    let cluster = cluster(1, 10_000);
    let client = cluster.client();
    let mut events = client.events();
    let (a, b) = (Submitter::new("greedy"), Submitter::new("modest"));

    // Hold the only worker so that the whole backlog is queued before anything else runs.
    let gate = client
        .submit::<Fibonacci>(Fibonacci::n(60), &a)
        .await
        .unwrap();
    started(&mut events, gate.id()).await;
    let mut greedy = Vec::new();
    for _ in 0..1000 {
        greedy.push(
            client
                .submit::<Fibonacci>(Fibonacci::n(1), &a)
                .await
                .unwrap(),
        );
    }
    let modest = client
        .submit::<Fibonacci>(Fibonacci::n(1), &b)
        .await
        .unwrap();
    let (modest_id, thousandth) = (modest.id(), greedy.last().unwrap().id());
    client.cancel(gate.id()).await.unwrap();

    let first = next_matching(&mut events, |e| {
        matches!(e.kind, EventKind::Started { .. }) && (e.task == modest_id || e.task == thousandth)
    })
    .await;
    assert_eq!(first.task, modest_id, "the modest task started first");
    assert_eq!(modest.result().await, Ok(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_task_can_be_cancelled() {
    let cluster = cluster(1, 100);
    let client = cluster.client();
    let mut events = client.events();
    let who = Submitter::new("c");
    let gate = client
        .submit::<Fibonacci>(Fibonacci::n(60), &who)
        .await
        .unwrap();
    started(&mut events, gate.id()).await;
    let queued = client
        .submit::<Fibonacci>(Fibonacci::n(5), &who)
        .await
        .unwrap();
    let id = queued.id();
    assert_eq!(client.unfinished(&who).await.len(), 2);

    client.cancel(id).await.unwrap();
    assert_eq!(queued.result().await, Err(TaskError::Cancelled));
    let event = next_matching(&mut events, |e| e.task == id && e.kind.state().is_done()).await;
    assert_eq!(event.kind, EventKind::Cancelled { worker: None });
    assert!(client.cancel(id).await.is_err(), "a cancelled task is gone");

    let left: Vec<_> = client.unfinished(&who).await.iter().map(|t| t.id).collect();
    assert_eq!(left, [gate.id()]);
    client.cancel(gate.id()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_hears_when_its_task_starts() {
    let cluster = cluster(1, 100);
    let client = cluster.client();
    let mut events = client.events();
    let who = Submitter::new("h");
    let gate = client
        .submit::<Fibonacci>(Fibonacci::n(60), &who)
        .await
        .unwrap();
    started(&mut events, gate.id()).await;
    let waiting = client
        .submit::<Fibonacci>(Fibonacci::n(1), &who)
        .await
        .unwrap();
    let mut progress = waiting.progress();
    assert!(!progress.has_changed().unwrap(), "still queued");
    client.cancel(gate.id()).await.unwrap();
    progress.changed().await.unwrap();
    assert_eq!(waiting.result().await, Ok(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_fibonacci_60_stops_at_its_next_checkpoint_when_cancelled() {
    let cluster = cluster(1, 100);
    let client = cluster.client();
    let mut events = client.events();
    let who = Submitter::new("c");
    let handle = client
        .submit::<Fibonacci>(Fibonacci::n(60), &who)
        .await
        .unwrap();
    let id = handle.id();
    // Wait until it is well under way: its first published progress.
    next_matching(&mut events, |e| {
        e.task == id && matches!(e.kind, EventKind::Progress { .. })
    })
    .await;

    // fibonacci(60) would run for days: it ends only because it noticed the cancel (how
    // soon is a figure of `make bench`, not an assertion here).
    client.cancel(id).await.unwrap();
    assert_eq!(handle.result().await, Err(TaskError::Cancelled));
    let ended = next_matching(&mut events, |e| e.task == id && e.kind.state().is_done()).await;
    assert_eq!(ended.kind, EventKind::Cancelled { worker: Some(0) });

    // The worker is free again.
    let next = client
        .submit::<Fibonacci>(Fibonacci::n(10), &who)
        .await
        .unwrap();
    assert_eq!(next.result().await, Ok(55));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_task_fails_with_its_message_and_the_worker_carries_on() {
    let cluster = cluster(1, 100);
    let client = cluster.client();
    let who = Submitter::new("p");
    let bad = client
        .submit::<Panics>("boom at 42".into(), &who)
        .await
        .unwrap();
    let good = client
        .submit::<Fibonacci>(Fibonacci::n(20), &who)
        .await
        .unwrap();
    assert_eq!(
        bad.result().await,
        Err(TaskError::Panicked("boom at 42".into()))
    );
    assert_eq!(good.result().await, Ok(6765));
    let stats = client.stats();
    assert_eq!((stats.totals.failed, stats.totals.finished), (1, 1));
    assert_eq!(
        stats.recent[0].error.as_deref(),
        Some("panicked: boom at 42")
    );
    assert_eq!(
        stats.failures.len(),
        1,
        "failures are kept apart for exception views"
    );
    assert_eq!(stats.failures[0].name.as_ref(), "panics");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_follow_each_task_type_through_its_states() {
    let cluster = cluster(1, 100);
    let client = cluster.client();
    let mut events = client.events();
    let who = Submitter::new("g");
    let gate = client
        .submit::<Fibonacci>(Fibonacci::n(60), &who)
        .await
        .unwrap();
    started(&mut events, gate.id()).await;
    let queued = client
        .submit::<Fibonacci>(Fibonacci::n(3), &who)
        .await
        .unwrap();
    let group = |stats: cluster::ClusterStats| {
        stats
            .groups
            .into_iter()
            .find(|g| g.name.as_ref() == "fibonacci")
            .unwrap()
    };
    let g = group(client.stats());
    assert_eq!(
        (g.queued, g.running, g.input_bytes),
        (1, 1, 15),
        "inputs {{\"n\":60}} and {{\"n\":3}} as JSON"
    );
    client.cancel(queued.id()).await.unwrap();
    client.cancel(gate.id()).await.unwrap();
    assert_eq!(gate.result().await, Err(TaskError::Cancelled));
    let done = client
        .submit::<Fibonacci>(Fibonacci::n(10), &who)
        .await
        .unwrap();
    assert_eq!(done.result().await, Ok(55));
    let g = group(client.stats());
    assert_eq!((g.queued, g.running, g.finished, g.cancelled), (0, 0, 1, 2));
    assert_eq!(g.output_bytes, 2, "the result 55 as JSON");
    assert!(g.compute_ms > 0.0 && g.wait_ms >= 0.0);
    assert_eq!(client.stats().workers[0].output_bytes, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_busy() {
    let cluster = cluster(1, 2);
    let client = cluster.client();
    let mut events = client.events();
    let who = Submitter::new("b");
    let gate = client
        .submit::<Fibonacci>(Fibonacci::n(60), &who)
        .await
        .unwrap();
    started(&mut events, gate.id()).await;
    let _one = client
        .submit::<Fibonacci>(Fibonacci::n(1), &who)
        .await
        .unwrap();
    let _two = client
        .submit::<Fibonacci>(Fibonacci::n(2), &who)
        .await
        .unwrap();
    let refused = client
        .submit::<Fibonacci>(Fibonacci::n(3), &who)
        .await
        .err()
        .unwrap();
    assert_eq!(refused, SubmitError::Busy { capacity: 2 });
    assert!(refused.to_string().contains("busy"));
    client.cancel(gate.id()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_rises_monotonically_to_100_percent() {
    let cluster = cluster(1, 100);
    let client = cluster.client();
    let mut events = client.events();
    let handle = client
        .submit::<Fibonacci>(Fibonacci::n(32), &Submitter::new("p"))
        .await
        .unwrap();
    let id = handle.id();
    let mut fractions = Vec::new();
    loop {
        let event = next_matching(&mut events, |e| e.task == id).await;
        match event.kind {
            EventKind::Progress { fraction, .. } => fractions.push(fraction),
            EventKind::Finished { .. } => break,
            EventKind::Queued { .. } | EventKind::Started { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(fractions.windows(2).all(|w| w[0] < w[1]), "{fractions:?}");
    assert_eq!(fractions.last(), Some(&1.0));
    assert_eq!(*handle.progress().borrow(), 1.0);
    assert_eq!(handle.result().await, Ok(2_178_309));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_at_submit_with_the_bound_and_why() {
    let cluster = cluster(1, 100);
    let client = cluster.client();
    let who = Submitter::new("x");
    let message = client
        .submit::<Fibonacci>(Fibonacci::n(94), &who)
        .await
        .err()
        .unwrap()
        .to_string();
    assert_eq!(message, "n must be at most 93 (got 94).");
    let message = client
        .submit::<Fibonacci>(Fibonacci::n(-1), &who)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&message, SubmitError::InvalidInput(e) if e.field.as_deref() == Some("n") && e.message.contains("0 or more")),
        "{message:?}"
    );
    assert_eq!(client.stats().totals.submitted, 0, "nothing was queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tasks_are_refused() {
    let cluster = EmbeddedCluster::start(ClusterConfig::default(), tasks::registry()).unwrap();
    let refused = cluster
        .client()
        .submit::<Panics>("x".into(), &Submitter::new("u"))
        .await
        .err()
        .unwrap();
    assert_eq!(refused, SubmitError::UnknownTask("panics".into()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutting_down_reports_unfinished_work_as_lost_not_cancelled() {
    let cluster = cluster(1, 100);
    let client = cluster.client();
    let mut events = client.events();
    let who = Submitter::new("s");
    let running = client
        .submit::<Fibonacci>(Fibonacci::n(60), &who)
        .await
        .unwrap();
    started(&mut events, running.id()).await;
    let queued = client
        .submit::<Fibonacci>(Fibonacci::n(3), &who)
        .await
        .unwrap();
    drop(cluster);
    // Nobody cancelled these: the user must not read that they did.
    assert_eq!(
        running.result().await,
        Err(TaskError::Lost(
            "the cluster shut down before it finished".into()
        ))
    );
    assert_eq!(
        queued.result().await,
        Err(TaskError::Lost(
            "the cluster shut down before it ran".into()
        ))
    );
    assert_eq!(
        client
            .submit::<Fibonacci>(Fibonacci::n(1), &who)
            .await
            .err(),
        Some(SubmitError::ShutDown)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_describe_workers_and_recent_tasks() {
    let cluster = cluster(2, 100);
    let client = cluster.client();
    let who = Submitter::new("st");
    for n in [5, 6] {
        client
            .submit::<Fibonacci>(Fibonacci::n(n), &who)
            .await
            .unwrap()
            .result()
            .await
            .unwrap();
    }
    let stats = client.stats();
    assert_eq!(stats.workers.len(), 2);
    assert_eq!(stats.workers.iter().map(|w| w.tasks_done).sum::<u64>(), 2);
    assert_eq!(stats.recent.len(), 2);
    assert!(stats.recent.iter().all(|t| t.state == TaskState::Finished));
    assert!(stats.process.memory_bytes > 0);
    assert_eq!(client.workers(), 2);
}
