"""What made trials fail, in one line: the sweep's summary names the most common cause.

A failed trial's error (Ray's error.txt) ends with the exception that ended it, e.g. the
user's own `ValueError: ...` raised in epoch 3 or a `TrialError` of `trainables.own_loop`. The
sweep prints the most common of these; when every trial failed it stops with exit code 1
(`AllTrialsFailed`), since there is nothing to analyse.
"""

from __future__ import annotations

import re
from collections import Counter

_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*")


class AllTrialsFailed(RuntimeError):
    """Every trial of the sweep failed: nothing to analyse."""


def cause(error_text: str) -> str:
    """The line of an error's text that names its exception (the last such line), shortened."""
    lines = [line.strip() for line in error_text.strip().splitlines() if line.strip()]
    named = [line for line in lines if _EXCEPTION_LINE.match(line)]
    line = (named or lines or ["unknown error"])[-1]
    return line if len(line) <= 200 else line[:197] + "..."


def most_common_cause(error_texts: list[str]) -> tuple[str, int]:
    """(cause, number of trials it ended) over the failed trials' errors."""
    counts = Counter(cause(text) for text in error_texts)
    return counts.most_common(1)[0] if counts else ("", 0)


def summary(error_texts: list[str]) -> str:
    """'3 failed; most often (2 of them): ValueError: ...' ('' when none failed)."""
    if not error_texts:
        return ""
    text, n = most_common_cause(error_texts)
    total = len(error_texts)
    share = "all of them" if n == total else f"{n} of them"
    return f"{total} failed; most often ({share}): {text}"
