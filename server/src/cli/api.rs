//! The client's side of the JSON API: calls, event streams, and how a command's failure
//! becomes its exit code.

use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use super::{Connection, text};

/// How a command ended, as its exit code says.
pub(super) enum Failure {
    /// The server refused: bad input, no such task, a full queue (2).
    Refused(String),
    /// The work failed, or the server could not be reached (1).
    Failed(String),
}

impl Failure {
    pub(super) fn exit(self) -> ExitCode {
        let (code, message) = match self {
            Self::Refused(message) => (2, message),
            Self::Failed(message) => (1, message),
        };
        if !message.is_empty() {
            eprintln!("offload: {message}");
        }
        ExitCode::from(code)
    }
}

/// `pairs` as a URL query, encoded by the `url` crate reqwest is built on.
pub(super) fn query(pairs: &[(&str, String)]) -> String {
    let mut url = reqwest::Url::parse("http://x/").expect("a constant URL");
    url.query_pairs_mut().extend_pairs(pairs);
    url.query().unwrap_or_default().to_owned()
}

/// The server's API, by URL and token.
pub(super) struct Api {
    http: reqwest::Client,
    /// For event streams: no overall time limit.
    streams: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Api {
    pub(super) fn new(connection: Connection) -> Result<Self, Failure> {
        let base = connection.server.trim_end_matches('/').to_owned();
        if !base.starts_with("http://") {
            return Err(Failure::Refused(format!(
                "{base:?}: this build speaks plain http:// (reach a remote server through an \
                 SSH tunnel or a TLS-terminating proxy on this machine)"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Failure::Failed(e.to_string()))?;
        Ok(Self {
            http,
            streams: reqwest::Client::new(),
            base,
            token: connection.token,
        })
    }

    /// Calls the API; a problem comes back as a refusal with its detail.
    pub(super) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        let text = self.send(method, path, body).await?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// Calls the API for a body that is not JSON (a CSV).
    pub(super) async fn text(&self, path: &str) -> Result<String, Failure> {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<String, Failure> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.map_err(|e| {
            Failure::Failed(format!("cannot reach the server at {}: {e}", self.base))
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| Failure::Failed(format!("the server's answer broke off: {e}")))?;
        if status.is_success() {
            return Ok(text);
        }
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        let detail = value["detail"]
            .as_str()
            .map_or_else(|| format!("{status}: {value}"), str::to_owned);
        let field = value["field"]
            .as_str()
            .map(|f| format!(" (field {f})"))
            .unwrap_or_default();
        Err(Failure::Refused(format!("{detail}{field}")))
    }

    /// Opens an event stream (its requests have no time limit: a task may run for hours).
    pub(super) async fn stream(&self, path: &str) -> Result<reqwest::Response, Failure> {
        let mut request = self.streams.get(format!("{}{path}", self.base));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => Ok(response),
            Ok(response) => Err(Failure::Failed(format!("{}", response.status()))),
            Err(error) => Err(Failure::Failed(error.to_string())),
        }
    }

    pub(super) async fn types(&self) -> Result<Vec<Value>, Failure> {
        let types = self
            .call(reqwest::Method::GET, "/api/v1/task-types", None)
            .await?;
        Ok(types.as_array().cloned().unwrap_or_default())
    }

    pub(super) async fn task(&self, id: u64) -> Result<Value, Failure> {
        self.call(reqwest::Method::GET, &format!("/api/v1/tasks/{id}"), None)
            .await
    }

    /// `FIELD=VALUE` arguments (see [`super::field_pairs`]) as the input of `task_type`, parsed against the input schema
    /// the server publishes, with the same parser and messages as its form.
    pub(super) async fn input(
        &self,
        task_type: &str,
        pairs: &[(&str, &str)],
    ) -> Result<Value, Failure> {
        let types = self.types().await?;
        let Some(kind) = types.iter().find(|t| t["name"] == task_type) else {
            let names: Vec<String> = types.iter().map(|t| text(&t["name"])).collect();
            return Err(Failure::Refused(format!(
                "there is no task type {task_type:?}: choose one of {}",
                names.join(", ")
            )));
        };
        cluster::input_from_fields(&kind["input_schema"], pairs.iter().copied()).map_err(|error| {
            let at = error
                .field
                .map(|f| format!(" (field {f})"))
                .unwrap_or_default();
            Failure::Refused(format!("{}{at}", error.message))
        })
    }
}
