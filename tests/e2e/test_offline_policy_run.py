"""A team policy's `offline` reaches the shared ledger: during an outage a run counts shared
spend the stricter way, whatever the config asks."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import SPENDER, guard_env, run_guard
from tests.pgcluster import Cluster, private_cluster

pytestmark = [pytest.mark.e2e, pytest.mark.pg]


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    with private_cluster() as c:
        yield c


def test_policy_refuse_beats_a_config_allow_during_an_outage(cluster: Cluster, home: Path, tag: str) -> None:
    cfg, policy = home / "guard.yaml", home / "team.yaml"
    cfg.write_text(f"ledger: {cluster.url}\noffline: allow\nbudgets:\n  developer: {{day: 100}}\n")
    env = guard_env(home, GUARD_CONFIG=str(cfg), GUARD_LEDGER_RETRY="0.3")
    agent = ["run", "--", "python3", SPENDER, "--ids", "--cost", "0.01", "--tag", tag, "--lines", "3"]
    assert run_guard(home, *agent, env=env).returncode == 0   # the day's spend read once, online
    cluster.stop()
    allowed = run_guard(home, *agent, env=env)
    assert allowed.returncode == 0, allowed.stderr
    policy.write_text("offline: refuse\n")
    refused = run_guard(home, *agent, env={**env, "GUARD_POLICY": str(policy)})
    assert refused.returncode == 125, refused.stderr
    assert "offline allow is beyond the policy (team.yaml): using refuse" in refused.stderr
    assert "unreachable and the offline policy is refuse: no new spend is admitted" in refused.stderr
