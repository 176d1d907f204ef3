"""The checkpoint store: find, check, load and write what lives on the volume.

Reading (every file from the volume is hostile until checked): ``safe_read`` opens only
regular files of bounded size; ``snapshot`` reads rlpyt's ``params.pkl`` without running
pickled code; ``manifest``, ``rows`` and ``records`` read a run's records; ``discovery`` picks
the newest usable snapshot. Deciding: ``counters`` (steps done, a job's span), ``progress``
(a reset lineage's real progress, AsyncRl's counters), ``chain`` (an rlpyt-recipe chain summed
exactly from its parents on the volume) and ``start`` (which run, snapshot, settings and span).
Writing: ``atomic`` (temp file and rename), ``lock`` and ``lease`` (one writer per run, within
a mount and across nodes), ``run`` (the run folder's snapshots, rows and manifest),
``resume_state`` (what an exact resume needs), ``volume`` (checks before training) and
``volume_io`` (the run's volume calls off the main thread: stalls, retries, a bounded
stop). Imports config and errors only; never the engine.
"""
