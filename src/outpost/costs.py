"""Local hardware against a remote's price: at what volume answering locally pays for itself.

The arithmetic behind ``outpost models fit --volume REQUESTS_PER_DAY`` (worked example in docs/routing.md):

- remote: ``tokens_in × price_in + tokens_out × price_out`` per request (prices in USD per million tokens);
- local: the hardware amortised over ``months``, plus energy for the hours it is busy. One request keeps a
  machine busy ``tokens_out / decode_tps + tokens_in / prefill_tps`` seconds (decode speed from the hardware
  advisor; prefill, which is compute-bound, taken as ``PREFILL_FACTOR`` × decode: an assumption, stated);
- break-even: the daily volume where both cost the same, ``fixed / (30 × (remote − energy per request))``;
  there is none when energy alone costs more per request than the remote.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["BreakEven", "PREFILL_FACTOR", "break_even"]

PREFILL_FACTOR = 10.0  # prompt tokens/s ÷ generated tokens/s on the same machine (typically 5–20)
DAYS_PER_MONTH = 30
SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class BreakEven:
    requests_per_day: float
    tokens_in: int
    tokens_out: int
    remote_per_request: float  # USD
    remote_per_month: float
    local_per_month: float  # hardware amortised + energy, all machines
    seconds_per_request: float
    machines: int  # local machines the volume needs
    busy: float  # share of the day they are busy
    break_even_per_day: float | None  # requests/day above which local is cheaper; None: never
    capacity_per_day: float  # requests one machine can answer in a day

    @property
    def saved_per_month(self) -> float:
        return self.remote_per_month - self.local_per_month

    def explain(self) -> list[str]:
        lines = [
            f"per request: {self.tokens_in} tokens in, {self.tokens_out} out",
            f"remote: ${self.remote_per_request:.6f} a request → ${self.remote_per_month:,.2f} a month "
            f"at {self.requests_per_day:,.0f} a day",
            f"local: {self.seconds_per_request:.2f} s a request (prefill at {PREFILL_FACTOR:g}× decode speed); "
            f"one machine answers {self.capacity_per_day:,.0f} a day; this volume needs {self.machines}, "
            f"busy {self.busy:.0%} → ${self.local_per_month:,.2f} a month (hardware amortised + energy)",
        ]
        if self.break_even_per_day is None:
            lines.append("break-even: never — local energy alone costs more per request than the remote")
        else:
            lines.append(
                f"break-even: {self.break_even_per_day:,.0f} requests a day "
                f"({self.break_even_per_day * DAYS_PER_MONTH:,.0f} a month)"
            )
        verdict = "local is cheaper" if self.saved_per_month > 0 else "the remote is cheaper"
        lines.append(f"at this volume {verdict}: ${abs(self.saved_per_month):,.2f} a month")
        return lines


def break_even(
    requests_per_day: float,
    *,
    tokens_in: int,
    tokens_out: int,
    price_in: float,
    price_out: float,
    decode_tps: float,
    hardware_usd: float,
    months: int = 36,
    watts: float = 60.0,
    usd_per_kwh: float = 0.15,
) -> BreakEven:
    """Monthly costs at ``requests_per_day`` both ways, and the volume where they meet (one machine's)."""
    per_request = (tokens_in * price_in + tokens_out * price_out) / 1e6
    seconds = tokens_out / decode_tps + tokens_in / (decode_tps * PREFILL_FACTOR) if decode_tps > 0 else math.inf
    capacity = SECONDS_PER_DAY / seconds if seconds > 0 else math.inf
    machines = max(1, math.ceil(requests_per_day / capacity)) if capacity > 0 else 1
    busy = min(1.0, requests_per_day * seconds / (SECONDS_PER_DAY * machines)) if math.isfinite(seconds) else 1.0
    energy_per_request = seconds * watts / 1000 / 3600 * usd_per_kwh if math.isfinite(seconds) else math.inf
    fixed = hardware_usd / months
    local = machines * fixed + requests_per_day * DAYS_PER_MONTH * min(energy_per_request, 1e9)
    margin = per_request - energy_per_request
    meet = fixed / (DAYS_PER_MONTH * margin) if margin > 0 else None
    return BreakEven(
        requests_per_day, tokens_in, tokens_out, per_request, per_request * requests_per_day * DAYS_PER_MONTH,
        local, seconds, machines, busy, meet, capacity,
    )  # fmt: skip
