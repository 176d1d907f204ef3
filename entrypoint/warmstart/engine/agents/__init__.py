"""Agents act: rlpyt's Atari DQN network, whose state-dict keys are the API of a snapshot.

May import: nothing else of the project.
"""
