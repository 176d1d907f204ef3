"""Replays remember: the frame replay (uniform or prioritized, in numpy or torch tensors) and
the one structure that leaves it, a named minibatch (``ReplayBatch``).

May import: errors.
"""
