"""What the analysis of one video gives: a ``Timeline``, rows plus facts, that writes itself.

A ``Row`` is one interval and one face (or the interval alone, where no face was seen);
``Row.to_cells`` gives its CSV line (``COLUMNS``), ``Row.from_cells`` reads one back.
``emocli process`` builds, writes, reads back, plots and summarises timelines without
pandas, whose import would be a sizeable share of a short video's run
(benchmarks/floor.py). ``to_pandas`` gives the DataFrame of the library API.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from .labels import LABELS

_FACE = [
    "face_id",
    "face_x",
    "face_y",
    "face_w",
    "face_h",
    "face_score",
    "face_emotion",
    "face_confidence",
    "face_speaking",
]
_VOICE = ["voice_active", "voice_emotion", "voice_confidence"]
COLUMNS = (
    ["video", "t_start", "t_end", *_FACE, *_VOICE, "fused_emotion", "fused_confidence"]
    + [f"face_p_{label}" for label in LABELS]
    + [f"voice_p_{label}" for label in LABELS]
    + [f"fused_p_{label}" for label in LABELS]
)
INT_COLUMNS = frozenset(["face_id", "face_x", "face_y", "face_w", "face_h"])
ROUNDED = frozenset(c for c in COLUMNS if "_p_" in c or c.endswith("_confidence") or c == "face_score")
DECIMALS = 4  # of probabilities, confidences and detector scores in the CSV
PEOPLE_COLUMNS = [
    "face_id",
    "seconds_visible",
    "seconds_speaking",
    "dominant_face_emotion",
    "dominant_fused_emotion",
] + [f"share_{label}" for label in LABELS]


@dataclass(frozen=True, slots=True)
class Emotion:
    """One modality's verdict: its probabilities (LABELS order), its top label and that label's probability."""

    label: str
    confidence: float | None
    p: tuple[float | None, ...]  # None: an empty cell read back

    @classmethod
    def of(cls, p) -> Emotion:
        """The verdict of probabilities ``p``: the first of the most probable labels."""
        p = tuple(float(v) for v in p)
        k = max(range(len(p)), key=p.__getitem__)
        return cls(LABELS[k], p[k], p)


@dataclass(frozen=True, slots=True)
class FaceResult:
    """A face in an interval: its track id, box (x, y, w, h) at the interval's middle,
    detector score, emotion, and whether it speaks (None: no face or no speech heard)."""

    id: int
    box: tuple[int, int, int, int]
    score: float | None
    emotion: Emotion | None
    speaking: bool | None = None
    # (t, x, y, w, h) where the analysis followed the face; not a column: the annotated
    # video's boxes move along it.
    track: tuple[tuple, ...] = ()


@dataclass(frozen=True, slots=True)
class Row:
    """One interval and one face (``face`` None: the interval alone, where no face was seen)."""

    video: str
    t_start: float
    t_end: float
    face: FaceResult | None = None
    voice_active: bool = False
    voice: Emotion | None = None
    fused: Emotion | None = None

    def values(self) -> list:
        """The row's values in COLUMNS order, None for an empty cell."""
        f = self.face
        face = [f.id, *f.box, f.score, *_top(f.emotion), f.speaking] if f else [None] * len(_FACE)
        return [
            self.video,
            self.t_start,
            self.t_end,
            *face,
            self.voice_active,
            *_top(self.voice),
            *_top(self.fused),
            *_probabilities(f and f.emotion),
            *_probabilities(self.voice),
            *_probabilities(self.fused),
        ]

    def to_cells(self) -> list[str]:
        """The row as the CSV writes it, in COLUMNS order."""
        return [_cell(v, c in ROUNDED) for c, v in zip(COLUMNS, self.values())]

    @classmethod
    def from_cells(cls, cells: dict[str, str]) -> Row:
        """The row a CSV line holds (``cells``: column -> text, as ``to_cells`` wrote it)."""
        face = None
        if cells["face_id"]:
            face = FaceResult(
                int(float(cells["face_id"])),
                tuple(int(float(cells[c])) for c in ("face_x", "face_y", "face_w", "face_h")),
                _number(cells["face_score"]),
                _emotion(cells, "face"),
                {"true": True, "false": False}.get(cells["face_speaking"].strip().lower()),
            )
        return cls(
            cells["video"],
            float(cells["t_start"]),
            float(cells["t_end"]),
            face,
            cells["voice_active"].strip().lower() == "true",
            _emotion(cells, "voice"),
            _emotion(cells, "fused"),
        )


def _top(e: Emotion | None) -> tuple:
    return (e.label, e.confidence) if e else (None, None)


def _probabilities(e: Emotion | None) -> tuple:
    return e.p if e else (None,) * len(LABELS)


def _emotion(cells: dict[str, str], prefix: str) -> Emotion | None:
    # The label as written, not derived again: probabilities rounded to DECIMALS can tie.
    label = cells[f"{prefix}_emotion"]
    if not label:
        return None
    p = tuple(_number(cells[f"{prefix}_p_{name}"]) for name in LABELS)
    return Emotion(label, _number(cells[f"{prefix}_confidence"]), p)


def _number(text: str) -> float | None:
    if text == "":
        return None
    value = float(text)
    return value if math.isfinite(value) else None


class Timeline:
    """One video's emotion timeline: ``rows`` (``Row``s) and ``facts`` about the video
    (duration_s, has_video, has_audio, size, fps, fusion, face_weight)."""

    def __init__(self, rows: list[Row], facts: dict | None = None):
        self.rows = rows
        self.facts = dict(facts or {})

    def __len__(self) -> int:
        return len(self.rows)

    def by_interval(self) -> dict[float, list[Row]]:
        """The rows of each interval, by its start, in time order."""
        intervals: dict[float, list[Row]] = {}
        for row in sorted(self.rows, key=lambda r: r.t_start):
            intervals.setdefault(row.t_start, []).append(row)
        return intervals

    def _spans(self) -> dict[float, Row]:
        """The first row of each interval, by its start."""
        return {start: rows[0] for start, rows in self.by_interval().items()}

    @property
    def duration_s(self) -> float:
        if "duration_s" in self.facts:
            return self.facts["duration_s"]
        return max((row.t_end for row in self.rows), default=0.0)

    @property
    def intervals(self) -> int:
        return len(self._spans())

    @property
    def faces(self) -> int:
        """Distinct face ids (tracks) seen."""
        return len({row.face.id for row in self.rows if row.face})

    @property
    def speech_s(self) -> float:
        """Seconds of speech the voice-activity detector heard (read back from a CSV: the
        voiced intervals' length)."""
        if "speech_s" in self.facts:
            return self.facts["speech_s"]
        return round(sum(r.t_end - r.t_start for r in self._spans().values() if r.voice_active), 3)

    def dominant_emotion(self) -> str:
        """The label that was the fused emotion for the most seconds, each row counting its
        interval's length (a person's seconds, as ``people()`` counts them; with several people
        on screen, each counts); '' if there is no fused emotion."""
        seconds: dict[str, float] = {}
        for row in self.rows:
            if row.fused:
                seconds[row.fused.label] = seconds.get(row.fused.label, 0.0) + row.t_end - row.t_start
        return _most(seconds)

    def people(self) -> list[dict]:
        """One row per face id (PEOPLE_COLUMNS): seconds the face was seen and seconds it spoke,
        its most frequent face-only and fused emotion, and the share of its seen time each
        label was its fused emotion (time-weighted; the shares sum to 1)."""
        seen: dict[int, dict] = {}
        for row in self.rows:
            if not row.face:
                continue
            person = seen.setdefault(row.face.id, {"visible": 0.0, "speaking": 0.0, "face": {}, "fused": {}})
            span = row.t_end - row.t_start
            person["visible"] += span
            person["speaking"] += span if row.face.speaking else 0.0
            for kind, emotion in (("face", row.face.emotion), ("fused", row.fused)):
                if emotion:
                    person[kind][emotion.label] = person[kind].get(emotion.label, 0.0) + span
        out = []
        for face_id, p in sorted(seen.items()):
            total = sum(p["fused"].values())
            row = {
                "face_id": face_id,
                "seconds_visible": round(p["visible"], 3),
                "seconds_speaking": round(p["speaking"], 3),
                "dominant_face_emotion": _most(p["face"]),
                "dominant_fused_emotion": _most(p["fused"]),
            }
            row.update(
                {
                    f"share_{label}": round(p["fused"].get(label, 0.0) / total, DECIMALS) if total else 0.0
                    for label in LABELS
                }
            )
            out.append(row)
        return out

    def write_people_csv(self, path: str | Path) -> None:
        """``people()`` as CSV: PEOPLE_COLUMNS as the header."""
        with open(path, "w", newline="", encoding="utf-8") as f:
            out = csv.DictWriter(f, PEOPLE_COLUMNS, lineterminator="\n")
            out.writeheader()
            out.writerows(self.people())

    def to_pandas(self):
        """The rows as a DataFrame (columns: COLUMNS; face ids and boxes as nullable Int64),
        the facts in its ``attrs``."""
        import pandas as pd

        frame = pd.DataFrame([row.values() for row in self.rows], columns=COLUMNS)
        # face_speaking is empty where there is no face or no speech: nullable, like the ids.
        # The same types whatever the data (a video with no voice has float NaN, not None).
        labels = [c for c in COLUMNS if c.endswith("_emotion")]
        numbers = [c for c in COLUMNS if c in ROUNDED or c in ("t_start", "t_end")]
        frame = frame.astype(
            {
                **dict.fromkeys(sorted(INT_COLUMNS), "Int64"),
                **dict.fromkeys(numbers, "float64"),
                **dict.fromkeys(labels, "str"),  # pandas' text type: missing is NaN
                "voice_active": bool,
                "face_speaking": "boolean",
            }
        )
        frame.attrs.update(self.facts, intervals=self.intervals, faces=self.faces, speech_s=self.speech_s)
        frame.attrs.setdefault("duration_s", self.duration_s)
        return frame

    def write_csv(self, path: str | Path) -> None:
        """COLUMNS as the header; probabilities to 4 decimals; voice_active and face_speaking as true/false."""
        with open(path, "w", newline="", encoding="utf-8") as f:
            out = csv.writer(f, lineterminator="\n")
            out.writerow(COLUMNS)
            out.writerows(row.to_cells() for row in self.rows)

    @classmethod
    def read_csv(cls, path: str | Path) -> Timeline:
        """A timeline from a CSV that ``write_csv`` wrote (to summarise it again on a rerun)."""
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = set(COLUMNS) - set(reader.fieldnames or [])
            if missing:
                raise ValueError(f"{path}: not an emocli timeline (no column {sorted(missing)[0]})")
            return cls([Row.from_cells(cells) for cells in reader])


def _most(seconds: dict[str, float]) -> str:
    """The label with the most seconds (ties: the earlier label in LABELS); '' for none."""
    return max(seconds, key=lambda label: (seconds[label], -LABELS.index(label))) if seconds else ""


def _cell(value, rounded: bool) -> str:
    if value is None or value != value:  # None, or NaN
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    return repr(round(float(value), DECIMALS)) if rounded else repr(float(value))
