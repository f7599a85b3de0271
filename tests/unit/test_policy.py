"""Team policy: limits are maxima; `policy show` explains where each value came from."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from guard.cli_team import policy_group
from guard.errors import ConfigError
from guard.policy import effective_policy, load_policy

TEAM = {
    "timezone": "Europe/Berlin",
    "max-usd": 10,
    "max_time": "2h",
    "ledger": "postgresql://guard@db/guard",
    "budgets": {"developer": {"day": 20, "month": 300}, "team": {"month": 5000},
                "lines": {"shared-infra": {"month": 200}}, "soft": [0.75]},
    "notify": {"webhook": "https://hooks.example/guard"},
}


def test_developer_may_tighten_never_loosen() -> None:
    eff = effective_policy(TEAM, {"max_usd": 4, "max_time": "5h", "budgets": {
        "developer": {"day": 50, "month": 100}}}, policy_source="policy (team.yaml)",
        config_source="config (me.yaml)")
    assert eff.get("max_usd") == 4.0 and eff.entries["max_usd"].source == "config (me.yaml)"
    assert eff.get("max_time") == 7200.0 and eff.entries["max_time"].source == "policy (team.yaml)"
    assert "above the policy maximum" in eff.entries["max_time"].note
    assert eff.get("budgets.developer.day") == 20.0
    assert eff.get("budgets.developer.month") == 100.0
    bp = eff.budget_policy()
    assert bp.developer == {"day": 20.0, "month": 100.0} and bp.team == {"month": 5000.0}


def test_flags_override_config_but_not_the_policy() -> None:
    eff = effective_policy(TEAM, {"max_usd": 4}, flags={"max_usd": 8, "max_tokens": "2M"})
    assert eff.get("max_usd") == 8.0 and eff.entries["max_usd"].source == "flag --max-usd"
    assert eff.get("max_tokens") == 2_000_000
    eff = effective_policy(TEAM, {}, flags={"max_usd": 80})
    assert eff.get("max_usd") == 10.0 and "flag --max-usd asked for 80" in eff.entries["max_usd"].note


def test_fixed_keys_soft_union_and_private_lines() -> None:
    eff = effective_policy(TEAM, {"timezone": "UTC", "notify": {"webhook": "http://mine", "command": "notify-send"},
                                  "budgets": {"soft": [0.5], "lines": {"mine": {"month": 1e9}}}})
    assert eff.get("timezone") == "Europe/Berlin" and "ignored" in eff.entries["timezone"].note
    assert eff.get("notify.webhook") == "https://hooks.example/guard"
    assert eff.get("notify.command") == "notify-send"            # adding a channel is fine
    assert eff.budget_policy().soft == (0.5, 0.75)
    assert "mine" not in eff.budget_policy().lines and "not in the team policy" in \
        eff.entries["budgets.lines.mine.month"].note
    assert eff.as_config()["ledger"] == "postgresql://guard@db/guard"


def test_without_policy_the_config_stands() -> None:
    eff = effective_policy(None, {"max_usd": 50, "budgets": {"lines": {"mine": {"day": 3}}}})
    assert eff.get("max_usd") == 50.0 and eff.budget_policy().lines == {"mine": {"day": 3.0}}


def test_bad_values_name_where(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="policy.*max_usd"):
        effective_policy({"max_usd": "lots"}, {})
    bad = tmp_path / "p.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_policy(str(bad))
    with pytest.raises(ConfigError, match="No such file"):
        load_policy(str(tmp_path / "missing.yaml"))


def test_policy_from_url_is_cached_for_when_the_server_is_gone(tmp_path: Path) -> None:
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            body = b"max_usd: 3\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/team.yaml"
    data, label = load_policy(url, tmp_path)
    assert data == {"max_usd": 3} and url in label
    srv.shutdown()
    srv.server_close()
    data, label = load_policy(url, tmp_path, timeout=1)
    assert data == {"max_usd": 3} and "cached copy" in label
    with pytest.raises(ConfigError):
        load_policy(url, tmp_path / "fresh-home", timeout=1)


def test_policy_show_prints_values_and_sources(tmp_path: Path) -> None:
    import yaml
    team = tmp_path / "team.yaml"
    team.write_text(yaml.safe_dump(TEAM))
    cfg = tmp_path / "me.yaml"
    cfg.write_text(yaml.safe_dump({"developer": "alice", "policy": str(team), "max_usd": 50}))
    env = {"GUARD_HOME": str(tmp_path / "home"), "GUARD_CONFIG": str(cfg), "GUARD_POLICY": ""}
    r = CliRunner().invoke(policy_group, ["show", "--json"], env=env)
    assert r.exit_code == 0, r.output
    import json
    got = json.loads(r.output)
    assert got["max_usd"]["value"] == 10.0 and got["max_usd"]["source"] == "policy (team.yaml)"
    assert got["developer"] == {"value": "alice", "source": "config (me.yaml)"}
    r = CliRunner().invoke(policy_group, ["show"], env={**env, "COLUMNS": "200"})
    assert r.exit_code == 0 and "above the policy maximum" in r.output
