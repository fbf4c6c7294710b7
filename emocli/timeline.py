"""What the analysis of one video gives: a ``Timeline``, rows plus facts, that writes itself.

A row is one interval and one face (or the interval alone, where no face was seen), keyed
by ``COLUMNS``. ``emocli process`` builds, writes, reads back, plots and summarises
timelines without pandas: importing it costs a fifth of a second, a tenth of the whole
run on a minute of 720p video (benchmarks/floor.py). ``to_pandas`` gives the DataFrame
of the library API.
"""

from __future__ import annotations

import csv
import math
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
BOOL_COLUMNS = frozenset(["voice_active", "face_speaking"])
TEXT_COLUMNS = frozenset(["video", "face_emotion", "voice_emotion", "fused_emotion"])
ROUNDED = frozenset(c for c in COLUMNS if "_p_" in c or c.endswith("_confidence") or c == "face_score")
DECIMALS = 4  # of probabilities, confidences and detector scores in the CSV
PEOPLE_COLUMNS = [
    "face_id",
    "seconds_visible",
    "seconds_speaking",
    "dominant_face_emotion",
    "dominant_fused_emotion",
] + [f"share_{label}" for label in LABELS]


def is_missing(value) -> bool:
    return value is None or value != value  # None, or NaN (pandas' missing value)


def has_face(row: dict) -> bool:
    return not is_missing(row.get("face_id"))


class Timeline:
    """One video's emotion timeline: ``rows`` (dicts keyed by COLUMNS; a missing key is an
    empty cell) and ``facts`` about the video (duration_s, has_video, has_audio, size,
    fps, fusion, face_weight)."""

    def __init__(self, rows: list[dict], facts: dict | None = None):
        self.rows = rows
        self.facts = dict(facts or {})

    def __len__(self) -> int:
        return len(self.rows)

    def by_interval(self) -> dict[float, list[dict]]:
        """The rows of each interval, by its start, in time order."""
        intervals: dict[float, list[dict]] = {}
        for row in sorted(self.rows, key=lambda r: r["t_start"]):
            intervals.setdefault(row["t_start"], []).append(row)
        return intervals

    def _spans(self) -> dict[float, dict]:
        """The first row of each interval, by its start."""
        return {start: rows[0] for start, rows in self.by_interval().items()}

    @property
    def duration_s(self) -> float:
        if "duration_s" in self.facts:
            return self.facts["duration_s"]
        return max((row["t_end"] for row in self.rows), default=0.0)

    @property
    def intervals(self) -> int:
        return len(self._spans())

    @property
    def faces(self) -> int:
        """Distinct face ids (tracks) seen."""
        return len({row["face_id"] for row in self.rows if has_face(row)})

    @property
    def speech_s(self) -> float:
        """Seconds of speech the voice-activity detector heard (read back from a CSV: the
        voiced intervals' length)."""
        if "speech_s" in self.facts:
            return self.facts["speech_s"]
        return round(sum(r["t_end"] - r["t_start"] for r in self._spans().values() if r.get("voice_active")), 3)

    def dominant_emotion(self) -> str:
        """The label with the most fused probability over the whole timeline ('' if none)."""
        mass = [0.0] * len(LABELS)
        for row in self.rows:
            for k, label in enumerate(LABELS):
                p = row.get(f"fused_p_{label}")
                if not is_missing(p):
                    mass[k] += p
        return LABELS[max(range(len(LABELS)), key=mass.__getitem__)] if sum(mass) > 0 else ""

    def people(self) -> list[dict]:
        """One row per face id (PEOPLE_COLUMNS): seconds the face was seen and seconds it spoke,
        its most frequent face-only and fused emotion, and the share of its seen time each
        label was its fused emotion (time-weighted; the shares sum to 1)."""
        seen: dict[int, dict] = {}
        for row in self.rows:
            if not has_face(row):
                continue
            person = seen.setdefault(int(row["face_id"]), {"visible": 0.0, "speaking": 0.0, "face": {}, "fused": {}})
            span = row["t_end"] - row["t_start"]
            person["visible"] += span
            person["speaking"] += span if row.get("face_speaking") is True else 0.0
            for kind in ("face", "fused"):
                label = row.get(f"{kind}_emotion")
                if isinstance(label, str):
                    person[kind][label] = person[kind].get(label, 0.0) + span
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

        frame = pd.DataFrame(self.rows, columns=COLUMNS)
        # face_speaking is empty where there is no face or no speech: nullable, like the ids.
        frame = frame.astype(
            {**dict.fromkeys(sorted(INT_COLUMNS), "Int64"), "voice_active": bool, "face_speaking": "boolean"}
        )
        frame.attrs.update(self.facts, intervals=self.intervals, faces=self.faces, speech_s=self.speech_s)
        frame.attrs.setdefault("duration_s", self.duration_s)
        return frame

    def write_csv(self, path: str | Path) -> None:
        """COLUMNS as the header; probabilities to 4 decimals; voice_active and face_speaking as true/false."""
        with open(path, "w", newline="", encoding="utf-8") as f:
            out = csv.writer(f, lineterminator="\n")
            out.writerow(COLUMNS)
            out.writerows([_cell(c, row.get(c)) for c in COLUMNS] for row in self.rows)

    @classmethod
    def read_csv(cls, path: str | Path) -> Timeline:
        """A timeline from a CSV that ``write_csv`` wrote (to summarise it again on a rerun)."""
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = set(COLUMNS) - set(reader.fieldnames or [])
            if missing:
                raise ValueError(f"{path}: not an emocli timeline (no column {sorted(missing)[0]})")
            return cls([{c: _parse(c, row[c]) for c in COLUMNS} for row in reader])


def _most(seconds: dict[str, float]) -> str:
    """The label with the most seconds (ties: the earlier label in LABELS); '' for none."""
    return max(seconds, key=lambda label: (seconds[label], -LABELS.index(label))) if seconds else ""


def _cell(column: str, value) -> str:
    if is_missing(value):
        return ""
    if column in BOOL_COLUMNS:
        return "true" if value else "false"
    if column in INT_COLUMNS:
        return str(int(value))
    if column in ROUNDED:
        return repr(round(float(value), DECIMALS))
    return value if isinstance(value, str) else repr(float(value))


def _parse(column: str, text: str):
    if column == "voice_active":
        return text.strip().lower() == "true"
    if text == "":
        return None
    if column in BOOL_COLUMNS:
        return text.strip().lower() == "true"
    if column in TEXT_COLUMNS:
        return text
    if column in INT_COLUMNS:
        return int(float(text))
    value = float(text)
    return value if math.isfinite(value) else None
