"""Record a game as a video file: H.264 MP4 through imageio-ffmpeg, or a GIF through Pillow.

Frames are the raw 210x160 RGB screen, one per agent step plus the first screen after the
reset, so a video of an ``L``-step episode has ``L + 1`` frames. One agent step is 4 emulator
frames at 60 Hz, so the MP4 plays at 15 fps: real time. GIF timing is in 1/100 s, so a GIF
frame lasts 70 ms (about 14.3 fps); Pillow's encoder merges identical consecutive frames into
one longer frame, so a GIF holds fewer frames but lasts ``(L + 1) * 70`` ms.

MP4 is the format whenever imageio-ffmpeg (whose wheel ships an ffmpeg binary) is importable;
without it, a GIF is written next to the requested name, said in the log. Frames stream to
ffmpeg as they come (a 30-minute game does not sit in memory); the finished file is moved into
place with ``atomic.write_bytes``, so a killed eval never leaves a half-written video, and one
stopped by a signal (or failing) removes its temp files (``discard``). The name says the
container: ``.mp4`` or ``.gif``, anything else is refused before a game is played.
"""

from __future__ import annotations

import importlib.util
import io
import tempfile
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import numpy as np

from ... import signals
from ...checkpoint import atomic
from ...errors import ConfigError

FPS = 15
GIF_FRAME_MS = 70
FORMATS = (".mp4", ".gif")
"""The file names ``--video`` takes: the name says the container, so it never lies."""


class VideoWriter:
    """Collects RGB frames for one file; ``close`` writes it and returns its final path."""

    def __init__(self, path: Path, log: Callable[[str], None]) -> None:
        if path.suffix.lower() not in FORMATS:
            raise ConfigError(f"--video {path}: the file name must end in .mp4 (H.264) or .gif; "
                              "those are the containers written.")
        if not path.parent.is_dir():
            raise ConfigError(f"--video {path}: folder {path.parent} does not exist; create it "
                              "or name a file in an existing folder.")
        has_ffmpeg = importlib.util.find_spec("imageio_ffmpeg") is not None
        has_pillow = importlib.util.find_spec("PIL") is not None
        self.gif = path.suffix.lower() == ".gif" or not has_ffmpeg
        if self.gif and not has_pillow:
            raise ConfigError(f"--video {path}: needs imageio-ffmpeg (MP4) or Pillow (GIF); "
                              "pip install the versions pinned in docker/requirements.txt.")
        if self.gif and path.suffix.lower() != ".gif":
            path = path.with_suffix(".gif")
            log(f"imageio-ffmpeg is not installed: writing a GIF instead, {path}")
        self.path = path
        self.frames = 0
        self.shape: tuple[int, ...] = ()
        self._gif_frames: list[Any] = []
        self._temp: tempfile.TemporaryDirectory[str] | None = None
        self._encoder: Generator[Any, np.ndarray | None, None] | None = None

    def add(self, frame: np.ndarray) -> None:
        """Append one uint8 RGB frame [height, width, 3]; every frame must have one size."""
        if self.frames == 0:
            self.shape = frame.shape
        if self.gif:
            from PIL import Image

            # palette images: a third of the memory of RGB, and what a GIF stores anyway
            self._gif_frames.append(Image.fromarray(frame).quantize(colors=256))
        elif self._encoder is None:
            # A stop signal waits until ffmpeg runs and holds a frame. Cut short before
            # imageio's generator reached its clean-up, ffmpeg would outlive this process and
            # say on its stderr that the (removed) temp folder is missing; with no frame, the
            # clean-up warns that the video is invalid.
            with signals.holding_stop():
                self._start_ffmpeg(frame.shape[1], frame.shape[0])
                self._send(frame)
        else:
            self._send(frame)
        self.frames += 1

    def _send(self, frame: np.ndarray) -> None:
        assert self._encoder is not None
        self._encoder.send(np.ascontiguousarray(frame))

    def _start_ffmpeg(self, width: int, height: int) -> None:
        import imageio_ffmpeg

        self._temp = tempfile.TemporaryDirectory(prefix="warmstart-video-")
        # macro_block_size 1 keeps the raw 210x160 (imageio's default 16 would rescale it);
        # yuv420p needs even sizes, which the Atari screen has.
        self._encoder = imageio_ffmpeg.write_frames(
            str(Path(self._temp.name) / "video.mp4"), (width, height), fps=FPS,
            codec="libx264", pix_fmt_in="rgb24", pix_fmt_out="yuv420p", macro_block_size=1,
            ffmpeg_log_level="error")
        self._encoder.send(None)  # start the ffmpeg process

    def discard(self) -> None:
        """Drop what was recorded (the play failed or a stop signal came): stop ffmpeg and
        remove its temp folder; nothing was ever written under the requested name."""
        self._gif_frames = []
        try:
            if self._encoder is not None:
                self._encoder.close()  # a no-op when the signal already ended the generator
        finally:
            self._encoder = None
            if self._temp is not None:
                self._temp.cleanup()
                self._temp = None

    def close(self) -> Path:
        """Finish encoding and write the file atomically; returns where it went."""
        if self.frames == 0:
            raise ValueError("no frames to write")
        if self.gif:
            buffer = io.BytesIO()
            first, *rest = self._gif_frames
            first.save(buffer, format="GIF", save_all=True, append_images=rest,
                       duration=GIF_FRAME_MS, loop=0)
            atomic.write_bytes(self.path, buffer.getvalue())
            self._gif_frames = []
            return self.path
        assert self._encoder is not None and self._temp is not None
        self._encoder.close()
        try:
            atomic.write_bytes(self.path, (Path(self._temp.name) / "video.mp4").read_bytes())
        finally:
            self._temp.cleanup()
        return self.path
