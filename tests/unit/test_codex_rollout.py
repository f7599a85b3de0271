from guard.adapters.codex import token_count_event


def line(last, total):
    return {"type": "event_msg", "payload": {"type": "token_count", "info": {
        "last_token_usage": last, "total_token_usage": total}}}


def test_cached_input_moves_out_of_input():
    ev = token_count_event(line({"input_tokens": 1000, "cached_input_tokens": 600, "output_tokens": 50,
                                 "total_tokens": 1050},
                                {"input_tokens": 1000, "cached_input_tokens": 600, "output_tokens": 50,
                                 "total_tokens": 1050}), "rollout-1.jsonl", "gpt-5-codex")
    assert ev is not None
    assert (ev.input_tokens, ev.cache_read_tokens, ev.output_tokens, ev.model) == (400, 600, 50, "gpt-5-codex")
    assert ev.key == "codex:rollout-1.jsonl:1050"


def test_rate_limit_only_and_other_lines_are_ignored():
    assert token_count_event({"type": "event_msg", "payload": {"type": "token_count", "info": None}}, "r", None) is None
    assert token_count_event({"type": "response_item", "payload": {}}, "r", None) is None
