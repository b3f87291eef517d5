"""Drives Switchboard's Responses API with the official OpenAI Python SDK, unchanged.

Run by the `python_sdk_responses` integration test with SWITCHBOARD_BASE_URL and
SWITCHBOARD_MODEL set. Prints ALL OK when every check passes; any failure raises.
"""

import json
import os

import openai
from openai import OpenAI
from pydantic import BaseModel

BASE_URL = os.environ["SWITCHBOARD_BASE_URL"]
MODEL = os.environ["SWITCHBOARD_MODEL"]
SYSTEM = "You are a helpful assistant."

client = OpenAI(base_url=BASE_URL, api_key="unused-without-keys", max_retries=0, timeout=120)

# Plain.
response = client.responses.create(
    model=MODEL, instructions=SYSTEM, input="What is the capital of France?",
    temperature=0, max_output_tokens=40,
)
assert response.status == "completed", response
assert "Paris" in response.output_text, response.output_text
assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0

# Streamed: every event type in order, text equal to the plain answer.
seen, deltas, final = [], [], None
with client.responses.stream(
    model=MODEL, instructions=SYSTEM, input="What is the capital of France?",
    temperature=0, max_output_tokens=40,
) as stream:
    for event in stream:
        seen.append(event.type)
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
    final = stream.get_final_response()
assert seen[0] == "response.created" and seen[1] == "response.in_progress", seen
assert seen[-1] == "response.completed", seen
for kind in ["response.output_item.added", "response.content_part.added", "response.output_text.done",
             "response.content_part.done", "response.output_item.done"]:
    assert kind in seen, (kind, seen)
assert "".join(deltas) == response.output_text == final.output_text, (deltas, response.output_text)

raw = client.responses.create(
    model=MODEL, instructions=SYSTEM, input="Say hi.", temperature=0, max_output_tokens=20, stream=True,
)
numbers = [event.sequence_number for event in raw]
assert numbers == list(range(len(numbers))), numbers

# A token limit gives an incomplete response.
cut = client.responses.create(
    model=MODEL, instructions=SYSTEM, input="Tell me a long story about a dragon.",
    temperature=0, max_output_tokens=16,
)
assert cut.status == "incomplete", cut.status
assert cut.incomplete_details.reason == "max_output_tokens"

# Function call round trip.
tools = [{
    "type": "function",
    "name": "get_weather",
    "description": "Current weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 30}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}]
called = client.responses.create(
    model=MODEL, instructions=SYSTEM, input="What is the weather in Rome?", tools=tools,
    tool_choice="required", parallel_tool_calls=False, temperature=0,
)
calls = [item for item in called.output if item.type == "function_call"]
assert len(calls) == 1, called.output
call = calls[0]
assert call.name == "get_weather"
assert isinstance(json.loads(call.arguments)["city"], str)
answered = client.responses.create(
    model=MODEL, previous_response_id=called.id, tools=tools, temperature=0, max_output_tokens=40,
    input=[{"type": "function_call_output", "call_id": call.call_id, "output": json.dumps({"sky": "sunny", "celsius": 24})}],
)
assert answered.status in ("completed", "incomplete"), answered
assert answered.previous_response_id == called.id

# Structured output with a Pydantic model.
class City(BaseModel):
    name: str
    country: str

parsed = client.responses.parse(
    model=MODEL, instructions=SYSTEM, input="Name a famous city and its country.", text_format=City,
    temperature=1, max_output_tokens=120,
)
assert isinstance(parsed.output_parsed, City), parsed.output_parsed

schema = {"type": "object", "properties": {"color": {"type": "string", "enum": ["red", "green", "blue"]}},
          "required": ["color"], "additionalProperties": False}
shaped = client.responses.create(
    model=MODEL, instructions=SYSTEM, input="Pick a color.", temperature=1, max_output_tokens=60,
    text={"format": {"type": "json_schema", "name": "pick", "schema": schema, "strict": True}},
)
assert json.loads(shaped.output_text)["color"] in ("red", "green", "blue"), shaped.output_text

# Conversation state, retrieval, input items and deletion.
first = client.responses.create(
    model=MODEL, instructions=SYSTEM, input="My favourite fruit is the mango.", temperature=0, max_output_tokens=30,
)
second = client.responses.create(
    model=MODEL, instructions=SYSTEM, previous_response_id=first.id, input="What is my favourite fruit?",
    temperature=0, max_output_tokens=30,
)
assert second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens
assert second.usage.input_tokens_details.cached_tokens > 0, second.usage
# Continuing is exactly sending the whole conversation again.
stateless = client.responses.create(
    model=MODEL, instructions=SYSTEM, store=False, temperature=0, max_output_tokens=30,
    input=[
        {"role": "user", "content": "My favourite fruit is the mango."},
        {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": "What is my favourite fruit?"},
    ],
)
assert stateless.output_text == second.output_text, (stateless.output_text, second.output_text)
fetched = client.responses.retrieve(first.id)
assert fetched.id == first.id and fetched.output_text == first.output_text
items = client.responses.input_items.list(second.id)
assert [item.type for item in items.data] == ["message"], items
assert items.data[0].content[0].text == "What is my favourite fruit?"
client.responses.delete(first.id)
try:
    client.responses.retrieve(first.id)
    raise AssertionError("a deleted response must be gone")
except openai.NotFoundError:
    pass

# Errors are the SDK's usual exceptions.
try:
    client.responses.create(model="no-such-model", input="hi")
    raise AssertionError("unknown model must fail")
except openai.NotFoundError as error:
    assert error.status_code == 404
try:
    client.responses.create(model=MODEL, input="hi", temperature=7)
    raise AssertionError("out-of-range temperature must fail")
except openai.BadRequestError as error:
    assert error.body["param"] == "temperature", error.body

print("ALL OK")
