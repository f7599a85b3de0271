"""Turning tokens into dollars: genai-prices, a user override file, and a fail-closed policy
for models nobody knows the price of.

genai-prices' own `calc_price` costs about 0.2 ms a call (Decimal arithmetic, unit registry);
the proxy prices every request twice. So each model's rates are read from genai-prices once per
UTC day and cached as plain floats (`ModelRates`); a test holds the cached prices equal to
genai-prices' own across a grid of models and usages. genai-prices is imported on first use, not
with this module (guard's startup budget)."""
from __future__ import annotations

import dataclasses
import json
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from guard.errors import ConfigError
from guard.usage import UsageEvent

if TYPE_CHECKING:   # price_store imports this module's ModelRates
    from guard.price_store import PriceStore

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


def guess_provider(model: str) -> str | None:
    m = model.lower()
    for prefix, provider in _PROVIDER_PREFIXES:
        if m.startswith(prefix):
            return provider
    return None




# A rate in USD per token: the base rate, and (start, rate) tiers. Crossing a tier's start (the
# request's whole input, caches included) bills EVERY token of the request at the tier's rate,
# the 1-hour cache writes included (genai-prices' threshold model, Anthropic's long context).
Tiered = tuple[float, tuple[tuple[int, float], ...]]


def _at(rate: Tiered, total_input: int) -> float:
    base, tiers = rate
    for start, r in reversed(tiers):
        if total_input > start:
            return r
    return base


@dataclass(frozen=True)
class ModelRates:
    """One model's prices on one day, as floats: what `price` and `worst_case` compute with."""

    model_id: str
    input: Tiered
    output: Tiered
    cache_read: Tiered
    cache_write: Tiered
    cache_write_1h: Tiered
    per_request: float = 0.0

    def cost(self, input_tokens: int, output_tokens: int, cache_read: int = 0,
             cache_write: int = 0, cache_write_1h: int = 0) -> float:
        """Anthropic's convention: input_tokens excludes cache reads and writes."""
        total = input_tokens + cache_read + cache_write
        return (input_tokens * _at(self.input, total)
                + output_tokens * _at(self.output, total)
                + cache_read * _at(self.cache_read, total)
                + (cache_write - cache_write_1h) * _at(self.cache_write, total)
                + cache_write_1h * _at(self.cache_write_1h, total)
                + self.per_request)

    def worst_case(self, input_tokens: int, max_output_tokens: int, cache_write_factor: float = 1.0,
                   cache_read_tokens: int = 0) -> float:
        """All input uncached (or written to the cache, when the request asks for writes: the
        dearer of the model's write rate and `cache_write_factor` x input) but the predicted
        `cache_read_tokens` (part of `input_tokens`) at the read rate, full output."""
        rate = _at(self.input, input_tokens)
        if cache_write_factor > 1.0:
            write = _at(self.cache_write_1h if cache_write_factor >= 2.0 else self.cache_write, input_tokens)
            rate = max(rate * cache_write_factor, write)
        read = min(max(0, cache_read_tokens), input_tokens)
        return ((input_tokens - read) * rate + read * _at(self.cache_read, input_tokens)
                + max_output_tokens * _at(self.output, input_tokens) + self.per_request)


def _tiered(price: Any) -> Tiered | None:
    if price is None:
        return None
    tiers = getattr(price, "tiers", None)
    if tiers is None:
        return float(price) / 1e6, ()
    return float(price.base) / 1e6, tuple((int(t.start), float(t.price) / 1e6) for t in tiers)


def rates_from_genai(model: Any, when: datetime) -> ModelRates | None:
    """A genai-prices ModelInfo's prices at `when`; None when they vary by time of day (those
    models are priced by genai-prices itself, uncached). An unpriced cache rate falls back the way
    genai-prices' unit tree does: 1-hour writes to writes, writes and reads to input."""
    from genai_prices.types import ModelPrice, TimeOfDateConstraint

    if not isinstance(model.prices, ModelPrice) and any(
            isinstance(c.constraint, TimeOfDateConstraint) for c in model.prices):
        return None
    mp = model.get_prices(when)
    inp = _tiered(mp.input_mtok) or (0.0, ())
    write = _tiered(mp.cache_write_mtok) or inp
    requests = mp.requests_kcount
    return ModelRates(
        model_id=model.id,
        input=inp,
        output=_tiered(mp.output_mtok) or (0.0, ()),
        cache_read=_tiered(mp.cache_read_mtok) or inp,
        cache_write=write,
        cache_write_1h=_tiered(mp.cache_write_1h_mtok) or write,
        per_request=float(requests) / 1000 if requests is not None else 0.0,
    )


class _RateCache:
    """genai-prices' model lookup and rates, remembered per (model, provider, UTC day), and kept
    in `store` (guard.price_store) for later runs when there is one."""

    def __init__(self, store: PriceStore | None = None) -> None:
        self._lock = threading.Lock()
        self._models: dict[tuple[str, str | None], Any] = {}   # (ref, provider) -> (Provider, ModelInfo) | None
        # (ref, provider, day) -> rates, "direct" (priced by genai-prices itself), None (unknown model)
        self._answers: dict[tuple[str, str | None, date], ModelRates | str | None] = {}
        self.store = store

    def lookup(self, ref: str, provider: str | None) -> Any:
        key = (ref, provider)
        try:
            return self._models[key]
        except KeyError:
            pass
        from genai_prices.data_snapshot import get_snapshot

        try:
            found = get_snapshot().find_provider_model(ref, None, provider, None)
        except LookupError:
            found = None
        with self._lock:
            self._models[key] = found
        return found

    def answer(self, ref: str, provider: str | None, when: datetime) -> ModelRates | str | None:
        """The model's rates on `when`'s day; "direct" when they vary by time of day; None when
        genai-prices does not know the model."""
        key = (ref, provider, when.date())
        try:
            return self._answers[key]
        except KeyError:
            pass
        held, answer = self.store.model(ref, provider, key[2]) if self.store is not None else (False, None)
        if not held:
            found = self.lookup(ref, provider)
            answer = (rates_from_genai(found[1], when) or "direct") if found else None
            if self.store is not None:
                self.store.put_model(ref, provider, key[2], answer)
        with self._lock:
            self._answers[key] = answer
        return answer


def _genai_direct(ev: UsageEvent, ref: str, provider: str | None, when: datetime) -> float:
    """genai-prices' own calculation, for the models whose rates are not cached."""
    from genai_prices import Usage, calc_price

    usage = Usage(
        # genai-prices counts input_tokens as the TOTAL input, cache reads and writes included.
        input_tokens=ev.input_tokens + ev.cache_read_tokens + ev.cache_write_tokens,
        output_tokens=ev.output_tokens,
        cache_read_tokens=ev.cache_read_tokens,
        cache_write_tokens=ev.cache_write_tokens,
        cache_write_1h_tokens=min(ev.cache_write_1h_tokens, ev.cache_write_tokens),
    )
    return float(calc_price(usage, model_ref=ref, provider_id=provider, genai_request_timestamp=when).total_price)


# Sources where the agent states its cost itself (the usage-file protocol), as opposed to a tool
# reporting what its provider billed: there a stated cost is a floor, never below the tokens' price.
SELF_STATED_SOURCES = frozenset({"usage_file"})


class Pricer:
    def __init__(self, overrides: dict[str, Rates] | None = None, unknown: UnknownPolicy = "max",
                 store: PriceStore | None = None) -> None:
        """`store`: a guard.price_store.PriceStore, so a run reuses what earlier runs looked up."""
        self.overrides = overrides or {}
        self.unknown = unknown
        self._priciest: dict[str | None, str] = {}
        self._lock = threading.Lock()
        self._cache = _RateCache(store)

    def price(self, ev: UsageEvent) -> Price:
        if ev.cost_usd is not None:
            if ev.source in SELF_STATED_SOURCES and ev.tokens and True:
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
        when = datetime.fromtimestamp(ev.ts, UTC)
        usd = self._genai(ev, model, guess_provider(model), when)
        if usd is not None:
            return Price(usd, True, "genai-prices")
        priciest = self._priciest_model(guess_provider(model))
        usd = self._genai(ev, priciest, None, when) if priciest else None
        return Price(usd or 0.0, False, f"max:{priciest}")

    def price_list(self, ev: UsageEvent) -> object | None:
        """The set of rates `price` would use for this event (an override, or genai-prices' list
        in force at the event's time), or None when it has none. Events with the same list are
        priced by the same linear rates below any long-context tier (guard.history.pricing)."""
        model = ev.model or ""
        rates = self._override(model)
        if rates is not None:
            return rates
        if not model:
            return None
        from genai_prices.data_snapshot import get_snapshot

        when = datetime.fromtimestamp(ev.ts, UTC)
        for ref in (model, model.split("/", 1)[-1]):
            try:
                _, info = get_snapshot().find_provider_model(ref, None, guess_provider(model), None)
            except LookupError:
                continue
            return info.get_prices(when)
        return None

    def warm(self) -> None:
        """Load the price data now (about a quarter second), not on the first usage line,
        where it would delay the first decision."""
        self.price(UsageEvent(key="warm", source="warm", model="claude-sonnet-4-6", input_tokens=1))

    def worst_case(self, model: str | None, input_tokens: int, max_output_tokens: int,
                   cache_write_factor: float = 1.0, cache_read_tokens: int = 0) -> float:
        """Upper bound of a request before it is sent, in USD: all input uncached (or written to
        the cache at `cache_write_factor` x input) except `cache_read_tokens` predicted from the
        conversation's previous request (guard.proxy.cache_predictor), full max_tokens out. An
        unknown model is priced at its provider's priciest model (the caller applies `unknown`)."""
        model = model or ""
        override = self._override(model)
        if override is not None:
            ev = UsageEvent(key="estimate", source="estimate", model=model,
                            input_tokens=input_tokens, output_tokens=max_output_tokens)
            return override.cost(ev) + input_tokens * override.input * max(0.0, cache_write_factor - 1.0)
        now = datetime.now(UTC)
        provider = guess_provider(model)
        rates = self._rates(model, provider, now)
        if rates is None:
            priciest = self._priciest_model(provider)
            rates = self._rates(priciest, None, now) if priciest else None
        if rates is None:
            # Nothing to price with (a time-of-day model, or no data at all): the slow way.
            ev = UsageEvent(key="estimate", source="estimate", model=model,
                            input_tokens=input_tokens, output_tokens=max_output_tokens)
            return self.price(ev).usd * max(1.0, cache_write_factor)
        return rates.worst_case(input_tokens, max_output_tokens, cache_write_factor, cache_read_tokens)

    def _override(self, model: str) -> Rates | None:
        if model in self.overrides:
            return self.overrides[model]
        short = model.split("/", 1)[-1]
        return self.overrides.get(short)

    def _rates(self, model: str, provider: str | None, when: datetime) -> ModelRates | None:
        for ref in dict.fromkeys((model, model.split("/", 1)[-1])):
            answer = self._cache.answer(ref, provider, when) if ref else None
            if answer is not None:
                return answer if isinstance(answer, ModelRates) else None
        return None

    def _genai(self, ev: UsageEvent, model: str, provider: str | None, when: datetime) -> float | None:
        for ref in dict.fromkeys((model, model.split("/", 1)[-1])):
            rates = self._cache.answer(ref, provider, when) if ref else None
            if rates is None:
                continue
            if not isinstance(rates, ModelRates):
                return _genai_direct(ev, ref, provider, when)
            return rates.cost(ev.input_tokens, ev.output_tokens, ev.cache_read_tokens,
                              ev.cache_write_tokens, min(ev.cache_write_1h_tokens, ev.cache_write_tokens))
        return None

    def _priciest_model(self, provider: str | None) -> str | None:
        with self._lock:
            if provider in self._priciest:
                return self._priciest[provider] or None
            now = datetime.now(UTC)
            store = self._cache.store
            held = store.priciest(provider, now.date()) if store is not None else None
            if held is not None:
                self._priciest[provider] = held
                return held or None
            from genai_prices.data_snapshot import get_snapshot

            best, best_usd = None, -1.0
            providers = [p for p in get_snapshot().providers if provider is None or p.id == provider]
            if provider is None:
                providers = [p for p in providers if p.id in ("anthropic", "openai", "google")]
            for p in providers:
                for m in p.models:
                    try:
                        rates = rates_from_genai(m, now)
                    except Exception:
                        continue
                    usd = rates.cost(1_000_000, 1_000_000) if rates else -1.0
                    if usd > best_usd:
                        best, best_usd = m.id, usd
            self._priciest[provider] = best or ""
            if store is not None:
                store.put_priciest(provider, now.date(), best or "")
            return best
