"""genai-prices' answers for the models guard met today, kept in GUARD_HOME between runs.

Importing genai-prices and building its snapshot costs about 200 ms of CPU, more than the rest of
a run's start together. What a run asks of it is small: does it know this model, at which rates
today, and which is a provider's priciest model (the price of an unknown one). Those answers are
written here once and read back by later runs as one small JSON file. They are valid for one UTC
day and one copy of genai-prices' data (its data file's size and mtime): a new day or an upgraded
package starts the file afresh. A missing or damaged file is an empty store, never an error: the
answer is then computed by genai-prices itself, as without a store."""
from __future__ import annotations

import json
import os
import threading
from datetime import date
from pathlib import Path
from typing import Any

from guard.pricing import ModelRates

FORMAT = 1


def data_identity() -> str | None:
    """Which genai-prices data is installed, without importing it (None: not found)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("genai_prices")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    data = Path(next(iter(spec.submodule_search_locations))) / "data.py"
    try:
        st = data.stat()
    except OSError:
        return None
    return f"{FORMAT}:{data}:{st.st_size}:{st.st_mtime_ns}"


def rates_to_json(r: ModelRates) -> list[Any]:
    return [r.model_id, r.input, r.output, r.cache_read, r.cache_write, r.cache_write_1h, r.per_request]


def rates_from_json(v: list[Any]) -> ModelRates:
    def tiered(t: list[Any]) -> tuple[float, tuple[tuple[int, float], ...]]:
        return float(t[0]), tuple((int(s), float(p)) for s, p in t[1])

    model_id, inp, out, read, write, write_1h, per_request = v
    return ModelRates(str(model_id), tiered(inp), tiered(out), tiered(read), tiered(write), tiered(write_1h),
                      float(per_request))


class PriceStore:
    """Model answers per (ref, provider, day): `None` unknown model, `"direct"` known but priced by
    genai-prices itself (time-of-day prices), else ModelRates; and the priciest model per provider."""

    def __init__(self, path: Path, identity: str | None = None) -> None:
        self.path = path
        self.identity = identity if identity is not None else data_identity()
        self._lock = threading.Lock()
        self._entries: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._entries is None:
            self._entries = {}
            if self.identity is not None:
                try:
                    data = json.loads(self.path.read_text())
                    if data.get("data") == self.identity and isinstance(data.get("entries"), dict):
                        self._entries = data["entries"]
                except (OSError, ValueError, AttributeError):
                    pass
        return self._entries

    def model(self, ref: str, provider: str | None, day: date) -> tuple[bool, ModelRates | str | None]:
        """(held, answer): held False when the store has no answer for it."""
        with self._lock:
            v = self._load().get(_key("model", ref, provider, day), _MISSING)
        if v is _MISSING:
            return False, None
        try:
            return True, (v if v is None or v == "direct" else rates_from_json(v))
        except (TypeError, ValueError):
            return False, None

    def put_model(self, ref: str, provider: str | None, day: date, answer: ModelRates | str | None) -> None:
        self._put(_key("model", ref, provider, day), answer if not isinstance(answer, ModelRates)
                  else rates_to_json(answer), day)

    def priciest(self, provider: str | None, day: date) -> str | None:
        """The model's name, "" for none, None when not held."""
        with self._lock:
            v = self._load().get(_key("priciest", "", provider, day))
        return v if isinstance(v, str) else None

    def put_priciest(self, provider: str | None, day: date, model: str) -> None:
        self._put(_key("priciest", "", provider, day), model, day)

    def _put(self, key: str, value: Any, day: date) -> None:
        if self.identity is None:
            return
        with self._lock:
            entries = self._load()
            if entries.get(key, _MISSING) == value:
                return
            # keep only today's answers: the file stays small and a stale day is never read
            suffix = f"\0{day.isoformat()}"
            self._entries = entries = {k: v for k, v in entries.items() if k.endswith(suffix)}
            entries[key] = value
            self._write({"data": self.identity, "entries": entries})

    def _write(self, data: dict[str, Any]) -> None:
        """Atomically (a reader sees the old file or the new one); another run writing at the same
        moment may win, which only costs a later run one computation."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(data, separators=(",", ":")))
            os.replace(tmp, self.path)
        except OSError:
            try:
                tmp.unlink()
            except OSError:
                pass


_MISSING = object()


def _key(kind: str, ref: str, provider: str | None, day: date) -> str:
    return f"{kind}\0{ref}\0{'*' if provider is None else provider}\0{day.isoformat()}"
