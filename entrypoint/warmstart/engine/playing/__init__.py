"""Playing: whole games with a trained network, for ``warmstart eval`` and the runner's periodic
evaluation, optionally recorded as a video.

May import: config, errors, checkpoint (atomic writes), agents, samplers.
"""
