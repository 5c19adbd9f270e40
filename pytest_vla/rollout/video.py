"""Per-episode video: ``videos/<family>_task<k>_episode_<n>.mp4``, encoded while the episode runs.

Frames go to ffmpeg (imageio-ffmpeg's own binary) as they come, so an episode of hundreds of steps
never sits in memory; the file appears under its name only when complete, and is dropped when the
run keeps failures only and the episode succeeded.
"""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np

from pytest_vla.errors import one_line
from pytest_vla.report.layout import OutputLayout
from pytest_vla.report.schema import EpisodeId

MAX_BYTES = 10 * 2**20
BITRATE = 2_000_000  # bits/s: plenty for 256x256 renders


class VideoRecorder:
    """One episode's video; ``frame`` per observation, then ``keep`` or ``discard``."""

    def __init__(self, output: Path, episode: EpisodeId, max_frames: int, fps: float) -> None:
        """``fps``: the suite's control rate, so one frame per policy step plays in real time."""
        self.path = OutputLayout(output).video(episode)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._partial = self.path.with_name(f".{episode.file_stem}.partial.mp4")
        self.frames = 0
        self.error: str | None = None
        # The longest episode at this bitrate stays under MAX_BYTES, with a tenth spare for the container.
        seconds = max(1.0, max_frames / fps)
        bitrate = min(BITRATE, int(MAX_BYTES * 8 * 0.9 / seconds))
        self._writer = imageio.get_writer(
            self._partial,
            format="FFMPEG",  # type: ignore[arg-type]
            fps=fps,
            codec="libx264",
            bitrate=str(bitrate),
            macro_block_size=16,
            ffmpeg_log_level="error",
            output_params=["-pix_fmt", "yuv420p"],  # what browsers play
        )

    def frame(self, image: np.ndarray) -> None:
        """Append a frame; a failing encoder stops the recording, never the episode."""
        if self.error is None:
            try:
                self._writer.append_data(np.ascontiguousarray(image))
                self.frames += 1
            except Exception as exc:
                self.error = one_line(exc)

    def keep(self) -> Path:
        """Finish the file under its name; raises (and leaves no file) if it could not be written."""
        try:
            self._writer.close()
            if self.error is not None:
                raise OSError(self.error)
            self._partial.replace(self.path)
        finally:
            self._partial.unlink(missing_ok=True)
        return self.path

    def discard(self) -> None:
        try:
            self._writer.close()
        finally:
            self._partial.unlink(missing_ok=True)
