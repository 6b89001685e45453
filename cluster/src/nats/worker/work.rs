//! The work leg of a worker: pull work messages as threads free, check each task (its type and
//! schema, its attempt, whether it was cancelled or superseded) and run it on a worker thread,
//! never on tokio's.

use super::*;

impl State {
    /// Keeps exactly one pull request of one message open at JetStream per idle thread, all
    /// on one inbox, while no task waits here: no worker holds work it cannot start while
    /// another sits idle, and a message costs one request, not a subscription. A message may
    /// carry several quick tasks (the app server batches them); they wait here for a thread.
    /// Requests are served oldest first, so a message or an expiry answers the oldest; one
    /// whose answer never came (NATS restarted) is forgotten after its expiry and asked again.
    pub(super) async fn pull(
        self: Arc<Self>,
        threads: usize,
        finished: mpsc::UnboundedSender<Finished>,
    ) {
        let client = &self.conn.client;
        let inbox = async_nats::Subject::from(client.new_inbox());
        let mut answers = loop {
            match client.subscribe(inbox.clone()).await {
                Ok(answers) => break answers,
                Err(error) => {
                    tracing::debug!(%error, "no inbox yet; retrying");
                    tokio::time::sleep(RETRY_EVERY).await;
                }
            }
        };
        let (freed_tx, mut freed) = mpsc::unbounded_channel::<usize>();
        let mut idle: Vec<usize> = (0..threads).rev().collect();
        let mut waiting: VecDeque<(Arc<Delivery>, WorkItem)> = VecDeque::new();
        let mut open: VecDeque<tokio::time::Instant> = VecDeque::new();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            while !waiting.is_empty()
                && let Some(slot) = idle.pop()
                && let Some((delivery, item)) = waiting.pop_front()
            {
                let (state, freed_tx, finished) =
                    (self.clone(), freed_tx.clone(), finished.clone());
                tokio::spawn(async move {
                    let result = state.handle(slot, delivery.clone(), item).await;
                    // Stored by JetStream while this thread runs its next task.
                    for result in delivery.ran(result).into_iter().flatten() {
                        let _ = finished.send(result);
                    }
                    let _ = freed_tx.send(slot);
                });
            }
            let stopping = self.stopping.load(Ordering::Relaxed);
            if stopping && idle.len() == threads && waiting.is_empty() {
                return;
            }
            while !stopping && waiting.is_empty() && open.len() < idle.len() {
                let request = BatchConfig {
                    batch: 1,
                    expires: Some(PULL_EXPIRES),
                    ..Default::default()
                };
                if let Err(error) = self.work.request_batch(request, inbox.clone()).await {
                    tracing::debug!(%error, "pull request not sent; retrying");
                    break;
                }
                open.push_back(tokio::time::Instant::now() + PULL_EXPIRES + RETRY_EVERY);
            }
            tokio::select! {
                Some(slot) = freed.recv() => idle.push(slot),
                Some(answer) = answers.next() => {
                    open.pop_front();
                    if let Some((delivery, items)) = self.delivery(answer, stopping).await {
                        waiting.extend(items.into_iter().map(|item| (delivery.clone(), item)));
                    }
                }
                _ = tick.tick() => {
                    let now = tokio::time::Instant::now();
                    while open.front().is_some_and(|deadline| *deadline < now) {
                        open.pop_front();
                    }
                }
            }
        }
    }

    /// The tasks a pull request's `answer` brought, as one delivery kept in progress while
    /// they run; None for an answer without any (an expiry, work that does not decode) or
    /// while `stopping` (the message goes straight back to the queue for another worker).
    async fn delivery(
        &self,
        answer: async_nats::Message,
        stopping: bool,
    ) -> Option<(Arc<Delivery>, Vec<WorkItem>)> {
        // A status (408: the request expired) answers a request without a task.
        if answer.status.is_some() || answer.reply.is_none() {
            return None;
        }
        let message = Message {
            message: answer,
            context: self.conn.js.clone(),
        };
        if stopping {
            let _ = message.ack_with(AckKind::Nak(None)).await;
            return None;
        }
        let items: Vec<WorkItem> = match serde_json::from_slice(&message.payload) {
            Ok(items) => items,
            Err(error) => {
                tracing::warn!(%error, "work that does not decode: dropped");
                let _ = message.ack_with(AckKind::Term).await;
                return None;
            }
        };
        if items.is_empty() {
            let _ = message.ack().await;
            return None;
        }
        let delivery = Arc::new(Delivery {
            delivered: message.info().map_or(1, |info| info.delivered),
            unfinished: AtomicUsize::new(items.len()),
            tasks: items.len(),
            ran: Mutex::new(Vec::new()),
            message,
        });
        tokio::spawn(delivery.clone().keep_in_progress());
        Some((delivery, items))
    }

    pub(super) async fn handle(
        &self,
        slot: usize,
        delivery: Arc<Delivery>,
        item: WorkItem,
    ) -> Finished {
        let key = item.key();
        if delivery.delivered > 1 {
            tracing::warn!(task = %key, delivered = delivery.delivered, "running a task whose worker stopped answering");
        }
        let early_cancel = self.early_cancels.lock().1.remove(&key);
        // A task of an earlier start of its server: that server runs it again itself.
        let superseded = !self.newer_boot(&item.server, item.boot);
        let ran = Ran {
            worker: format!("{}/{slot}", self.name),
            started_at_ms: crate::now_ms(),
            attempt: u32::try_from(delivery.delivered).unwrap_or(1),
        };
        let (outcome, ran) = match refusal(
            &item,
            &self.registry,
            delivery.delivered,
            early_cancel || superseded,
        ) {
            Some(error) => (Err(error), None),
            None => (self.run(slot, &item, &key).await, Some(ran)),
        };
        Finished {
            server: item.server.clone(),
            key,
            result: ResultItem {
                boot: item.boot,
                task: item.task,
                outcome,
                worker: self.name.clone(),
                ran,
            },
            delivery,
        }
    }

    pub(super) async fn run(
        &self,
        slot: usize,
        item: &WorkItem,
        key: &str,
    ) -> Result<serde_json::Value, TaskError> {
        let cancel = Arc::new(AtomicBool::new(false));
        self.running.lock().insert(key.to_owned(), cancel.clone());
        self.threads.lock()[slot].begin(item.task, item.name.as_str().into(), now_ms());
        let (progress_tx, mut progress) = watch::channel(0.0);
        let registry = self.registry.clone();
        let (name, input) = (item.name.clone(), item.input.clone());
        let limit = output_limit(
            item.max_output_bytes,
            self.conn.client.server_info().max_payload,
        );
        let flag = cancel.clone();
        let started = Instant::now();
        let (done, mut job) = oneshot::channel();
        let work: Work = Box::new(move || {
            let publish = |fraction: f64| {
                progress_tx.send_replace(fraction);
            };
            let ctx = TaskContext::new(&flag, &publish);
            let _ = done.send(run_caught(&registry, &name, &input, &ctx, limit, false));
        });
        if self.runners[slot].send(work).is_err() {
            return Err(TaskError::Lost("its worker thread is gone".into()));
        }
        let progress_subject = self.conn.names.progress_subject(&item.server);
        let deadline = item
            .time_limit_ms
            .map(|ms| tokio::time::Instant::now() + Duration::from_millis(ms) + TIME_LIMIT_MARGIN);
        let mut timed_out = false;
        // Progress that has not been sent yet, and when it may be.
        let mut pending = false;
        let mut next_report = tokio::time::Instant::now() + PROGRESS_EVERY;
        let (outcome, output_bytes) = loop {
            tokio::select! {
                // Completion first: its result implies its last progress.
                biased;
                outcome = &mut job => {
                    break outcome.unwrap_or_else(|_| {
                        (Err(TaskError::Lost("its worker thread is gone".into())), 0)
                    });
                }
                () = sleep_until(deadline), if !timed_out => {
                    timed_out = true;
                    cancel.store(true, Ordering::Relaxed);
                }
                Ok(()) = progress.changed(), if !pending => pending = true,
                () = tokio::time::sleep_until(next_report), if pending => {
                    pending = false;
                    next_report = tokio::time::Instant::now() + PROGRESS_EVERY;
                    let fraction = *progress.borrow_and_update();
                    // A task at 100 % is about to end: its result says so.
                    if fraction < 1.0 {
                        self.report_progress(&progress_subject, item, fraction).await;
                    }
                }
            }
        };
        self.running.lock().remove(key);
        // A stopping worker lets its tasks finish: only the time limit stops them here.
        let outcome = why_stopped(outcome, item.time_limit_ms.filter(|_| timed_out), false);
        let compute_ms = started.elapsed().as_secs_f64() * 1e3;
        record_duration(&item.name, compute_ms);
        self.threads.lock()[slot].end(compute_ms, output_bytes);
        outcome
    }

    async fn report_progress(&self, subject: &str, item: &WorkItem, fraction: f64) {
        let update = ProgressItem {
            boot: item.boot,
            task: item.task,
            fraction,
        };
        if let Ok(payload) = serde_json::to_vec(&update) {
            metrics::counter!("offload_worker_progress_messages_total").increment(1);
            let _ = self
                .conn
                .client
                .publish(subject.to_owned(), payload.into())
                .await;
        }
    }
}
