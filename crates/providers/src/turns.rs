//! Conversations for wires that want alternating turns (Anthropic's `messages`, Gemini's
//! `contents`): blocks of one role in a row join one turn.

use serde_json::{json, Value};

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
