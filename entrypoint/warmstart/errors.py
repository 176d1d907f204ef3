"""Errors a user can cause, each with the exit code docs/exit-codes.md documents.

They are caught once, in the CLI, and printed as a single line; anything else is a bug and
keeps its traceback. ``EXIT_CODES`` is the one table of what each code means: ``--help``, the
docs/exit-codes.md and the Kubernetes failure policies are checked against it.
"""

from __future__ import annotations

import signal


class UserError(Exception):
    """Base for problems a user can fix; ``exit_code`` is what the process exits with."""

    exit_code = 1


class ConfigError(UserError):
    """A bad environment variable or flag (exit 2)."""

    exit_code = 2


class SnapshotError(UserError):
    """A snapshot that is missing, corrupt, unsafe or does not fit the configured model (exit 3)."""

    exit_code = 3


class VolumeError(UserError):
    """The checkpoint folder is missing, read-only or full (exit 4). ``errno`` is the
    operating system's error number when one caused it: it tells a mid-run outage worth
    retrying (``checkpoint.volume_io``) from a volume that is wrong."""

    exit_code = 4

    def __init__(self, message: str, *, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class RunLockedError(UserError):
    """Another live trainer holds the run folder (exit 5). Retrying later is right: a
    replacement pod may start while the old one still writes its final snapshot."""

    exit_code = 5


class DeviceError(UserError):
    """A GPU is there but torch cannot use it (exit 6): the image's CUDA build and the node's
    driver disagree. Retrying on the same node cannot help."""

    exit_code = 6


class RunRecordError(UserError):
    """A run folder's own records (manifest.json, progress.csv, lock file) are damaged or are
    not this trainer's (exit 7): it will not write into a run it cannot read. A person must
    move the folder aside or choose another RUN_NAME; retrying cannot help."""

    exit_code = 7


class TrainingDivergedError(UserError):
    """A loss or a weight became NaN or infinite (exit 8): training stopped before writing it,
    so the volume's last snapshot is the last finite one. Retrying repeats the same arithmetic;
    a smaller LR (or another start snapshot) is what helps."""

    exit_code = 8


class SamplerError(UserError):
    """An environment worker process died or stopped answering (exit 9), e.g. killed for
    memory. A restart can help: it resumes from the last snapshot with fresh workers."""

    exit_code = 9


class VolumeUnavailableError(VolumeError):
    """The checkpoint volume failed with an error of an outage (exit 10): mid-run, transient
    errors (EIO, ENOTCONN, a timeout) were retried until the run's lease would lapse or a stop
    came; or a start or a reading command met one (taken as damage, a snapshot would have been
    skipped for an older one, a run's record called damaged, a missing rename assumed). Kept
    apart from exit 4, a volume that is wrong: a restart (after the outage) can help."""

    exit_code = 10


class VolumeStalledError(UserError):
    """A checkpoint volume call did not return after a stop signal (exit 11): the trainer ends
    without a final snapshot, inside the pod's grace period, instead of hanging in it. The
    last complete snapshot stands; a restart resumes from it."""

    exit_code = 11


RETRY_CANNOT_HELP: tuple[type[UserError], ...] = (ConfigError, SnapshotError, VolumeError,
                                                 DeviceError, RunRecordError,
                                                 TrainingDivergedError)
"""Errors a restart of the same pod cannot fix: the Kubernetes Jobs' ``podFailurePolicy`` fails
the Job at once on their exit codes (tests/test_k8s.py holds the manifests to this tuple).
RunLockedError is not among them: the other trainer goes away."""

EXIT_SIGINT = 128 + signal.SIGINT
EXIT_SIGTERM = 128 + signal.SIGTERM

EXIT_CODES: dict[int, str] = {
    0: "done (or the run named by RUN_NAME had already reached or passed its target)",
    ConfigError.exit_code: "bad configuration (environment variable or flag)",
    SnapshotError.exit_code: "bad snapshot (missing, corrupt, unsafe, or for another game/head)",
    VolumeError.exit_code: "checkpoint volume problem (missing, read-only, full)",
    RunLockedError.exit_code: "another trainer holds the run folder (retry later)",
    DeviceError.exit_code: "a GPU is present but torch cannot use it (driver too old)",
    RunRecordError.exit_code: "the run folder's records are damaged or not this trainer's",
    TrainingDivergedError.exit_code: "training diverged (a NaN or infinite loss or weight); "
                                     "nothing non-finite was written",
    SamplerError.exit_code: "an environment worker process died (a restart resumes)",
    VolumeUnavailableError.exit_code: "checkpoint volume failed mid-run, or at a start, with "
                                      "an outage's error; a restart resumes from the last "
                                      "snapshot",
    VolumeStalledError.exit_code: "checkpoint volume stalled after a stop signal; exited "
                                  "without a final snapshot, the last complete one stands",
    EXIT_SIGINT: "stopped by SIGINT (training: after a final snapshot)",
    EXIT_SIGTERM: "stopped by SIGTERM (training: after a final snapshot)",
}
"""Every exit code a user can meet, and its meaning; 1 is a bug (with a traceback)."""
