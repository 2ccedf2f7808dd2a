"""`clout eval`: the detectors judged on real data with planted behaviour.

`clout eval [options]`: the long-horizon account verdicts on the scenario library (development and
held-back halves, with baselines), the generator's own anomalies and Bitcoin OTC (longhorizon.py).
`clout eval legacy [options]`: the per-window detectors' report on the generator's anomalies (windows.py).
"""

from __future__ import annotations

from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(argv or [])
    if args and args[0] == "legacy":
        from clout.evaluation.windows import main as legacy

        return legacy(args[1:])
    from clout.evaluation.longhorizon import main as longhorizon

    return longhorizon(args)
