//! Conversations for wires that want alternating turns (Anthropic's `messages`, Gemini's
//! `contents`): blocks of one role in a row join one turn; tool-call arguments as the JSON
//! object those wires want.

use serde_json::{json, Value};
use switchboard_model::{Error, RequestField};

/// A past call's arguments as a JSON value (no arguments are an empty object).
///
/// # Errors
/// Arguments that are not JSON, naming the call and the `provider` that needs them.
pub fn call_arguments(call_id: &str, arguments: &str, provider: &str) -> Result<Value, Error> {
    if arguments.trim().is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_str(arguments).map_err(|_| {
        Error::invalid_at(
            RequestField::Conversation,
            format!(
                "The arguments of tool call '{call_id}' are not valid JSON; {provider} models \
                 need them as a JSON object."
            ),
        )
    })
}

pub struct Turns {
    turns: Vec<Value>,
    /// The key of a turn's block list (`content`, `parts`).
    blocks_key: &'static str,
}

impl Turns {
    #[must_use]
    pub fn new(blocks_key: &'static str) -> Self {
        Self {
            turns: Vec::new(),
            blocks_key,
        }
    }

    /// Adds `block` to the last turn if it has `role`, else opens a turn.
    pub fn push(&mut self, role: &str, block: Value) {
        if let Some(last) = self.turns.last_mut() {
            if last["role"] == role {
                if let Some(Value::Array(blocks)) = last.get_mut(self.blocks_key) {
                    blocks.push(block);
                    return;
                }
            }
        }
        let mut turn = json!({"role": role});
        turn[self.blocks_key] = Value::Array(vec![block]);
        self.turns.push(turn);
    }

    #[must_use]
    pub fn into_turns(self) -> Vec<Value> {
        self.turns
    }
}
