//! The results leg of a worker: each delivery's results are gathered into messages no bigger
//! than the NATS server carries and stored in the results stream; the work message is acked only
//! once they are.

use super::*;

impl State {
    /// Stores results as they come, those finished meanwhile together, one message per app
    /// server; a work message is acked once all its results are stored.
    pub(super) async fn publish_results(
        self: Arc<Self>,
        mut finished: mpsc::UnboundedReceiver<Finished>,
    ) {
        while let Some(first) = finished.recv().await {
            let mut by_server: HashMap<String, Vec<Finished>> = HashMap::new();
            by_server
                .entry(first.subject.clone())
                .or_default()
                .push(first);
            for _ in 1..RESULTS_MAX {
                let Ok(more) = finished.try_recv() else {
                    break;
                };
                by_server
                    .entry(more.subject.clone())
                    .or_default()
                    .push(more);
            }
            for (subject, group) in by_server {
                self.store_results(subject, group).await;
            }
        }
    }

    /// Publishes results until JetStream has them (if NATS is away, it keeps trying; the message
    /// id makes a repeated publish count once), then acks the work messages they complete.
    /// Results go together in as few messages as the server's `max_payload` allows.
    pub(super) async fn store_results(&self, subject: String, group: Vec<Finished>) {
        let max_payload = self.conn.client.server_info().max_payload;
        let encoded: Vec<Vec<u8>> = group
            .iter()
            .map(|f| encode_result(&f.result, max_payload))
            .collect();
        for (range, payload) in pack(&encoded, max_payload) {
            let payload = bytes::Bytes::from(payload);
            let id = format!("{}+{}", group[range.start].key, range.len());
            while let Err(error) = self.conn.store(subject.clone(), payload.clone(), &id).await {
                tracing::debug!(%error, "results not stored yet");
                tokio::time::sleep(RETRY_EVERY).await;
            }
        }
        for finished in group {
            if finished.delivery.unfinished.fetch_sub(1, Ordering::AcqRel) == 1
                && let Err(error) = finished.delivery.message.ack().await
            {
                // It will be delivered again and its results, duplicates, ignored.
                tracing::debug!(%error, "ack not sent");
            }
        }
    }
}
