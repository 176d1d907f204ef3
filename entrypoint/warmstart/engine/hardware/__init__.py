"""Hardware: the CPUs a process may use (affinity and container quota) and the device the
network runs on, with the evidence for a GPU that torch cannot see.

May import: config, errors. No other engine room.
"""
