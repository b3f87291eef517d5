//! Server-sent-event framing: turns one serializable value into one `data:` frame (optionally
//! preceded by an `event:` line, as the Responses surface needs) and provides the `[DONE]`
//! terminator of the Chat Completions stream.
//!
//! It does not decide what goes into a stream, flush sockets, or send keep-alives; the server
//! writes the returned strings as they are.

use serde::Serialize;

/// The frame that ends a Chat Completions stream.
pub const DONE_FRAME: &str = "data: [DONE]\n\n";

/// `data: <json>\n\n`. JSON never contains a raw newline, so one `data:` line is always enough.
pub fn data_frame(json: &impl Serialize) -> String {
    format!("data: {}\n\n", to_json(json))
}

/// `event: <event>\ndata: <json>\n\n`.
pub fn event_frame(event: &str, json: &impl Serialize) -> String {
    format!("event: {event}\ndata: {}\n\n", to_json(json))
}

/// Serializing our own wire types cannot fail (no non-string map keys); should it ever, the
/// client gets an error object in the stream instead of a broken frame.
fn to_json(json: &impl Serialize) -> String {
    serde_json::to_string(json).unwrap_or_else(|_| {
        r#"{"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}"#
            .to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn frames_are_single_data_lines() {
        assert_eq!(
            data_frame(&json!({"a": "x\ny"})),
            "data: {\"a\":\"x\\ny\"}\n\n"
        );
        assert_eq!(
            event_frame("response.created", &json!({"b": 1})),
            "event: response.created\ndata: {\"b\":1}\n\n"
        );
        assert_eq!(DONE_FRAME, "data: [DONE]\n\n");
    }
}
