from guard.governor import Ceiling, Policy, decide, soft_message


def test_below_soft_threshold_is_ok():
    d = decide([Ceiling("usd", 10, 5)], Policy())
    assert d.action == "ok" and d.ceiling is None and not d.warnings


def test_soft_threshold_warns_once():
    policy = Policy(soft_fraction=0.75)
    d = decide([Ceiling("usd", 10, 7.5)], policy)
    assert d.action == "warn" and [c.name for c in d.warnings] == ["usd"]
    policy.warned.add("usd")
    assert decide([Ceiling("usd", 10, 8)], policy).action == "ok"


def test_hard_ceiling_applies_on_limit_action():
    for action in ("pause", "stop", "kill"):
        d = decide([Ceiling("tokens", 1000, 999), Ceiling("usd", 2, 2.03)], Policy(on_limit=action))
        assert d.action == action and d.ceiling is not None and d.ceiling.name == "usd"


def test_message_names_step_ceiling_and_spend():
    d = decide([Ceiling("usd", 2, 2.03)], Policy())
    assert d.halt_message(42) == "halted at step 42: $2.00 task ceiling reached ($2.03 spent)"


def test_lifted_ceiling_is_ignored():
    policy = Policy(lifted={"steps"})
    assert decide([Ceiling("steps", 40, 41)], policy).action == "ok"


def test_period_ceiling_headline_names_scope():
    c = Ceiling("developer_usd", 20, 21.5, scope="developer")
    assert c.kind == "usd"
    assert c.headline() == "$20.00 developer ceiling reached ($21.50 spent)"


def test_soft_message_formats_each_kind():
    assert "500k tokens" in soft_message(Ceiling("tokens", 500_000, 400_000))
    assert "30m" in soft_message(Ceiling("time", 1800, 1500))
