//! Admission control through the public API, on real worker threads: per-submitter caps, the
//! lane that keeps a worker for short work, and the time limit. Synchronisation is by events
//! and handles only: no test sleeps.

use std::time::Duration;

use cluster::{
    ClusterConfig, ClusterEvent, EmbeddedCluster, EventKind, SubmitError, Submitter, TaskError,
    TaskHandle,
};
use tasks::Fibonacci;
use tokio::sync::broadcast;

fn cluster(config: ClusterConfig) -> EmbeddedCluster {
    EmbeddedCluster::start(
        ClusterConfig {
            event_capacity: 1 << 16,
            ..config
        },
        tasks::registry(),
    )
    .unwrap()
}

/// Waits until `count` tasks have started; returns their submitters.
async fn starts(events: &mut broadcast::Receiver<ClusterEvent>, count: usize) -> Vec<Submitter> {
    let mut who = Vec::new();
    while who.len() < count {
        let event = events.recv().await.expect("events open, not lagging");
        if matches!(event.kind, EventKind::Started { .. }) {
            who.push(event.submitter);
        }
    }
    who
}

/// Never finishes in any build: the naive recursion for 60 takes years.
const FOREVER: i64 = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_submitter_never_holds_every_worker_and_is_refused_past_its_queue_cap() {
    let cluster = cluster(ClusterConfig {
        workers: 4,
        max_queued_per_submitter: 5,
        ..ClusterConfig::default()
    });
    let client = cluster.client();
    let mut events = client.events();
    let greedy = Submitter::new("greedy");
    let mut handles: Vec<TaskHandle<Fibonacci>> = Vec::new();
    // 3 run (workers − 1), 5 wait, the 9th is refused with the limit in its message.
    for _ in 0..3 {
        handles.push(
            client
                .submit::<Fibonacci>(Fibonacci::n(FOREVER), &greedy)
                .await
                .unwrap(),
        );
    }
    starts(&mut events, 3).await;
    for _ in 0..5 {
        handles.push(
            client
                .submit::<Fibonacci>(Fibonacci::n(FOREVER), &greedy)
                .await
                .unwrap(),
        );
    }
    let refused = client
        .submit::<Fibonacci>(Fibonacci::n(FOREVER), &greedy)
        .await
        .err();
    assert_eq!(refused, Some(SubmitError::SubmitterBusy { limit: 5 }));
    assert!(refused.unwrap().to_string().contains("5 tasks waiting"));
    let stats = client.stats();
    assert_eq!((stats.totals.running, stats.totals.queued), (3, 5));

    // Someone else's short task gets the fourth worker at once.
    let other = Submitter::new("other");
    let quick = client
        .submit::<Fibonacci>(Fibonacci::n(1), &other)
        .await
        .unwrap();
    assert_eq!(quick.result().await, Ok(1));
    assert_eq!(client.stats().totals.running, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_of_long_tasks_always_leaves_a_worker_for_short_ones() {
    let cluster = cluster(ClusterConfig {
        workers: 4,
        ..ClusterConfig::default()
    });
    let client = cluster.client();
    let mut events = client.events();
    // Four throwaway submitters, one long task each: per-submitter caps alone would let them
    // take all four workers.
    let mut crowd = Vec::new();
    for i in 0..4 {
        let who = Submitter::new(format!("throwaway-{i}"));
        crowd.push(
            client
                .submit::<Fibonacci>(Fibonacci::n(93), &who)
                .await
                .unwrap(),
        );
    }
    starts(&mut events, 3).await;
    for round in 0..20 {
        let who = Submitter::new(format!("short-{round}"));
        let handle = client
            .submit::<Fibonacci>(Fibonacci::n(20), &who)
            .await
            .unwrap();
        assert_eq!(handle.result().await, Ok(6765));
    }
    let stats = client.stats();
    assert_eq!(
        (stats.totals.running, stats.totals.queued),
        (3, 1),
        "the fourth long task still waits"
    );
    // Once one long task goes, the waiting one takes its place (never the reserved worker).
    client.cancel(crowd[0].id()).await.unwrap();
    starts(&mut events, 1).await;
    assert_eq!(client.stats().totals.running, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_past_the_time_limit_is_stopped_and_says_so() {
    let cluster = cluster(ClusterConfig {
        workers: 2,
        task_time_limit: Some(Duration::from_millis(300)),
        ..ClusterConfig::default()
    });
    let client = cluster.client();
    let who = Submitter::new("slow");
    let handle = client
        .submit::<Fibonacci>(Fibonacci::n(FOREVER), &who)
        .await
        .unwrap();
    let error = handle.result().await.unwrap_err();
    assert_eq!(error, TaskError::TimeLimit { limit_ms: 300 });
    assert_eq!(error.to_string(), "it ran past the 0.3 s limit");
    // The worker is free again, and short work is not affected by the limit.
    let next = client
        .submit::<Fibonacci>(Fibonacci::n(10), &who)
        .await
        .unwrap();
    assert_eq!(next.result().await, Ok(55));
    assert_eq!(client.stats().totals.failed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_worker_still_runs_long_work() {
    let cluster = cluster(ClusterConfig {
        workers: 1,
        task_time_limit: Some(Duration::from_millis(100)),
        ..ClusterConfig::default()
    });
    let client = cluster.client();
    let handle = client
        .submit::<Fibonacci>(Fibonacci::n(FOREVER), &Submitter::new("only"))
        .await
        .unwrap();
    assert!(matches!(
        handle.result().await,
        Err(TaskError::TimeLimit { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_cluster_refuses_work_and_starts_nothing_new() {
    let cluster = cluster(ClusterConfig {
        workers: 1,
        ..ClusterConfig::default()
    });
    let client = cluster.client();
    let mut events = client.events();
    let who = Submitter::new("d");
    let running = client
        .submit::<Fibonacci>(Fibonacci::n(FOREVER), &who)
        .await
        .unwrap();
    starts(&mut events, 1).await;
    let queued = client
        .submit::<Fibonacci>(Fibonacci::n(1), &who)
        .await
        .unwrap();
    cluster.scheduler().drain();
    assert_eq!(
        client
            .submit::<Fibonacci>(Fibonacci::n(1), &who)
            .await
            .err(),
        Some(SubmitError::ShutDown)
    );
    assert!(
        !cluster
            .scheduler()
            .wait_idle(Duration::from_millis(50))
            .await
    );
    client.cancel(running.id()).await.unwrap();
    assert_eq!(running.result().await, Err(TaskError::Cancelled));
    assert!(cluster.scheduler().wait_idle(Duration::from_secs(5)).await);
    assert_eq!(
        client.stats().totals.queued,
        1,
        "the queued task was not started"
    );
    drop(cluster);
    assert!(matches!(queued.result().await, Err(TaskError::Lost(_))));
}
