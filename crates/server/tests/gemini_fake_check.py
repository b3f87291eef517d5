"""Checks the fake Gemini upstream of `gemini_upstream.rs` with Google's own Python SDK
(`google-genai`): if the SDK reads the fake's stream into the parts it documents, and the fake
accepts the SDK's own replay of them, the fake speaks the wire.

Run by the `the_fake_speaks_geminis_wire` test with SWITCHBOARD_BASE_URL set to the fake's
root. Prints ALL OK when every check passes; any failure raises.
"""

import os

from google import genai
from google.genai import errors, types

client = genai.Client(
    api_key="goog-key",
    http_options=types.HttpOptions(base_url=os.environ["SWITCHBOARD_BASE_URL"]),
)
config = types.GenerateContentConfig(
    tools=[
        types.Tool(
            function_declarations=[
                types.FunctionDeclaration(
                    name="weather",
                    parameters_json_schema={"type": "object", "properties": {"city": {"type": "string"}}},
                )
            ]
        )
    ],
    thinking_config=types.ThinkingConfig(include_thoughts=True, thinking_budget=8192),
)
question = types.Content(role="user", parts=[types.Part(text="Weather?")])

parts = []
usage = None
for chunk in client.models.generate_content_stream(model="gemini-think", contents=[question], config=config):
    parts.extend(chunk.candidates[0].content.parts)
    usage = chunk.usage_metadata or usage

assert parts[0].thought is True and parts[0].text == "Looking up the weather.", parts[0]
call = parts[1]
assert call.function_call.name == "weather", call
assert call.function_call.args == {"city": "Oslo"}, call
assert call.thought_signature == b"sig-call-1", call.thought_signature
assert usage.thoughts_token_count == 40, usage
assert usage.cached_content_token_count == 8, usage

# The fake's checks are the API's: the call must come back with its signature, answered.
history = [
    question,
    types.Content(role="model", parts=parts),
    types.Content(
        role="user",
        parts=[types.Part.from_function_response(name="weather", response={"output": "sunny"})],
    ),
]
answer = "".join(
    part.text
    for chunk in client.models.generate_content_stream(model="gemini-think", contents=history, config=config)
    for part in chunk.candidates[0].content.parts
    if part.text
)
assert answer == "It is sunny in Oslo.", answer

# Parallel calls: the signature rides on the first call only.
parallel = [
    part
    for chunk in client.models.generate_content_stream(model="gemini-parallel", contents=[question], config=config)
    for part in chunk.candidates[0].content.parts
]
assert [p.function_call.args["city"] for p in parallel] == ["Oslo", "Bergen"], parallel
assert parallel[0].thought_signature == b"sig-parallel" and parallel[1].thought_signature is None, parallel

for model, error_type, code in [("gemini-busy", errors.ServerError, 503), ("gemini-nope", errors.ClientError, 404)]:
    try:
        for _ in client.models.generate_content_stream(model=model, contents="x"):
            pass
        raise AssertionError(f"expected an error from {model}")
    except error_type as error:
        assert error.code == code, error

print("ALL OK")
