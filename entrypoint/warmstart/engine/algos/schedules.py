"""rlpyt's linear ramps, as functions of the sampler iteration.

rlpyt ramps epsilon (and prioritized replay's beta) per runner iteration, from the iteration
learning starts to ``steps // sampler_batch``. Taking the iteration from the snapshot instead of
restarting at 0 is what keeps a warm start from falling back to random play.
"""

from __future__ import annotations

PRI_BETA_INIT = 0.4
PRI_BETA_FINAL = 1.0
PRI_BETA_STEPS = 50_000_000
EPS_INIT = 1.0


def linear_ramp(itr: int, itr_min: int, itr_max: int, start: float, end: float) -> float:
    """``start`` until ``itr_min``, then linearly to ``end`` at ``itr_max``, then ``end``."""
    if itr >= itr_max:
        return end
    span = max(1, itr_max - itr_min)
    progress = min(1.0, max(0, itr - itr_min) / span)
    return progress * end + (1 - progress) * start
