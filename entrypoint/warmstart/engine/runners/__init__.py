"""Runners loop: the shared runner (iterate, log, snapshot, stop on a signal) and the two
engines it drives, native and rlpyt, plus what an exact resume saves of each part.

May import: every other engine room, and checkpoint, config, errors, reporting, provenance.
"""
