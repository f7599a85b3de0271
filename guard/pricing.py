"""Turning tokens into dollars: genai-prices, a user override file, and a fail-closed policy
for models nobody knows the price of."""
from __future__ import annotations

import dataclasses

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from guard.errors import ConfigError
from guard.usage import UsageEvent

UnknownPolicy = Literal["max", "refuse"]

_PROVIDER_PREFIXES = (
    ("claude", "anthropic"),
    ("anthropic/", "anthropic"),
    ("gpt", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("codex", "openai"),
    ("openai/", "openai"),
    ("chatgpt", "openai"),
    ("gemini", "google"),
    ("deepseek", "deepseek"),
    ("mistral", "mistral"),
    ("grok", "x-ai"),
)


@dataclass(frozen=True)
class Rates:
    """USD per token; the LiteLLM price-file fields users already know."""

    input: float
    output: float
    cache_read: float | None = None
    cache_write: float | None = None
    cache_write_1h: float | None = None

    def cost(self, ev: UsageEvent) -> float:
        write_5m = ev.cache_write_tokens - ev.cache_write_1h_tokens
        cw = self.cache_write if self.cache_write is not None else self.input * 1.25
        cw1h = self.cache_write_1h if self.cache_write_1h is not None else self.input * 2
        cr = self.cache_read if self.cache_read is not None else self.input * 0.1
        return (
            ev.input_tokens * self.input
            + ev.output_tokens * self.output
            + write_5m * cw
            + ev.cache_write_1h_tokens * cw1h
            + ev.cache_read_tokens * cr
        )


@dataclass(frozen=True)
class Price:
    usd: float
    known: bool           # False: the model's price is unknown and the policy priced it
    basis: str            # "stated", "override", "genai-prices", "max:<model>", "none"


def load_overrides(path: Path) -> dict[str, Rates]:
    """A LiteLLM-style JSON (or YAML) file: {model: {input_cost_per_token, ...}}."""
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read price file: {e.strerror}") from None
    try:
        import yaml

        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except Exception as e:
        raise ConfigError(f"{path}: not a valid price file: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a price file maps model names to prices")
    out: dict[str, Rates] = {}
    for model, entry in data.items():
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: {model}: expected a mapping of prices")
        try:
            out[str(model)] = Rates(
                input=float(entry["input_cost_per_token"]),
                output=float(entry["output_cost_per_token"]),
                cache_read=_opt(entry.get("cache_read_input_token_cost")),
                cache_write=_opt(entry.get("cache_creation_input_token_cost")),
                cache_write_1h=_opt(entry.get("cache_creation_input_token_cost_above_1hr")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(
                f"{path}: {model}: needs numeric input_cost_per_token and output_cost_per_token ({e})"
            ) from None
    return out


def _opt(v: Any) -> float | None:
    return None if v is None else float(v)


def _mtok(price: Any) -> float:
    """A genai-prices rate: a number, or tiers whose base applies below the long-context threshold."""
    return float(getattr(price, "base", price))


def guess_provider(model: str) -> str | None:
    m = model.lower()
    for prefix, provider in _PROVIDER_PREFIXES:
        if m.startswith(prefix):
            return provider
    return None


# Sources where the agent states its cost itself (the usage-file protocol), as opposed to a tool
# reporting what its provider billed: there a stated cost is a floor, never below the tokens' price.
SELF_STATED_SOURCES = frozenset({"usage_file"})


class Pricer:
    def __init__(self, overrides: dict[str, Rates] | None = None, unknown: UnknownPolicy = "max") -> None:
        self.overrides = overrides or {}
        self.unknown = unknown
        self._priciest: dict[str | None, str] = {}
        self._base_rates: dict[str, tuple[float, float, float, float]] = {}
        self._lock = threading.Lock()

    def price(self, ev: UsageEvent) -> Price:
        if ev.cost_usd is not None:
            if ev.source in SELF_STATED_SOURCES and ev.tokens and self._floor(ev) > ev.cost_usd:
                # an agent's own word on its cost may not be below what its tokens cost
                tokens = self.price(dataclasses.replace(ev, cost_usd=None))
                if tokens.known and tokens.usd > ev.cost_usd:
                    return Price(tokens.usd, True, f"{tokens.basis} (above the stated cost)")
            return Price(ev.cost_usd, True, "stated")
        if ev.tokens == 0:
            return Price(0.0, True, "none")
        model = ev.model or ""
        rates = self._override(model)
        if rates is not None:
            return Price(rates.cost(ev), True, "override")
        usd = self._genai(ev, model, guess_provider(model))
        if usd is not None:
            return Price(usd, True, "genai-prices")
        priciest = self._priciest_model(guess_provider(model))
        usd = self._genai(ev, priciest, None) if priciest else None
        return Price(usd or 0.0, False, f"max:{priciest}")

    def _floor(self, ev: UsageEvent) -> float:
        """A cheap lower bound of the tokens' price: each kind at the model's base rate (tiers
        only ever charge more). Rates are worked out once per model; 0 when it has none."""
        model = ev.model or ""
        with self._lock:
            rates = self._base_rates.get(model)
        if rates is None:
            unit = 1_000_000
            def rate(probe: UsageEvent) -> float:
                p = self.price(probe)
                return p.usd / unit if p.known else 0.0
            rates = (rate(UsageEvent("rate", "rate", model, input_tokens=unit)),
                     rate(UsageEvent("rate", "rate", model, output_tokens=unit)),
                     rate(UsageEvent("rate", "rate", model, cache_write_tokens=unit)),
                     rate(UsageEvent("rate", "rate", model, cache_read_tokens=unit)))
            with self._lock:
                self._base_rates[model] = rates
        return (ev.input_tokens * rates[0] + ev.output_tokens * rates[1]
                + ev.cache_write_tokens * rates[2] + ev.cache_read_tokens * rates[3])

    def warm(self) -> None:
        """Load the price data now (about a quarter second), not on the first usage line,
        where it would delay the first decision."""
        self.price(UsageEvent(key="warm", source="warm", model="claude-sonnet-4-6", input_tokens=1))

    def worst_case(self, model: str | None, input_tokens: int, max_output_tokens: int) -> float:
        """Upper bound of a request before it is sent: all input uncached, full max_tokens out."""
        ev = UsageEvent(key="estimate", source="estimate", model=model,
                        input_tokens=input_tokens, output_tokens=max_output_tokens)
        return self.price(ev).usd

    def _override(self, model: str) -> Rates | None:
        if model in self.overrides:
            return self.overrides[model]
        short = model.split("/", 1)[-1]
        return self.overrides.get(short)

    @staticmethod
    def _genai(ev: UsageEvent, model: str, provider: str | None) -> float | None:
        from genai_prices import Usage, calc_price

        if not model:
            return None
        # genai-prices counts input_tokens as the TOTAL input, cache reads and writes included.
        usage = Usage(
            input_tokens=ev.input_tokens + ev.cache_read_tokens + ev.cache_write_tokens,
            output_tokens=ev.output_tokens,
            cache_read_tokens=ev.cache_read_tokens,
            cache_write_tokens=ev.cache_write_tokens,
        )
        for ref in (model, model.split("/", 1)[-1]):
            try:
                calc = calc_price(usage, model_ref=ref, provider_id=provider)
            except LookupError:
                continue
            usd = float(calc.total_price)
            mp = calc.model_price
            if ev.cache_write_1h_tokens and mp.cache_write_1h_mtok is not None and mp.cache_write_mtok is not None:
                # genai-prices charged every write at the 5-minute rate; add the 1-hour tier's extra.
                extra = _mtok(mp.cache_write_1h_mtok) - _mtok(mp.cache_write_mtok)
                usd += ev.cache_write_1h_tokens * extra / 1e6
            return usd
        return None

    def _priciest_model(self, provider: str | None) -> str | None:
        with self._lock:
            if provider in self._priciest:
                return self._priciest[provider]
            from genai_prices import Usage, calc_price
            from genai_prices.data_snapshot import get_snapshot

            probe = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
            best, best_usd = None, -1.0
            providers = [p for p in get_snapshot().providers if provider is None or p.id == provider]
            if provider is None:
                providers = [p for p in providers if p.id in ("anthropic", "openai", "google")]
            for p in providers:
                for m in p.models:
                    try:
                        usd = float(calc_price(probe, model_ref=m.id, provider_id=p.id).total_price)
                    except Exception:
                        continue
                    if usd > best_usd:
                        best, best_usd = m.id, usd
            self._priciest[provider] = best or ""
            return best
