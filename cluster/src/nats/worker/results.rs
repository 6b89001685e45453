//! The results leg of a worker: each delivery's results are gathered into messages no bigger
//! than the NATS server carries and sent to their app server as core requests; what it does not
//! answer in time is stored in the results stream instead. The work message is acked only once
//! its results are taken, one way or the other.

use bytes::Bytes;
use metrics::counter;

use super::*;

/// Results messages on their way at once: while they travel, the next results pile up and
/// go together.
const SENDING: usize = 2;

/// Every message this worker sends counted (`/metrics`), zero included: a fallback store in a
/// healthy run is worth seeing.
pub(super) fn count_from_zero() {
    counter!("offload_worker_result_requests_total").increment(0);
    counter!("offload_worker_result_fallbacks_total").increment(0);
    counter!("offload_worker_progress_messages_total").increment(0);
}

impl State {
    /// Sends results as they come, those finished meanwhile together, one message per app
    /// server, [`SENDING`] messages at a time; a work message is acked once all its results
    /// are taken.
    pub(super) async fn publish_results(
        self: Arc<Self>,
        mut finished: mpsc::UnboundedReceiver<Finished>,
    ) {
        let mut sending = futures::stream::FuturesUnordered::new();
        loop {
            let first = tokio::select! {
                got = finished.recv() => match got {
                    Some(first) => first,
                    None => break,
                },
                Some(()) = sending.next(), if !sending.is_empty() => continue,
            };
            let mut by_server: HashMap<String, Vec<Finished>> = HashMap::new();
            by_server
                .entry(first.server.clone())
                .or_default()
                .push(first);
            for _ in 1..RESULTS_MAX {
                let Ok(more) = finished.try_recv() else {
                    break;
                };
                by_server.entry(more.server.clone()).or_default().push(more);
            }
            for (server, group) in by_server {
                sending.push(self.send_results(server, group));
                while sending.len() >= SENDING {
                    sending.next().await;
                }
            }
        }
        while sending.next().await.is_some() {}
    }

    /// Sends results to `server` in as few messages as the NATS server's `max_payload` allows,
    /// each as a core request, or stored in the results stream when the request is not
    /// answered (if NATS is away, it keeps trying; the message id makes a repeated store count
    /// once); then acks the work messages they complete.
    pub(super) async fn send_results(&self, server: String, group: Vec<Finished>) {
        let max_payload = self.conn.client.server_info().max_payload;
        let encoded: Vec<Vec<u8>> = group
            .iter()
            .map(|f| encode_result(&f.result, max_payload))
            .collect();
        for (range, payload) in pack(&encoded, max_payload) {
            let payload = Bytes::from(payload);
            if self.request(&server, payload.clone()).await {
                continue;
            }
            counter!("offload_worker_result_fallbacks_total").increment(1);
            let subject = self.conn.names.results_subject(&server);
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

    /// Whether `server` took the results in `payload`, sent as a core request.
    async fn request(&self, server: &str, payload: Bytes) -> bool {
        counter!("offload_worker_result_requests_total").increment(1);
        let request = async_nats::Request::new()
            .payload(payload)
            .timeout(Some(RESULT_REQUEST_PATIENCE));
        let subject = self.conn.names.result_requests_subject(server);
        match self.conn.client.send_request(subject, request).await {
            Ok(_) => true,
            Err(error) => {
                tracing::debug!(%error, server, "results not taken by their app server: storing them");
                false
            }
        }
    }
}
