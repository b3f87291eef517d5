"""Drives a running Switchboard with the official OpenAI Python SDK, unchanged.

Run by the `python_sdk_client` integration test with SWITCHBOARD_BASE_URL and SWITCHBOARD_MODEL
set. Prints ALL OK when every check passes; any failure raises.
"""

import os

import openai
from openai import OpenAI

BASE_URL = os.environ["SWITCHBOARD_BASE_URL"]
MODEL = os.environ["SWITCHBOARD_MODEL"]

client = OpenAI(base_url=BASE_URL, api_key="unused-without-keys", max_retries=0, timeout=120)

models = client.models.list()
assert any(m.id == MODEL for m in models.data), models

# Without a system message SmolLM2's template adds its own, which makes this model answer in French.
question = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
]

completion = client.chat.completions.create(model=MODEL, messages=question, temperature=0, max_tokens=30)
answer = completion.choices[0].message.content
assert "Paris" in answer, answer
assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0

stream = client.chat.completions.create(
    model=MODEL, messages=question, temperature=0, max_tokens=30, stream=True,
    stream_options={"include_usage": True},
)
pieces, usage, finish = [], None, None
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    for choice in chunk.choices:
        if choice.delta.content:
            pieces.append(choice.delta.content)
        if choice.finish_reason:
            finish = choice.finish_reason
assert "".join(pieces) == answer, ("".join(pieces), answer)
assert usage is not None and usage.total_tokens == completion.usage.total_tokens
assert finish == completion.choices[0].finish_reason

two = client.chat.completions.create(model=MODEL, messages=question, n=2, max_tokens=12, seed=5)
assert len(two.choices) == 2 and {c.index for c in two.choices} == {0, 1}

poem = [{"role": "user", "content": "Write a haiku about rain."}]
first = client.chat.completions.create(model=MODEL, messages=poem, seed=42, temperature=1, max_tokens=24)
again = client.chat.completions.create(model=MODEL, messages=poem, seed=42, temperature=1, max_tokens=24)
assert first.choices[0].message.content == again.choices[0].message.content

stop_word = answer.split()[1] if len(answer.split()) > 1 else answer[:2]
stopped = client.chat.completions.create(model=MODEL, messages=question, temperature=0, max_tokens=30, stop=[stop_word])
assert stop_word not in stopped.choices[0].message.content
assert stopped.choices[0].finish_reason == "stop"

cut = client.chat.completions.create(
    model=MODEL, messages=[{"role": "user", "content": "Tell me a long story."}], max_completion_tokens=4,
)
assert cut.choices[0].finish_reason == "length" and cut.usage.completion_tokens == 4

try:
    client.chat.completions.create(model="no-such-model", messages=question)
    raise AssertionError("expected NotFoundError")
except openai.NotFoundError as err:
    assert err.status_code == 404

try:
    client.chat.completions.create(model=MODEL, messages=question, temperature=5)
    raise AssertionError("expected BadRequestError")
except openai.BadRequestError as err:
    assert err.body["param"] == "temperature", err.body

# Structured outputs: the SDK's own Pydantic helper, strict schema included.
from typing import List, Literal, Optional  # noqa: E402

from pydantic import BaseModel, Field  # noqa: E402


class Pet(BaseModel):
    name: str = Field(max_length=20)
    kind: Literal["cat", "dog", "fish"]


class Person(BaseModel):
    name: str = Field(max_length=30)
    age: int
    pets: List[Pet] = Field(max_length=3)
    nickname: Optional[str] = Field(max_length=20)


describe = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Invent a person with pets."},
]
for seed in range(3):
    parsed = client.chat.completions.parse(
        model=MODEL, messages=describe, response_format=Person, temperature=1, seed=seed, max_tokens=300
    )
    person = parsed.choices[0].message.parsed
    assert isinstance(person, Person), parsed
    assert parsed.choices[0].finish_reason == "stop", parsed


# Tools: a forced call, streamed and not, then the tool result back in the conversation.
class GetWeather(BaseModel):
    city: str = Field(max_length=30)
    unit: Literal["celsius", "fahrenheit"]


weather_tool = openai.pydantic_function_tool(GetWeather, name="get_weather", description="Current weather.")
weather_question = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the weather in Paris?"},
]
called = client.chat.completions.parse(
    model=MODEL, messages=weather_question, tools=[weather_tool], tool_choice="required",
    parallel_tool_calls=False, max_tokens=200,
)
message = called.choices[0].message
assert called.choices[0].finish_reason == "tool_calls", called
assert len(message.tool_calls) == 1
call = message.tool_calls[0]
assert call.function.name == "get_weather"
assert isinstance(call.function.parsed_arguments, GetWeather), call

stream = client.chat.completions.create(
    model=MODEL, messages=weather_question, tools=[weather_tool],
    tool_choice={"type": "function", "function": {"name": "get_weather"}}, stream=True, max_tokens=200,
)
names, fragments, finish = [], {}, None
for chunk in stream:
    for choice in chunk.choices:
        for delta in choice.delta.tool_calls or []:
            if delta.function and delta.function.name:
                names.append(delta.function.name)
            fragments.setdefault(delta.index, []).append((delta.function and delta.function.arguments) or "")
        if choice.finish_reason:
            finish = choice.finish_reason
assert finish == "tool_calls" and names and set(names) == {"get_weather"}, (finish, names)
for pieces in fragments.values():
    GetWeather.model_validate_json("".join(pieces))

follow_up = weather_question + [
    # Sent back as the SDK returned it (parse() adds `parsed` and `parsed_arguments`).
    message.model_dump(exclude_none=True),
    {"role": "tool", "tool_call_id": call.id, "content": "21 degrees celsius and sunny"},
]
answer_after_tool = client.chat.completions.create(
    model=MODEL, messages=follow_up, tools=[weather_tool], tool_choice="none", max_tokens=40
)
assert answer_after_tool.choices[0].message.content, answer_after_tool
assert not answer_after_tool.choices[0].message.tool_calls

print("ALL OK")
