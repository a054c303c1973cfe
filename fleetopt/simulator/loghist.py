"""Streaming quantiles of a simulation's latencies in bounded memory (``LogHist``)."""

from __future__ import annotations

import math

import numpy as np


class LogHist:
    """Streaming quantiles: values collect in a bounded buffer that is folded, vectorised,
    into log-spaced bins from 1e-3 to 1e8 (ms), 0.5 % wide, plus an exact count of zeros;
    quantiles are read at the bin's geometric middle (0.25 % resolution).  Memory stays
    bounded however many requests are simulated."""

    LO, HI, STEP = 1e-3, 1e8, 1.005
    BUFFER = 65536

    def __init__(self) -> None:
        self.nb = int(math.log(self.HI / self.LO) / math.log(self.STEP)) + 2
        self.bins = np.zeros(self.nb, np.int64)
        self.zeros = 0
        self.n = 0
        self.total = 0.0
        self.buf: list[float] = []
        self.add = self.buf.append          # the hot path: one list append per value

    def _fold(self) -> None:
        if not self.buf:
            return
        x = np.asarray(self.buf, float)
        self.buf.clear()
        self.n += x.size
        self.total += float(x.sum())
        pos = x > 0
        self.zeros += int((~pos).sum())
        i = np.floor((np.log(x[pos]) - math.log(self.LO)) / math.log(self.STEP)).astype(np.int64) + 1
        self.bins += np.bincount(np.clip(i, 0, self.nb - 1), minlength=self.nb)

    def maybe_fold(self) -> None:
        """Fold the buffered samples into the bins once the buffer is full."""
        if len(self.buf) >= self.BUFFER:
            self._fold()

    def merge(self, other: LogHist) -> None:
        """Add ``other``'s samples to this histogram."""
        self._fold()
        other._fold()
        self.bins += other.bins
        self.zeros += other.zeros
        self.n += other.n
        self.total += other.total

    def quantile(self, q: float) -> float:
        """The q-quantile, read at its bin's geometric middle (NaN when empty)."""
        self._fold()
        if self.n == 0:
            return float("nan")
        target = q * self.n
        if self.zeros >= target:
            return 0.0
        c = np.cumsum(self.bins) + self.zeros
        i = int(np.searchsorted(c, target))
        return self.LO * self.STEP ** (i - 0.5) if i < self.nb else self.HI

    @property
    def mean(self) -> float:
        """The exact mean of the samples (NaN when empty)."""
        self._fold()
        return self.total / self.n if self.n else float("nan")

    def frac_zero(self) -> float:
        """The share of samples equal to 0 (e.g. requests that did not wait)."""
        self._fold()
        return self.zeros / self.n if self.n else float("nan")
