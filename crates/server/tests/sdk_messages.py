"""Drives a running Switchboard (the embedded model, API keys on) with Anthropic's official
Python SDK, unchanged: create, stream, a forced tool call in a multi-turn loop, count_tokens,
and each error class the SDK maps from our statuses.

Run by the `anthropic_sdk_on_the_local_model` test with SWITCHBOARD_BASE_URL (the server's /v1)
and SWITCHBOARD_MODEL set; the server accepts the key `sk-test`. Prints ALL OK when every check
passes; any failure raises.
"""

import os

import anthropic

ROOT = os.environ["SWITCHBOARD_BASE_URL"].removesuffix("/v1")
MODEL = os.environ["SWITCHBOARD_MODEL"]

client = anthropic.Anthropic(base_url=ROOT, api_key="sk-test", max_retries=0, timeout=120)
system = "You are a helpful assistant."
question = [{"role": "user", "content": "What is the capital of France?"}]

def prompt_tokens(usage):
    """The whole prompt: this API counts cache reads and writes apart from input_tokens."""
    return usage.input_tokens + (usage.cache_read_input_tokens or 0) + (usage.cache_creation_input_tokens or 0)


message = client.messages.create(model=MODEL, max_tokens=30, temperature=0, system=system, messages=question)
assert message.type == "message" and message.role == "assistant", message
assert message.id.startswith("msg_"), message.id
assert message.content[0].type == "text" and "Paris" in message.content[0].text, message.content
assert message.stop_reason in ("end_turn", "max_tokens"), message.stop_reason
assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0, message.usage

# Streaming gives the same answer, event by event.
with client.messages.stream(model=MODEL, max_tokens=30, temperature=0, system=system, messages=question) as stream:
    text = "".join(stream.text_stream)
    final = stream.get_final_message()
assert text == message.content[0].text, (text, message.content[0].text)
assert prompt_tokens(final.usage) == prompt_tokens(message.usage), final.usage
# The engine's prefix cache served the repeated prompt, and says so.
assert final.usage.cache_read_input_tokens > 0, final.usage

# count_tokens is exact on the local model: the prompt the create call was charged for.
count = client.messages.count_tokens(model=MODEL, system=system, messages=question)
assert count.input_tokens == prompt_tokens(message.usage), (count, message.usage)

# Stop sequences end the answer and are reported.
stopped = client.messages.create(
    model=MODEL, max_tokens=30, temperature=0, system=system, messages=question, stop_sequences=["Paris"]
)
assert stopped.stop_reason == "stop_sequence" and stopped.stop_sequence == "Paris", stopped
assert "Paris" not in stopped.content[0].text, stopped.content

# A forced tool call (guaranteed by constrained decoding), answered, then the model's reply.
tools = [
    {
        "name": "get_weather",
        "description": "Current weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]
ask = [{"role": "user", "content": "What is the weather in Paris?"}]
called = client.messages.create(
    model=MODEL,
    max_tokens=60,
    temperature=0,
    tools=tools,
    tool_choice={"type": "tool", "name": "get_weather"},
    messages=ask,
)
assert called.stop_reason == "tool_use", called
use = next(block for block in called.content if block.type == "tool_use")
assert use.id.startswith("toolu_") and use.name == "get_weather", use
assert isinstance(use.input, dict) and isinstance(use.input.get("city"), str), use.input

with client.messages.stream(
    model=MODEL,
    max_tokens=60,
    temperature=0,
    tools=tools,
    tool_choice={"type": "tool", "name": "get_weather"},
    messages=ask,
) as stream:
    streamed = stream.get_final_message()
assert [b.type for b in streamed.content] == [b.type for b in called.content], streamed.content
assert streamed.content[-1].input == use.input, (streamed.content, use.input)

follow_up = ask + [
    {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in called.content]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "Sunny, 24 C"}]},
]
reply = client.messages.create(model=MODEL, max_tokens=40, temperature=0, tools=tools, messages=follow_up)
assert reply.content and reply.content[0].type in ("text", "tool_use"), reply.content

# Each error status reaches the SDK as its own class, with Anthropic's error body.
try:
    client.messages.create(model=MODEL, max_tokens=10, temperature=1.5, messages=question)
    raise AssertionError("expected a 400")
except anthropic.BadRequestError as error:
    assert error.body["type"] == "error", error.body
    assert error.body["error"]["type"] == "invalid_request_error", error.body
    assert error.body["error"]["message"].startswith("temperature:"), error.body

try:
    client.messages.create(model="no-such-model", max_tokens=10, messages=question)
    raise AssertionError("expected a 404")
except anthropic.NotFoundError as error:
    assert error.body["error"]["type"] == "not_found_error", error.body

try:
    anthropic.Anthropic(base_url=ROOT, api_key="sk-wrong", max_retries=0).messages.create(
        model=MODEL, max_tokens=10, messages=question
    )
    raise AssertionError("expected a 401")
except anthropic.AuthenticationError as error:
    assert error.body["error"]["type"] == "authentication_error", error.body
    assert error.response.headers.get("request-id"), error.response.headers

try:
    client.messages.create(
        model=MODEL, max_tokens=10, messages=question,
        tools=[{"type": "code_execution_20250522", "name": "code_execution"}]
    )
    raise AssertionError("expected a 400 for a server tool")
except anthropic.BadRequestError as error:
    assert "code_execution_20250522" in error.body["error"]["message"], error.body

# Web search needs a search backend, which this server has not: the 400 says how to set one.
try:
    client.messages.create(
        model=MODEL, max_tokens=10, messages=question, tools=[{"type": "web_search_20250305", "name": "web_search"}]
    )
    raise AssertionError("expected a 400 for web search without a backend")
except anthropic.BadRequestError as error:
    assert "[web_search]" in error.body["error"]["message"], error.body

print("ALL OK")
