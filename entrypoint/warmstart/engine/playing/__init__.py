"""Playing: whole games with a trained network, for ``warmstart eval`` and the runner's periodic
evaluation, optionally recorded as a video.

May import: config, errors, signals (holding a stop while ffmpeg starts), checkpoint (atomic
writes), agents, samplers.
"""
