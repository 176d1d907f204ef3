"""rlpyt's TrajInfo: what each finished trajectory reports, counted one way for training and
evaluation alike, so their columns in progress.csv mean the same thing."""

from __future__ import annotations

TRAJECTORY_KEYS = ("Length", "Return", "NonzeroRewards", "DiscountedReturn", "GameScore")
"""rlpyt's TrajInfo fields, in its order."""


def new_trajectory() -> dict[str, float]:
    """The fields at zero, plus ``discount``: the weight of the next reward in DiscountedReturn.

    A plain dict of floats, so an exact resume can store a trajectory in progress as JSON.
    """
    return dict.fromkeys(TRAJECTORY_KEYS, 0.0) | {"discount": 1.0}


def add_step(trajectory: dict[str, float], reward: float, game_score: float,
             discount: float) -> None:
    """Count one env step: ``reward`` as the learner sees it (clipped), ``game_score`` raw."""
    trajectory["Length"] += 1
    trajectory["Return"] += reward
    trajectory["NonzeroRewards"] += reward != 0
    trajectory["DiscountedReturn"] += trajectory["discount"] * reward
    trajectory["discount"] *= discount
    trajectory["GameScore"] += game_score


def finished(trajectory: dict[str, float]) -> dict[str, float]:
    """The TrajInfo fields of an ended trajectory, for the runner's statistics."""
    return {key: float(trajectory[key]) for key in TRAJECTORY_KEYS}
