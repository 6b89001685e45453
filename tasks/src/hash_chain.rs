//! `hash-chain`: hashes a text, then hashes the digest again, a given number of times, and
//! returns the last digest in hex. Each round needs the previous one, so the work cannot be
//! split: a classic proof-of-work and key-stretching shape, and a form with text, a choice and
//! a number in one.

use std::time::Duration;

use offload_task::{Task, TaskContext, TaskError};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The `hash-chain` task.
pub struct HashChain;

/// Most rounds accepted: about a minute of SHA-256 on one core.
const MAX_ROUNDS: u64 = 500_000_000;

/// Rounds between two looks at the cancel flag (a few ms of work at most).
const CHECK_EVERY: u64 = 4_096;

/// What to hash, with what, how often.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// Text
    ///
    /// Hashed first, as UTF-8; up to 10,000 characters.
    #[schemars(length(max = 10_000))]
    #[serde(default = "default_text")]
    pub text: String,
    /// Algorithm
    #[serde(default)]
    pub algorithm: Algorithm,
    /// Rounds
    ///
    /// How many times to hash: the text once, then each digest again. Up to 500 million.
    #[schemars(range(min = 1, max = MAX_ROUNDS))]
    #[serde(default = "default_rounds")]
    pub rounds: u64,
}

fn default_text() -> String {
    "Offload".into()
}

fn default_rounds() -> u64 {
    1_000_000
}

/// The hash function.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// SHA-256
    #[default]
    Sha256,
    /// BLAKE3
    Blake3,
}

impl Algorithm {
    fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Blake3 => "blake3",
        }
    }

    /// Rounds per second assumed for admission: a third of what one core of this project's
    /// CI machine does (32-byte inputs), so that an estimate errs long.
    fn rounds_per_second(self) -> f64 {
        match self {
            Self::Sha256 => 2.0e6,
            Self::Blake3 => 1.5e6,
        }
    }

    fn hash(self, data: &[u8]) -> [u8; 32] {
        match self {
            Self::Sha256 => Sha256::digest(data).into(),
            Self::Blake3 => blake3::hash(data).into(),
        }
    }
}

/// The last digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Output {
    /// 64 hex digits.
    pub digest: String,
}

impl Task for HashChain {
    const NAME: &'static str = "hash-chain";
    const TITLE: &'static str = "Hash chain";
    const DESCRIPTION: &'static str = "Hashes a text with SHA-256 or BLAKE3, then hashes the \
        digest again and again, and returns the last one. Every round needs the one before, so \
        the work cannot be split or skipped: the shape of proof-of-work and of password \
        stretching. A million rounds take about half a second.";
    type Input = Input;
    type Output = Output;

    fn expected_duration(input: &Input) -> Option<Duration> {
        Some(Duration::from_secs_f64(
            input.rounds as f64 / input.algorithm.rounds_per_second(),
        ))
    }

    /// `sha256×1000000("Offload")=5f…`
    fn summary(input: &Input, output: &Output) -> String {
        format!(
            "{}×{}({:?})={}",
            input.algorithm.name(),
            input.rounds,
            brief(&input.text),
            output.digest
        )
    }

    fn run(input: Input, ctx: &TaskContext<'_>) -> Result<Output, TaskError> {
        let mut digest = input.algorithm.hash(input.text.as_bytes());
        let mut done = 1;
        while done < input.rounds {
            let stop = (done + CHECK_EVERY).min(input.rounds);
            while done < stop {
                digest = input.algorithm.hash(&digest);
                done += 1;
            }
            if ctx.is_cancelled() {
                return Err(TaskError::Cancelled);
            }
            ctx.report_progress(done as f64 / input.rounds as f64);
        }
        ctx.report_progress(1.0);
        Ok(Output {
            digest: digest.iter().map(|b| format!("{b:02x}")).collect(),
        })
    }
}

/// The text as the terminal quotes it: at most 20 characters.
fn brief(text: &str) -> String {
    if text.chars().count() <= 20 {
        text.to_owned()
    } else {
        text.chars().take(20).collect::<String>() + "…"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use offload_task::testing::Recorder;

    fn run(text: &str, algorithm: Algorithm, rounds: u64) -> String {
        let input = Input {
            text: text.into(),
            algorithm,
            rounds,
        };
        Recorder::new()
            .run(|ctx| HashChain::run(input, ctx))
            .unwrap()
            .digest
    }

    #[test]
    fn one_round_is_the_algorithms_own_digest() {
        // FIPS 180-2's and BLAKE3's published test vectors for "abc" and "".
        assert_eq!(
            run("abc", Algorithm::Sha256, 1),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            run("", Algorithm::Sha256, 1),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            run("", Algorithm::Blake3, 1),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }

    #[test]
    fn later_rounds_hash_the_raw_digest() {
        // Python: h = sha256(b"abc").digest(); 999 × h = sha256(h).digest()
        assert_eq!(
            run("abc", Algorithm::Sha256, 1000),
            "fc8a6b86a13f71cd9a67f558ab6fd82a3dd89186163a017ed8051acf6d3f8f99"
        );
        let once = blake3::hash(b"abc");
        assert_eq!(
            run("abc", Algorithm::Blake3, 2),
            blake3::hash(once.as_bytes()).to_hex().as_str()
        );
    }

    #[test]
    fn a_cancelled_chain_stops_at_its_next_check() {
        let input = Input {
            text: "x".into(),
            algorithm: Algorithm::Sha256,
            rounds: MAX_ROUNDS,
        };
        assert_eq!(
            Recorder::cancelled().run(|ctx| HashChain::run(input, ctx)),
            Err(TaskError::Cancelled)
        );
    }

    #[test]
    fn the_form_has_text_a_choice_and_a_bounded_number_with_defaults() {
        let registry = offload_task::Registry::empty().register::<HashChain>();
        let chain = registry.first().unwrap();
        let form = chain.form(None);
        let labels: Vec<&str> = form.fields.iter().map(|f| f.label.as_str()).collect();
        assert_eq!(labels, ["Text", "Algorithm", "Rounds"]);
        assert_eq!(form.values, ["Offload", "sha256", "1000000"]);
        assert!(
            chain
                .from_form([("rounds", "0")])
                .unwrap_err()
                .message
                .contains("1 or more")
        );
        assert_eq!(
            chain
                .from_form([("algorithm", "md5")])
                .unwrap_err()
                .field
                .as_deref(),
            Some("algorithm")
        );
        let long = "x".repeat(10_001);
        assert_eq!(
            chain
                .from_form([("text", long.as_str())])
                .unwrap_err()
                .field
                .as_deref(),
            Some("text")
        );
        let input = chain
            .from_form([("text", "abc"), ("algorithm", "sha256"), ("rounds", "1")])
            .unwrap();
        let output = serde_json::json!({
            "digest": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        });
        assert_eq!(
            chain.summary(&input, &output),
            "sha256×1(\"abc\")=ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(
            HashChain::expected_duration(&Input {
                text: String::new(),
                algorithm: Algorithm::Sha256,
                rounds: 1_000_000
            })
            .is_some_and(|d| d < Duration::from_secs(1))
        );
    }
}
