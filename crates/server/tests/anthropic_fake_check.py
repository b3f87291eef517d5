"""Checks the fake Anthropic upstream of `anthropic_upstream.rs` with Anthropic's own Python SDK:
if the SDK reads the fake's stream into the message it documents, the fake speaks the wire. The
same script then runs against Switchboard's Messages surface in front of the fake, whose catalog
names the models as the fake does: the SDK must not tell the two apart.

Run by the `the_fake_speaks_anthropics_wire` test with SWITCHBOARD_BASE_URL set to the fake's
root. Prints ALL OK when every check passes; any failure raises.
"""

import os

import anthropic

client = anthropic.Anthropic(
    base_url=os.environ["SWITCHBOARD_BASE_URL"].removesuffix("/v1"),
    api_key="sk-ant-test",
    max_retries=0,
)

with client.messages.stream(
    model="claude-think",
    max_tokens=2048,
    thinking={"type": "enabled", "budget_tokens": 1024},
    tools=[{"name": "weather", "input_schema": {"type": "object"}}],
    messages=[{"role": "user", "content": "Weather in Oslo?"}],
) as stream:
    message = stream.get_final_message()

kinds = [block.type for block in message.content]
assert kinds == ["thinking", "text", "tool_use"], kinds
assert message.content[0].signature == "sig-issued-1", message.content[0]
assert message.content[2].input == {"city": "Oslo"}, message.content[2]
assert message.stop_reason == "tool_use", message.stop_reason
assert message.usage.cache_read_input_tokens == 5, message.usage

# The fake's checks are the API's: replaying the thinking block is required.
follow_up = [
    {"role": "user", "content": "Weather in Oslo?"},
    {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in message.content]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": message.content[2].id, "content": "sunny"}]},
]
with client.messages.stream(
    model="claude-think",
    max_tokens=2048,
    thinking={"type": "enabled", "budget_tokens": 1024},
    tools=[{"name": "weather", "input_schema": {"type": "object"}}],
    messages=follow_up,
) as stream:
    answer = stream.get_final_message()
assert answer.content[-1].text == "It is sunny in Oslo.", answer

try:
    client.messages.create(model="claude-overloaded", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    raise AssertionError("expected an overloaded error")
except anthropic.APIStatusError as error:
    assert error.status_code == 529, error
    assert error.body["error"]["type"] == "overloaded_error", error.body

try:
    client.messages.create(model="claude-limited", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    raise AssertionError("expected a rate limit error")
except anthropic.RateLimitError as error:
    assert error.body["error"]["type"] == "rate_limit_error", error.body

print("ALL OK")
