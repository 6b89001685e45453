//! The results leg: results and progress come back from the workers and are handed to the
//! futures that await them.

use super::*;

impl Dispatch {
    /// Ends the slot awaiting `task`, if one still does. A task that ran twice (its first
    /// worker was slow to ack) is answered once: the second result finds nobody waiting.
    pub(super) fn deliver(&self, task: TaskId, ended: Ended) {
        if let Some(waiter) = self.waiting.lock().remove(&task) {
            let _ = waiter.done.send(ended);
        }
    }

    /// This server's results in one results message. One that does not decode as a whole is
    /// read item by item: each task whose result does not decode fails with the reason, so
    /// none is left waiting for its deadline.
    pub(super) fn results(&self, payload: &[u8]) {
        match serde_json::from_slice::<Vec<ResultItem>>(payload) {
            Ok(results) => {
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
                self.results(&message.payload);
                let _ = message.ack().await;
            }
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }

    pub(super) async fn listen_progress(self: Arc<Self>, mut progress: async_nats::Subscriber) {
        while let Some(message) = progress.next().await {
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
