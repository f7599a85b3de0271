"""The fake OpenAI server the aider (and proxy) tests rely on: wire shapes and recorded truth."""
from __future__ import annotations

import http.client
import json
from typing import Any

from tests.fakes.openai_server import (
    FakeOpenAI,
    Reply,
    Usage,
    edit_block,
    failing_edit,
    say,
)


def post(fake: FakeOpenAI, path: str, body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", fake.port, timeout=10)
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data


def sse(data: bytes) -> list[Any]:
    out = []
    for block in data.decode().split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                payload = line[6:]
                out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


CHAT = {"model": "fake", "messages": [{"role": "system", "content": "be brief"},
                                      {"role": "user", "content": "hi"}]}


def test_non_streaming_chat_with_usage_and_request_id() -> None:
    with FakeOpenAI([say("hello", usage=Usage(100, 7, cached_tokens=40))]) as fake:
        status, headers, data = post(fake, "/v1/chat/completions", CHAT)
    body = json.loads(data)
    assert status == 200 and headers["x-request-id"] == fake.served[0].request_id
    assert body["choices"][0]["message"]["content"] == "hello"
    assert body["usage"]["prompt_tokens"] == 100 and body["usage"]["prompt_tokens_details"]["cached_tokens"] == 40
    assert fake.usage_totals() == {"prompt_tokens": 100, "input_tokens": 60, "output_tokens": 7,
                                   "cached_tokens": 40, "calls": 1}


def test_streaming_chat_sends_usage_only_when_asked() -> None:
    with FakeOpenAI(lambda r: say("hello world", chunks=3)) as fake:
        _, _, plain = post(fake, "/v1/chat/completions", CHAT | {"stream": True})
        _, _, with_usage = post(fake, "/v1/chat/completions",
                                CHAT | {"stream": True, "stream_options": {"include_usage": True}})
    chunks = sse(plain)
    assert chunks[-1] == "[DONE]"
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks[:-1]) == "hello world"
    assert all("usage" not in c for c in chunks[:-1])
    last = sse(with_usage)[-2]
    assert last["choices"] == [] and last["usage"]["completion_tokens"] == fake.served[1].usage.completion_tokens
    assert [s.usage_sent for s in fake.served] == [False, True]
    assert all(s.completed for s in fake.served)


def test_responses_api_minimal() -> None:
    with FakeOpenAI([say("one"), say("two")]) as fake:
        _, _, data = post(fake, "/v1/responses", {"model": "fake", "input": "hi"})
        _, _, streamed = post(fake, "/v1/responses", {"model": "fake", "input": "hi", "stream": True})
    body = json.loads(data)
    assert body["output"][0]["content"][0]["text"] == "one" and body["usage"]["input_tokens"] > 0
    events = sse(streamed)
    assert events[-1]["type"] == "response.completed"
    assert events[-1]["response"]["usage"]["output_tokens"] == fake.served[1].usage.completion_tokens


def test_scripted_error_is_not_served_usage() -> None:
    with FakeOpenAI([Reply(status=400, error_type="invalid_request_error"), say("ok")]) as fake:
        status, headers, data = post(fake, "/v1/chat/completions", CHAT)
        assert status == 400 and json.loads(data)["error"]["type"] == "invalid_request_error"
        assert "x-request-id" in headers
        post(fake, "/v1/chat/completions", CHAT)
    assert len(fake.requests) == 2 and fake.usage_totals()["calls"] == 1


def test_aider_side_calls_are_answered_apart_and_filtered() -> None:
    commit = {"model": "weak", "messages": [
        {"role": "system", "content": "You are an expert software engineer that generates concise, "
                                      "one-line Git commit messages based on the provided diffs."},
        {"role": "user", "content": "diff"}]}
    with FakeOpenAI([say("main reply")]) as fake:
        _, _, c = post(fake, "/v1/chat/completions", commit)
        _, _, m = post(fake, "/v1/chat/completions", CHAT)
    assert json.loads(c)["choices"][0]["message"]["content"].startswith("feat:")
    assert json.loads(m)["choices"][0]["message"]["content"] == "main reply"   # the script was not used up
    assert [s.kind for s in fake.served] == ["commit", "main"]
    assert fake.usage_totals(main_only=True)["calls"] == 1


def test_edit_blocks() -> None:
    block = edit_block("a.py", "x = 1", "x = 2")
    assert block.splitlines()[2:] == ["a.py", "```", "<<<<<<< SEARCH", "x = 1", "=======", "x = 2",
                                      ">>>>>>> REPLACE", "```"]
    assert "not in the file 3" in failing_edit("a.py", 3).text
