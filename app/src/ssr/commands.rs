//! A recorded task as the commands that would submit it again: `offload submit` and `curl`,
//! each quoted for a POSIX shell (the task's detail page shows them).

/// Task `record` as commands for a server reached at `host`: `offload submit` with its fields
/// as FIELD=VALUE, and the API call with `curl`. Both read the token from `OFFLOAD_TOKEN`.
pub fn as_commands(host: &str, task_type: &str, input: &serde_json::Value) -> (String, String) {
    let mut command = format!("offload submit --server http://{host} --wait {task_type}");
    if let Some(fields) = input.as_object() {
        for (name, value) in fields {
            let text = match value {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            command.push(' ');
            command.push_str(&shell_word(&format!("{name}={text}")));
        }
    }
    let body = serde_json::json!({"type": task_type, "input": input}).to_string();
    let curl = format!(
        "curl -H \"Authorization: Bearer $OFFLOAD_TOKEN\" -H 'Content-Type: application/json' -d {} http://{host}/api/v1/tasks",
        shell_word(&body)
    );
    (command, curl)
}

/// `word` as one POSIX shell word: as it is when it is plainly safe, else in single quotes.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "=-_.,:/+@%".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn a_task_reads_back_as_commands_a_shell_takes_word_for_word() {
        let input = json!({"text": "it's a test", "rounds": 3, "smooth": true});
        let (command, curl) = super::as_commands("127.0.0.1:3000", "hash-chain", &input);
        assert_eq!(
            command,
            "offload submit --server http://127.0.0.1:3000 --wait hash-chain \
             'text=it'\\''s a test' rounds=3 smooth=true"
        );
        assert_eq!(
            curl,
            "curl -H \"Authorization: Bearer $OFFLOAD_TOKEN\" -H 'Content-Type: application/json' \
             -d '{\"type\":\"hash-chain\",\"input\":{\"text\":\"it'\\''s a test\",\"rounds\":3,\"smooth\":true}}' \
             http://127.0.0.1:3000/api/v1/tasks"
        );
        assert_eq!(super::shell_word(""), "''");
        assert_eq!(super::shell_word("$(rm -rf /)"), "'$(rm -rf /)'");
    }
}
