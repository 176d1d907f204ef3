"""Algorithms learn: one DQN update with rlpyt's semantics, the same update as one capturable
function for CUDA graphs, and rlpyt's linear schedules (epsilon, beta).

Contract: a ``ReplayBatch`` in, updated weights and the update's reports out.
May import: agents, replays.
"""
