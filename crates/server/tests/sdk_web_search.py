"""Drives Switchboard's gateway-run web search (a fake SearXNG and a fake upstream behind it)
with the official OpenAI and Anthropic Python SDKs, unchanged: the SDKs must parse the
citations, the web_search_call items and events, and the server tool blocks into their own
types, streamed and not.

Run by the `the_official_sdks_read_searches_and_citations` test with SWITCHBOARD_BASE_URL (the
server's /v1); the catalog model is `plain`. Prints ALL OK when every check passes.
"""

import os

import anthropic
import openai

BASE = os.environ["SWITCHBOARD_BASE_URL"]
ROOT = BASE.removesuffix("/v1")
QUESTION = "When was the town of Zorblat founded, and who is its mayor?"
ANSWER = ("Zorblat was founded in 2031 [1]. Its mayor is Mira Quell [2]. "
          "Nothing else is known [7].")
CITED = [
    ("https://zorblat.example/history", "Zorblat was founded in 2031 [1]"),
    ("https://zorblat.example/council", "Its mayor is Mira Quell [2]"),
]

oai = openai.OpenAI(base_url=BASE, api_key="unused", max_retries=0, timeout=60)
claude = anthropic.Anthropic(base_url=ROOT, api_key="unused", max_retries=0, timeout=60)
messages = [{"role": "user", "content": QUESTION}]

# Chat Completions: indexes cut Python string slices (code points) of the content.
chat = oai.chat.completions.create(model="plain", messages=messages,
                                   web_search_options={"search_context_size": "low"})
message = chat.choices[0].message
assert message.content == ANSWER, message.content
got = [(a.url_citation.url, message.content[a.url_citation.start_index:a.url_citation.end_index])
       for a in message.annotations]
assert got == CITED, got
assert all(a.type == "url_citation" and a.url_citation.title for a in message.annotations)

streamed, annotations = "", []
for chunk in oai.chat.completions.create(model="plain", messages=messages, stream=True,
                                         web_search_options={}):
    for choice in chunk.choices:
        streamed += choice.delta.content or ""
        extra = choice.delta.model_extra or {}
        annotations += getattr(choice.delta, "annotations", None) or extra.get("annotations") or []
assert streamed == ANSWER, streamed
got = [(a["url_citation"]["url"], streamed[a["url_citation"]["start_index"]:a["url_citation"]["end_index"]])
       for a in (a if isinstance(a, dict) else a.model_dump() for a in annotations)]
assert got == CITED, got

# Responses: the search call item, its sources under `include`, flat url_citation annotations.
response = oai.responses.create(model="plain", input=QUESTION, tools=[{"type": "web_search"}],
                                include=["web_search_call.action.sources"])
call = response.output[0]
assert call.type == "web_search_call" and call.status == "completed", call
assert call.action.type == "search" and call.action.query == QUESTION, call.action
assert [s.url for s in call.action.sources] == [url for url, _ in CITED], call.action.sources
assert response.output_text == ANSWER, response.output_text
part = response.output[1].content[0]
got = [(a.url, part.text[a.start_index:a.end_index]) for a in part.annotations]
assert got == CITED, got

kinds = []
with oai.responses.stream(model="plain", input=QUESTION, tools=[{"type": "web_search"}]) as stream:
    for event in stream:
        kinds.append(event.type)
    final = stream.get_final_response()
for kind in ("response.web_search_call.in_progress", "response.web_search_call.searching",
             "response.web_search_call.completed", "response.output_text.annotation.added"):
    assert kind in kinds, (kind, kinds)
assert final.output[0].type == "web_search_call" and final.output_text == ANSWER, final

# Messages: the server tool's blocks, citations on the text, the search in usage.
tools = [{"type": "web_search_20250305", "name": "web_search"}]
reply = claude.messages.create(model="plain", max_tokens=100, messages=messages, tools=tools)
use, result, text = reply.content
assert use.type == "server_tool_use" and use.name == "web_search", use
assert use.input == {"query": QUESTION}, use.input
assert result.type == "web_search_tool_result" and result.tool_use_id == use.id, result
assert [r.url for r in result.content] == [url for url, _ in CITED], result.content
assert text.type == "text" and text.text == ANSWER, text
assert [(c.url, c.cited_text) for c in text.citations] == CITED, text.citations
assert reply.usage.server_tool_use.web_search_requests == 1, reply.usage

with claude.messages.stream(model="plain", max_tokens=100, messages=messages, tools=tools) as stream:
    final = stream.get_final_message()
assert [block.type for block in final.content] == ["server_tool_use", "web_search_tool_result", "text"]
assert final.content[0].input == {"query": QUESTION}, final.content[0]
assert [(c.url, c.cited_text) for c in final.content[2].citations] == CITED
assert final.usage.server_tool_use.web_search_requests == 1, final.usage

# The turn sent back as it came is a valid conversation.
again = claude.messages.create(model="plain", max_tokens=50, tools=tools, messages=[
    *messages, {"role": "assistant", "content": final.content}, {"role": "user", "content": "Thanks!"}])
assert again.content[-1].type == "text", again

print("ALL OK")
