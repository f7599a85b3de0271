"""The fake servers cut their output at the request's cap, as the real APIs do."""
from __future__ import annotations

import http.client
import json
from typing import Any

from tests.fakes.anthropic_server import FakeAnthropic, Text, ToolUse, Usage, reply
from tests.fakes.openai_server import FakeOpenAI, Reply
from tests.fakes.openai_server import Usage as OAUsage
from tests.helpers import wait_until


def post(port: int, path: str, body: dict[str, Any]) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    assert resp.status == 200, data
    return data


def sse(data: bytes) -> list[Any]:
    out = []
    for line in data.decode().splitlines():
        if line.startswith("data: ") and line[6:] != "[DONE]":
            out.append(json.loads(line[6:]))
    return out


LONG_TOOL = ToolUse("Bash", {"command": "echo " + "x" * 400, "description": "long"})


def anthropic_reply(req: Any) -> Any:
    return reply(Text("a" * 100), LONG_TOOL, usage=Usage(input_tokens=10, output_tokens=1000))


def test_anthropic_cut_mid_tool_use_streamed() -> None:
    with FakeAnthropic(anthropic_reply) as fake:
        events = sse(post(fake.port, "/v1/messages", {"model": "claude-sonnet-4-6", "max_tokens": 300,
                                                      "stream": True, "messages": []}))
        served = fake.served[-1]
    delta = [e for e in events if e["type"] == "message_delta"][0]
    assert delta["delta"]["stop_reason"] == "max_tokens"
    assert delta["usage"]["output_tokens"] == 300
    texts = [e["delta"]["text"] for e in events if e.get("delta", {}).get("type") == "text_delta"]
    assert texts == ["a" * 100]
    partial = [e["delta"]["partial_json"] for e in events if e.get("delta", {}).get("type") == "input_json_delta"]
    assert len(partial) == 1 and 0 < len(partial[0]) < len(json.dumps(LONG_TOOL.input))
    try:
        json.loads(partial[0])
        raise AssertionError("a cut tool call's JSON must be unfinished")
    except ValueError:
        pass
    assert served.usage.output_tokens == 300 and served.tool_uses == () and served.stop_reason == "max_tokens"


def test_anthropic_cut_non_streamed_and_uncut_when_it_fits() -> None:
    with FakeAnthropic(anthropic_reply) as fake:
        msg = json.loads(post(fake.port, "/v1/messages", {"model": "m", "max_tokens": 50, "messages": []}))
        assert msg["stop_reason"] == "max_tokens" and msg["usage"]["output_tokens"] == 50
        assert [b["type"] for b in msg["content"]] == ["text"] and len(msg["content"][0]["text"]) < 100
        msg = json.loads(post(fake.port, "/v1/messages", {"model": "m", "max_tokens": 1000, "messages": []}))
        assert msg["stop_reason"] == "tool_use" and msg["usage"]["output_tokens"] == 1000
        assert msg["content"][1]["input"] == LONG_TOOL.input
        # the fake books a response once its last byte is written: after the client has it
        wait_until(lambda: fake.usage_totals()["output_tokens"] == 1050, 10, message="the bill")
        assert fake.usage_totals()["tool_uses"] == 1


def test_openai_chat_cut_with_finish_reason_length() -> None:
    rep = Reply(text="b" * 1000, usage=OAUsage(prompt_tokens=20, completion_tokens=500))
    with FakeOpenAI(lambda req: rep, aux=None) as fake:
        body = json.loads(post(fake.port, "/v1/chat/completions",
                               {"model": "gpt-4o", "max_tokens": 100, "messages": [{"role": "user", "content": "x"}]}))
        assert body["choices"][0]["finish_reason"] == "length"
        assert body["usage"]["completion_tokens"] == 100
        assert body["choices"][0]["message"]["content"] == "b" * 200
        chunks = sse(post(fake.port, "/v1/chat/completions", {
            "model": "gpt-4o", "max_completion_tokens": 250, "stream": True,
            "stream_options": {"include_usage": True}, "messages": [{"role": "user", "content": "x"}]}))
        assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "length"
        assert chunks[-1]["usage"]["completion_tokens"] == 250
        assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == "b" * 500
        wait_until(lambda: fake.usage_totals()["output_tokens"] == 350, 10, message="the bill")


def test_openai_responses_cut_is_incomplete() -> None:
    rep = Reply(text="c" * 100, usage=OAUsage(prompt_tokens=20, completion_tokens=100))
    with FakeOpenAI(lambda req: rep, aux=None) as fake:
        body = json.loads(post(fake.port, "/v1/responses", {"model": "gpt-5", "max_output_tokens": 10, "input": "x"}))
        assert body["status"] == "incomplete" and body["incomplete_details"] == {"reason": "max_output_tokens"}
        assert body["usage"]["output_tokens"] == 10
        events = sse(post(fake.port, "/v1/responses",
                          {"model": "gpt-5", "max_output_tokens": 10, "input": "x", "stream": True}))
        assert events[-1]["type"] == "response.incomplete" and events[-1]["response"]["usage"]["output_tokens"] == 10
