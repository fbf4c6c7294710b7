"""How many videos run at once and how many threads each of them uses: one plan, made once
from the cores this process may use, and handed to every worker and analyzer.

A video keeps about two cores busy: ffmpeg decoding its frames, and the analysis (face
detection, the models) beside it. So a machine runs one worker per two cores, and each
worker's ffmpeg decodes on all of that worker's cores but the one the analysis needs.
The models are small and see a few faces or one audio window at a time: one onnxruntime
thread each is fastest, and more would only spin on the cores the decoder needs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Plan:
    """``workers`` videos at once, each with ``cores`` of its own."""

    workers: int = 1
    cores: int = 1

    @property
    def model_threads(self) -> int:
        """onnxruntime threads per model."""
        return 1

    @property
    def decode_threads(self) -> int:
        """ffmpeg threads decoding one video's frames: its cores less the analysis's one."""
        return max(1, self.cores - 1)

    @property
    def render_threads(self) -> int:
        """ffmpeg threads decoding the source of an annotated video. x264 threads itself, and
        decoding is about a fifth of a transcode's CPU: more decoding threads than a quarter
        of the cores only take turns with the encoder."""
        return max(1, self.cores // 4)

    @classmethod
    def local(cls, workers: int | None = None, videos: int = 1, cores: int | None = None) -> Plan:
        """The plan on this machine: ``workers`` (default: one per two usable cores), never more
        than there are ``videos``, sharing its usable ``cores`` evenly."""
        cores = cores or usable_cores()
        n = max(1, min(workers or cores // 2, videos or 1))
        return cls(n, max(1, cores // n))

    @classmethod
    def cluster(cls, workers: int | None, cpus: int, videos: int) -> Plan:
        """The plan on a Ray cluster: one worker per CPU it has (or ``workers``, at most that
        many: a worker waiting for a CPU the cluster lacks would never start), each holding one CPU."""
        return cls(max(1, min(workers or cpus, cpus, videos or 1)), 1)
