"""The engine: everything that turns a start point into trained weights, in rlpyt's rooms.

rlpyt splits DQN into parts with small contracts, and so does this package, one room each:

- ``hardware``: which CPUs and which device the process may use.
- ``samplers``: the environments and how one iteration's steps are collected (serially or by
  worker processes).
- ``agents``: the Q-network, whose state dict is the contract with rlpyt's snapshots.
- ``replays``: what was collected, and the minibatches drawn from it.
- ``algos``: the DQN update and the schedules it follows.
- ``playing``: whole games with a trained network (evaluation, videos).
- ``runners``: the loop that drives the others, logs, snapshots and stops on a signal; the
  two engines (native and rlpyt) live here.

Imports go one way: a room imports only rooms listed before it here that its own docstring
names, and the checkpoint, config and reporting packages left of the engine; nothing outside
``runners`` imports a runner. tests/test_layout.py holds the rooms to this.
"""
