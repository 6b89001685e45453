//! The results leg: results and progress come back from the workers and are handed to the
//! futures that await them. Results come as core requests, or, when this server did not answer
//! one in time, from the results stream; a task's result is taken once either way.

use metrics::counter;

use super::*;

/// Every message this server takes counted (`/metrics`), zero included: a fallback store in
/// a healthy run is worth seeing.
pub(super) fn count_from_zero() {
    for path in ["request", "stream"] {
        counter!("offload_nats_result_messages_total", "path" => path).increment(0);
    }
    counter!("offload_nats_results_total").increment(0);
    counter!("offload_nats_progress_messages_total").increment(0);
    counter!("offload_nats_work_messages_total").increment(0);
    counter!("offload_nats_work_tasks_total").increment(0);
}

impl Dispatch {
    /// Ends the slot awaiting `task`, if one still does. A task that ran twice (its first
    /// worker was slow to ack) is answered once: the second result finds nobody waiting.
    pub(super) fn deliver(&self, task: TaskId, ended: Ended) {
        if let Some(waiter) = self.waiting.lock().remove(&task) {
            if let Some(handed_over) = waiter.handed_over {
                record_stage(THERE_AND_BACK, handed_over.elapsed());
            }
            let _ = waiter.done.send(ended);
        }
    }

    /// This server's results in one results message. One that does not decode as a whole is
    /// read item by item: each task whose result does not decode fails with the reason, so
    /// none is left waiting for its deadline.
    pub(super) fn results(&self, payload: &[u8]) {
        match serde_json::from_slice::<Vec<ResultItem>>(payload) {
            Ok(results) => {
                counter!("offload_nats_results_total").increment(results.len() as u64);
                for result in results.into_iter().filter(|r| r.boot == self.boot) {
                    tracing::debug!(task = %result.task, worker = %result.worker, "result");
                    self.deliver(result.task, result.into());
                }
            }
            Err(error) => match serde_json::from_slice::<Vec<Value>>(payload) {
                Ok(items) => {
                    for item in items {
                        let id = |field: &str| item.get(field).and_then(Value::as_u64);
                        let (Some(boot), Some(task)) = (id("boot"), id("task")) else {
                            tracing::warn!("a result that names no task: dropped");
                            continue;
                        };
                        if boot != self.boot {
                            continue;
                        }
                        let ended = match serde_json::from_value::<ResultItem>(item) {
                            Ok(result) => result.into(),
                            Err(error) => Ended::unstarted(Err(TaskError::Failed(format!(
                                "its worker's result did not decode: {error}"
                            )))),
                        };
                        self.deliver(TaskId(task), ended);
                    }
                }
                Err(_) => {
                    tracing::warn!(%error, "results that do not decode: their tasks end at their deadline");
                }
            },
        }
    }

    pub(super) async fn listen_results(self: Arc<Self>, consumer: consumer::PullConsumer) {
        loop {
            let mut messages = match consumer.messages().await {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::debug!(%error, "results not reachable; retrying");
                    tokio::time::sleep(RETRY_EVERY).await;
                    continue;
                }
            };
            while let Some(next) = messages.next().await {
                let message = match next {
                    Ok(message) => message,
                    Err(error) => {
                        tracing::debug!(%error, "results stream interrupted");
                        break;
                    }
                };
                counter!("offload_nats_result_messages_total", "path" => "stream").increment(1);
                self.results(&message.payload);
                let _ = message.ack().await;
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }

    /// Results a worker sends as a core request: handed to their waiting slots, then answered,
    /// and the worker acks their work. A request this server does not answer in time (it is
    /// stopped, or cut off) is stored in the results stream instead, and comes again through
    /// [`Self::listen_results`]: the second copy finds nobody waiting.
    pub(super) async fn listen_result_requests(
        self: Arc<Self>,
        mut requests: async_nats::Subscriber,
    ) {
        while let Some(request) = requests.next().await {
            counter!("offload_nats_result_messages_total", "path" => "request").increment(1);
            self.results(&request.payload);
            if let Some(reply) = request.reply
                && let Err(error) = self.conn.client.publish(reply, bytes::Bytes::new()).await
            {
                tracing::debug!(%error, "results taken, the answer not sent: they come again");
            }
        }
    }

    pub(super) async fn listen_progress(self: Arc<Self>, mut progress: async_nats::Subscriber) {
        while let Some(message) = progress.next().await {
            counter!("offload_nats_progress_messages_total").increment(1);
            if let Ok(update) = serde_json::from_slice::<ProgressItem>(&message.payload)
                && update.boot == self.boot
                && let Some(waiter) = self.waiting.lock().get(&update.task)
            {
                waiter
                    .progress
                    .send_replace(update.fraction.clamp(0.0, 1.0));
            }
        }
    }
}
