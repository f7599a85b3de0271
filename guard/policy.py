"""Team policy: a YAML file (or URL) whose limits are maxima.

A developer's config and flags may tighten any limit, never loosen it. The result keeps, for every
value, where it came from, so `guard policy show` can explain it:

    max_usd                    5        flag --max-usd
    budgets.developer.month    300      policy (team.yaml)   config's 500 exceeds the policy maximum: ignored

Rules per key:
* limits (max_usd, max_tokens, max_steps, max_time, budgets.{developer,team}.PERIOD,
  budgets.lines.NAME.PERIOD, budgets.hard): the smallest of policy / (flag or config).
* on_limit, unknown_price, offline: the stricter of the two (kill > stop > pause; refuse > max;
  refuse > last-known > allow).
* budgets.soft: the union (a developer may ask for more notices, not fewer).
* timezone, ledger, notify.*: the policy's when it sets them (periods and the shared ledger must
  agree across the team; a developer cannot switch the team's notices off).
* budget lines: when a policy exists, only its lines exist (a private line would be a way around
  the developer ceiling); budgets.line_rules: the policy's first, then the config's.
* anything else: config over policy (the policy supplies defaults).
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from guard.budgets import BudgetPolicy
from guard.errors import ConfigError
from guard.units import parse_count, parse_duration, parse_usd

_PERIOD = r"(day|week|month)"
_MAXIMA = [
    (re.compile(r"^max_usd$"), parse_usd),
    (re.compile(r"^max_tokens$"), parse_count),
    (re.compile(r"^max_steps$"), parse_count),
    (re.compile(r"^max_time$"), parse_duration),
    (re.compile(rf"^budgets\.(developer|team)\.{_PERIOD}$"), parse_usd),
    (re.compile(rf"^budgets\.lines\.[^.]+\.{_PERIOD}$"), parse_usd),
    (re.compile(r"^budgets\.hard$"), lambda v, what: _pct(v, what)),
]
_POLICY_FIXED = re.compile(r"^(timezone|ledger|notify\..+)$")

# stricter first: where config and policy disagree on these, the first of the two here wins
STRICTNESS = {
    "on_limit": ("kill", "stop", "pause"),
    "unknown_price": ("refuse", "max"),
    "offline": ("refuse", "last-known", "allow"),
}


def _pct(v: Any, what: str) -> float:
    from guard.budgets import _fraction
    return _fraction(v, what)


@dataclass
class Entry:
    value: Any
    source: str
    note: str = ""


def _flatten(m: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in m.items():
        key = str(k)
        if not prefix:
            key = key.replace("-", "_")   # top level: `max-usd` and `max_usd` are one key
        full = f"{prefix}{key}"
        # `match` holds patterns, not nested keys: keep it whole
        if isinstance(v, Mapping) and v and key != "match":
            out.update(_flatten(v, full + "."))
        else:
            out[full] = v
    return out


def _unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, v in flat.items():
        parts = key.split(".")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = v
    return out


def _maximum_parser(key: str) -> Any:
    for pat, parser in _MAXIMA:
        if pat.match(key):
            return parser
    return None


@dataclass
class EffectivePolicy:
    entries: dict[str, Entry]

    def get(self, key: str, default: Any = None) -> Any:
        e = self.entries.get(key)
        return e.value if e else default

    def as_config(self) -> dict[str, Any]:
        """The merged config (ignored entries left out)."""
        return _unflatten({k: e.value for k, e in self.entries.items() if e.value is not None})

    def budget_policy(self) -> BudgetPolicy:
        return BudgetPolicy.from_config(self.as_config())

    def rows(self) -> list[tuple[str, str, str, str]]:
        return [(k, _show(e.value), e.source, e.note) for k, e in sorted(self.entries.items())]

    def as_json(self) -> dict[str, Any]:
        return {k: {"value": e.value, "source": e.source, **({"note": e.note} if e.note else {})}
                for k, e in sorted(self.entries.items())}


def _show(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, (list, dict)):
        import yaml

        return yaml.safe_dump(v, default_flow_style=True).strip()
    return str(v)


def effective_policy(policy: Mapping[str, Any] | None, config: Mapping[str, Any], *,
                     policy_source: str = "policy", config_source: str = "config",
                     flags: Mapping[str, Any] | None = None) -> EffectivePolicy:
    """Merge the team policy, the developer's config and command-line flags (dotted keys such
    as `max_usd`, with their flag spelling as source: {"max_usd": (5, "flag --max-usd")})."""
    pol = _flatten(policy or {})
    cfg = _flatten(config or {})
    flg: dict[str, tuple[Any, str]] = {}
    for k, v in (flags or {}).items():
        if v is None:
            continue
        flg[k.replace("-", "_")] = v if isinstance(v, tuple) else (v, f"flag --{k.replace('_', '-')}")
    have_policy = bool(policy)
    policy_lines = {k.split(".")[2] for k in pol if k.startswith("budgets.lines.")}
    out: dict[str, Entry] = {}

    for key in sorted(set(pol) | set(cfg) | set(flg)):
        p_has, c_has, f_has = key in pol, key in cfg, key in flg
        dev_val, dev_src = (flg[key][0], flg[key][1]) if f_has else (cfg.get(key), config_source)
        dev_has = f_has or c_has

        if key.startswith("budgets.lines.") and have_policy and key.split(".")[2] not in policy_lines:
            out[key] = Entry(None, dev_src, f"line {key.split('.')[2]!r} is not in the team policy: ignored")
            continue
        parser = _maximum_parser(key)
        if parser is not None:
            pv = parser(pol[key], f"{policy_source}: {key}") if p_has else None
            dv = parser(dev_val, f"{dev_src}: {key}") if dev_has else None
            if pv is not None and dv is not None:
                if dv <= pv:
                    out[key] = Entry(dv, dev_src, f"within the policy maximum {_show(pv)}")
                else:
                    out[key] = Entry(pv, policy_source,
                                     f"{dev_src} asked for {_show(dv)}, above the policy maximum: ignored")
            elif pv is not None:
                out[key] = Entry(pv, policy_source)
            else:
                out[key] = Entry(dv, dev_src)
        elif key in STRICTNESS and p_has and dev_has:
            order = STRICTNESS[key]
            if pol[key] not in order:
                raise ConfigError(f"{policy_source}: {key}: {pol[key]!r} is not one of {', '.join(order)}")
            if dev_val in order and order.index(dev_val) <= order.index(pol[key]):
                out[key] = Entry(dev_val, dev_src, f"as strict as the policy's {pol[key]}")
            else:
                out[key] = Entry(pol[key], policy_source, f"{dev_src} asked for {dev_val}, looser than the policy: ignored")
        elif key == "budgets.soft":
            vals: list[Any] = []
            srcs = []
            for has, v, src in ((p_has, pol.get(key), policy_source), (dev_has, dev_val, dev_src)):
                if has:
                    vals.extend(v if isinstance(v, list) else [v])
                    srcs.append(src)
            out[key] = Entry(sorted(set(vals), key=str), " + ".join(srcs))
        elif key == "budgets.line_rules":
            rules = list(pol.get(key) or []) + (list(dev_val or []) if dev_has else [])
            srcs = [s for has, s in ((p_has, policy_source), (dev_has, dev_src)) if has]
            out[key] = Entry(rules, " + ".join(srcs))
        elif _POLICY_FIXED.match(key) and p_has:
            note = (f"{dev_src}'s {_show(dev_val)} ignored: the policy fixes it"
                    if dev_has and dev_val != pol[key] else "")
            out[key] = Entry(pol[key], policy_source, note)
        elif dev_has:
            out[key] = Entry(dev_val, dev_src)
        else:
            out[key] = Entry(pol[key], policy_source)
    return EffectivePolicy(out)


def load_policy(ref: str, home: Path | None = None, timeout: float = 5.0) -> tuple[dict[str, Any], str]:
    """A policy from a path or an http(s) URL (cached under `home` so an unreachable server
    still yields the last policy seen). Returns (policy, source label)."""
    import yaml   # here, not at import: a run without a policy never pays for it

    if re.match(r"^https?://", ref):
        cache = (home / "policy-cache" / (hashlib.sha256(ref.encode()).hexdigest()[:16] + ".yaml")
                 if home else None)
        import urllib.request

        try:
            with urllib.request.urlopen(ref, timeout=timeout) as resp:
                text = resp.read().decode()
            if cache:
                cache.parent.mkdir(parents=True, exist_ok=True)
                cache.write_text(text)
            label = f"policy ({ref})"
        except OSError as e:
            if cache and cache.exists():
                text = cache.read_text()
                label = f"policy ({ref}, cached copy: {e})"
            else:
                raise ConfigError(f"policy {ref}: {e}") from None
    else:
        path = Path(ref).expanduser()
        try:
            text = path.read_text()
        except OSError as e:
            raise ConfigError(f"policy {ref}: {e.strerror or e}") from None
        label = f"policy ({path.name})"
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"policy {ref}: not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"policy {ref}: expected a mapping at the top")
    return data, label
