//! The work leg: released tasks go out to JetStream's work queues, quick ones gathered into
//! one message up to a cost and a count, with two publishes in flight; and cancels
//! go out to the workers.

use super::*;

impl Dispatch {
    /// Gathers the tasks the scheduler lets start into work messages and publishes them,
    /// [`HANDOVERS`] messages at a time: while those are on their way, the next batch forms.
    pub(super) async fn publish_work(self: Arc<Self>, mut outbox: UnboundedReceiver<Outgoing>) {
        let mut next = None;
        let mut sending = futures::stream::FuturesUnordered::new();
        loop {
            let first = match next.take() {
                Some(first) => first,
                None => tokio::select! {
                    got = outbox.recv() => match got {
                        Some(first) => first,
                        None => break,
                    },
                    Some(()) = sending.next(), if !sending.is_empty() => continue,
                },
            };
            let (batch, rest) = gather(
                self.batch_max,
                first,
                |o| o.expected,
                || outbox.try_recv().ok(),
            );
            next = rest;
            sending.push(self.hand_over(batch));
            while sending.len() >= HANDOVERS {
                sending.next().await;
            }
        }
        while sending.next().await.is_some() {}
    }

    /// The work queue for a task of type `name`: one that a live worker of this type and
    /// schema takes from, in turn when there are several.
    pub(super) fn route(&self, name: &str) -> Option<String> {
        let routes = self.routes.lock();
        let queues = routes.get(name).filter(|q| !q.is_empty())?;
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        Some(queues[turn % queues.len()].clone())
    }

    /// Publishes a batch on the work queues of its types (one message per queue), retrying
    /// while NATS is away or no live worker runs a type yet (the message id makes a retry
    /// count once); a task cancelled, or given up on by its slot, before it got there ends
    /// here.
    pub(super) async fn hand_over(&self, batch: Vec<Outgoing>) {
        let mut waiting: Vec<Outgoing> = batch;
        let mut warned = false;
        loop {
            waiting.retain(|outgoing| {
                let cancelled = outgoing.cancel.is_raised();
                if cancelled {
                    self.deliver(
                        outgoing.item.task,
                        Ended::unstarted(Err(TaskError::Cancelled)),
                    );
                }
                !cancelled && self.waiting.lock().contains_key(&outgoing.item.task)
            });
            if waiting.is_empty() {
                return;
            }
            let mut by_queue: HashMap<String, Vec<Outgoing>> = HashMap::new();
            let mut unrouted = Vec::new();
            for outgoing in waiting {
                match self.route(&outgoing.item.name) {
                    Some(queue) => by_queue.entry(queue).or_default().push(outgoing),
                    None => unrouted.push(outgoing),
                }
            }
            let mut problem = None;
            for (queue, group) in by_queue {
                match self.publish(&queue, &group).await {
                    Ok(()) => {}
                    Err(error) => {
                        problem = Some(error);
                        unrouted.extend(group);
                    }
                }
            }
            waiting = unrouted;
            if waiting.is_empty() {
                return;
            }
            if !warned {
                let why = problem.unwrap_or_else(|| "no live worker runs its type yet".into());
                tracing::warn!(error = %why, tasks = waiting.len(), "a task was not handed over: retrying");
                warned = true;
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }

    /// One work message on `queue`'s subject, stored by JetStream.
    pub(super) async fn publish(&self, queue: &str, group: &[Outgoing]) -> Result<(), String> {
        let items: Vec<&WorkItem> = group.iter().map(|outgoing| &outgoing.item).collect();
        let payload: bytes::Bytes = match serde_json::to_vec(&items) {
            Ok(payload) => payload.into(),
            Err(error) => {
                for outgoing in group {
                    self.deliver(
                        outgoing.item.task,
                        Ended::unstarted(Err(TaskError::Failed(format!("encoding: {error}")))),
                    );
                }
                return Ok(());
            }
        };
        self.conn
            .store(
                self.conn.names.work_subject(queue),
                payload,
                &group[0].item.key(),
            )
            .await?;
        metrics::counter!("offload_nats_work_messages_total").increment(1);
        metrics::counter!("offload_nats_work_tasks_total").increment(group.len() as u64);
        let now = Instant::now();
        let mut waiting = self.waiting.lock();
        for outgoing in group {
            record_stage(TO_JETSTREAM, now - outgoing.released);
            if let Some(waiter) = waiting.get_mut(&outgoing.item.task) {
                waiter.handed_over = Some(now);
            }
        }
        Ok(())
    }

    pub(super) async fn send_cancel(&self, key: String) {
        let Ok(payload) = serde_json::to_vec(&CancelItem::Task { key }) else {
            return;
        };
        if let Err(error) = self
            .conn
            .client
            .publish(self.conn.names.cancel_subject(), payload.into())
            .await
        {
            tracing::warn!(%error, "a cancel was not sent");
        }
    }
}
