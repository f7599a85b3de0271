"""The run plan: settings resolved once, the team policy applied, each limit with its source."""
from __future__ import annotations

from pathlib import Path

from guard.config import load_settings
from guard.plan import build_plan

POLICY = ({"max_usd": 1, "max_steps": "40", "on_limit": "stop", "unknown_price": "refuse"}, "policy (team.yaml)")


def settings(tmp_path: Path, **flags: object):  # type: ignore[no-untyped-def]
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    return load_settings(env, tmp_path, flags)


def test_a_policy_maximum_is_the_limit_when_nothing_asks_for_less(tmp_path: Path) -> None:
    plan = build_plan(settings(tmp_path), "claude", False, POLICY)
    assert plan.limit_values() == {"usd": 1.0, "steps": 40.0}
    assert plan.limit_sources() == {"usd": "policy (team.yaml)", "steps": "policy (team.yaml)"}
    assert plan.notices == ()


def test_a_flag_above_the_policy_is_clamped_with_one_notice(tmp_path: Path) -> None:
    plan = build_plan(settings(tmp_path, max_usd="5"), "claude", False, POLICY)
    assert plan.limits["usd"].value == 1.0 and plan.limits["usd"].source == "policy (team.yaml)"
    assert plan.notices == ("--max-usd: max_usd $5.00 is beyond the policy (team.yaml): using $1.00",)


def test_a_flag_below_the_policy_wins_and_keeps_its_source(tmp_path: Path) -> None:
    plan = build_plan(settings(tmp_path, max_usd="0.5"), "claude", False, POLICY)
    assert plan.limits["usd"].value == 0.5 and plan.limits["usd"].source == "--max-usd"


def test_the_stricter_action_wins(tmp_path: Path) -> None:
    assert build_plan(settings(tmp_path), "claude", True, POLICY).on_limit == "stop"     # default pause on a tty
    assert build_plan(settings(tmp_path, on_limit="kill"), "claude", True, POLICY).on_limit == "kill"
    plan = build_plan(settings(tmp_path, on_limit="pause"), "claude", True, POLICY)
    assert plan.on_limit == "stop" and "--on-limit: on_limit pause is beyond the policy" in plan.notices[0]
    assert plan.unknown_price == "refuse"


def test_offline_strictness(tmp_path: Path) -> None:
    pol = ({"offline": "last-known"}, "policy (p.yaml)")
    assert build_plan(settings(tmp_path), "run", False, pol).offline == "last-known"
    (tmp_path / ".guard.yaml").write_text("offline: allow\n")
    plan = build_plan(settings(tmp_path), "run", False, pol)
    assert plan.offline == "last-known" and ".guard.yaml:1" in plan.notices[0]


def test_a_grant_raises_the_policy_maximum(tmp_path: Path) -> None:
    plan = build_plan(settings(tmp_path, max_usd="5"), "claude", False, POLICY, granted_usd=3.0)
    assert plan.limits["usd"].value == 4.0 and "granted $3.00" in plan.limits["usd"].source


def test_without_a_policy_config_and_flags_decide(tmp_path: Path) -> None:
    (tmp_path / ".guard.yaml").write_text("max_tokens: 500k\nmin_output_tokens: 2k\n")
    plan = build_plan(settings(tmp_path, max_time="30m"), "aider", False)
    assert plan.limit_values() == {"tokens": 500_000.0, "time": 1800.0}
    assert plan.limit_sources()["tokens"].endswith(".guard.yaml:1: max_tokens")
    assert plan.min_output_tokens == 2000 and plan.meter == "proxy" and plan.on_limit == "stop"


def test_the_stuck_loop_rule_comes_from_the_tools_section(tmp_path: Path) -> None:
    from guard.governor.stuck import StuckRule

    assert build_plan(settings(tmp_path), "claude", False).stuck_loop == StuckRule(5, 3)
    (tmp_path / ".guard.yaml").write_text("claude: {stuck_loop: {repeat: 8}}\n")
    assert build_plan(settings(tmp_path), "claude", False).stuck_loop == StuckRule(8, 3)
    (tmp_path / ".guard.yaml").write_text("claude: {stuck_loop: false}\n")
    assert build_plan(settings(tmp_path), "claude", False).stuck_loop is None


def test_the_ledgers_offline_policy_is_only_ever_tightened_by_the_plan(tmp_path: Path) -> None:
    from guard.plan import stricter_offline

    strict = build_plan(settings(tmp_path), "claude", False, ({"offline": "refuse"}, "policy (team.yaml)"))
    assert strict.offline == "refuse" and stricter_offline(strict, "last-known") == "refuse"
    loose = build_plan(settings(tmp_path), "claude", False)
    assert stricter_offline(loose, "refuse") == "refuse"        # GUARD_LEDGER_OFFLINE=refuse stays
    assert stricter_offline(loose, "allow") == loose.offline == "last-known"
