"""Samplers collect: ``batch_B`` Atari environments stepped as one, serially or by worker
processes, each finished game reported as rlpyt's TrajInfo.

Contract: given one action per environment, one ``EnvSteps`` back; an environment whose game
ended is reset inside the step. Environment state can be saved and restored exactly.
May import: errors, games, hardware.
"""
