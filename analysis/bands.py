"""What a paper claim is, and the band its effect's 95% interval must lie in for it to hold (analysis.claims
judges every claim with it)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import pandas as pd

from analysis.intervals import Interval, number

Measured = tuple[str, bool | None] | None  # (measured value as text, held? None: inconclusive) or None: no data

EDGE = 1e-9  # how close to a band edge counts as on it
UNITS = {"%": (100, "%", 1, False), "points": (100, " points", 1, True), "x": (1, "x", 2, False),
         "": (1, "", 2, False), "decades": (1, " decades", 2, True)}  # scale, suffix, decimals, signed


@dataclass(frozen=True)
class Band:
    """Where an effect's 95% interval must lie for its claim to hold."""

    low: float = -math.inf
    high: float = math.inf
    unit: str = ""  # "%" (an accuracy), "points" (an accuracy difference), "x" (a ratio to the paper's value), "", "decades"
    strict: bool = False  # open bounds

    def judge(self, iv: Interval) -> bool | None:
        """True: the interval lies inside; False: wholly outside; None: it straddles an edge (or is NaN).
        An end within EDGE of an edge counts as on it (floating-point noise, as `number` prints it)."""
        low, high = (self.low + EDGE, self.high - EDGE) if self.strict else (self.low - EDGE, self.high + EDGE)
        if (iv.low > low if self.strict else iv.low >= low) and (iv.high < high if self.strict else iv.high <= high):
            return True
        outside = (iv.high <= low or iv.low >= high) if self.strict else (iv.high < low or iv.low > high)
        return False if outside else None

    def number(self, x: float, suffix: bool = True) -> str:
        scale, unit, decimals, signed = UNITS[self.unit]
        return number(x, scale, decimals, (self.low, self.high), signed) + (unit if suffix else "")

    def show(self, iv: Interval) -> str:
        """'91.2% (95% CI 90.05 to 92.4%, 3 replicates)': as many digits as tell each end's side of an edge."""
        return (f"{self.number(iv.value)} (95% CI {self.number(iv.low, False)} to {self.number(iv.high)}, "
                f"{iv.basis})")

    def __str__(self) -> str:
        if self.unit == "x":
            return f"within {self.high:g}x"
        scale, suffix = UNITS[self.unit][:2]
        low, high = f"{self.low * scale:g}", f"{self.high * scale:g}"
        if self.low == -self.high:
            return f"within ±{high}{suffix}"
        if math.isinf(self.low):
            return f"{'<' if self.strict else '≤'} {high}{suffix}"
        if math.isinf(self.high):
            return f"{'>' if self.strict else '≥'} {low}{suffix}"
        return f"{low}–{high}{suffix}"


@dataclass(frozen=True)
class Claim:
    figure: str
    text: str  # "{}" stands for the tolerance
    check: Callable[[pd.DataFrame, pd.DataFrame, Band | None], Measured]
    tolerance: Band | None = None

    @property
    def claim(self) -> str:
        return self.text.format(self.tolerance)


def every(parts: Iterable[bool | None]) -> bool | None:
    """A claim of parts: held when every part is, contradicted when one part is, else inconclusive."""
    parts = list(parts)
    return True if all(p is True for p in parts) else False if any(p is False for p in parts) else None
