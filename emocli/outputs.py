"""Output files: atomic writes, and one writer per kind of output."""

from __future__ import annotations

import contextlib
import csv
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .labels import LABELS
from .timeline import COLUMNS, Row, Timeline

# Bytes a file name may take on common file systems (ext4, XFS, APFS, NTFS: 255).
NAME_MAX = 255
# Room a temporary name needs beyond its final name's stem: ".", ".part-", a pid, a suffix.
_PART_ROOM = 40


def short_name(name: str, room: int = _PART_ROOM) -> str:
    """``name``, or when ``room`` more bytes would pass NAME_MAX, its head (whole characters)
    and a hash of all of it: a derived name (temporary, record) never exceeds the limit and
    two long names that share their head still get different ones."""
    data = name.encode("utf-8", "surrogateescape")
    if len(data) + room <= NAME_MAX:
        return name
    import hashlib

    digest = hashlib.sha1(data).hexdigest()[:12]
    head = data[: NAME_MAX - room - len(digest) - 1].decode("utf-8", "ignore")
    return f"{head}~{digest}"


def part_prefix(path: Path) -> str:
    """The start of every temporary name of ``path`` (``.<stem>.part-``), whatever the pid."""
    return f".{short_name(path.stem)}.part-"


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` (same suffix); rename it over ``path`` on success.

    A crash or kill at any moment leaves either the old file or the new one under the
    final name, never a half-written one; a failed write removes its temporary. The
    temporary's name stays within NAME_MAX even when ``path``'s name nearly fills it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{part_prefix(path)}{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_all(timeline: Timeline, stem: Path, writers: list, before_commit=None) -> list[Path]:
    """Every output of ``writers`` for ``stem``, or none: each is written to its temporary,
    and only when all are written (``before_commit()`` then called) are they renamed over
    their final names, in ``writers``' order. A failure or a signal while writing leaves
    the earlier outputs as they were."""
    with contextlib.ExitStack() as stack:
        # Contexts close in the reverse order of entry: entered reversed, renamed in order.
        for w in reversed(writers):
            target = w.path(stem)
            w.write_temporary(timeline, stack.enter_context(atomic_path(target)), target)
        if before_commit is not None:
            before_commit()
    return [w.path(stem) for w in writers]


# Writers: each turns a Timeline into one file, from its rows: none needs pandas.

# One colour per label, in LABELS order, used by the plot and the annotated video (RGB).
COLOURS = {
    "angry": (214, 39, 40),
    "disgust": (140, 86, 75),
    "fear": (148, 103, 189),
    "happy": (255, 187, 0),
    "sad": (31, 119, 180),
    "surprise": (23, 190, 207),
    "neutral": (150, 150, 150),
}
SUMMARY_COLUMNS = [
    "video",
    "status",
    "error",
    "duration_s",
    "intervals",
    "faces",
    "speech_s",
    "dominant_emotion",
    "seconds",
]


def per_interval(intervals: dict[float, list[Row]], kind: str):
    """Per interval (``Timeline.by_interval``), the mean of its rows' ``kind`` ("voice" or
    "fused") probabilities over those that have them, NaN where none has: shape (intervals, labels)."""
    probs = np.full((len(intervals), len(LABELS)), np.nan)
    for i, rows in enumerate(intervals.values()):
        seen = [getattr(row, kind).p for row in rows if getattr(row, kind)]
        if seen:
            probs[i] = np.mean(np.array(seen, dtype=float), axis=0)
    return probs


class Writer:
    """Writes one kind of output for a timeline, atomically; subclasses say what and how."""

    suffix = ""
    what = ""  # the output in words, as messages name it

    def path(self, stem: Path) -> Path:
        return stem.with_name(stem.name + self.suffix)

    def write(self, timeline: Timeline, stem: Path) -> Path:
        """Write ``stem``'s output, atomically."""
        target = self.path(stem)
        with atomic_path(target) as tmp:
            self.write_temporary(timeline, tmp, target)
        return target

    def write_temporary(self, timeline: Timeline, tmp: Path, target: Path) -> None:
        """Write the output for ``target`` into ``tmp``; an OSError always names ``target``
        (libraries that write through their own handles, as matplotlib does, raise it
        without a file name)."""
        try:
            self._write(timeline, tmp)
        except OSError as e:
            if e.filename is None:
                raise OSError(e.errno, e.strerror or str(e), str(target)) from e
            raise

    def _write(self, timeline: Timeline, tmp: Path) -> None:
        raise NotImplementedError


class CsvWriter(Writer):
    suffix = ".csv"
    what = "timeline"

    def _write(self, timeline: Timeline, tmp: Path) -> None:
        timeline.write_csv(tmp)


class JsonWriter(Writer):
    """``<stem>.json``: one object per video, its facts and summary, its people, and its rows
    (keyed by the CSV's columns, with the CSV's rounding; an empty cell is null)."""

    suffix = ".json"
    what = "JSON timeline"
    FACTS = (
        "duration_s",
        "speech_s",
        "has_video",
        "has_audio",
        "width",
        "height",
        "fps",
        "fusion",
        "face_weight",
        "note",
    )

    def _write(self, timeline: Timeline, tmp: Path) -> None:
        import json

        document = {"video": timeline.facts.get("video", "")}
        document.update({k: timeline.facts[k] for k in self.FACTS if k in timeline.facts})
        document.update(in_brief(timeline), people=timeline.people(), rows=[_json_row(r) for r in timeline.rows])
        tmp.write_text(json.dumps(document, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")


def _json_row(row: Row) -> dict:
    """The row's CSV cells, typed (booleans, integers, rounded numbers, text; None for an empty cell)."""
    return dict(zip(COLUMNS, Row.from_cells(dict(zip(COLUMNS, row.to_cells()))).values()))


class PeopleWriter(Writer):
    """``<stem>.people.csv``: one row per person (face id), from ``Timeline.people``."""

    suffix = ".people.csv"
    what = "people table"

    def _write(self, timeline: Timeline, tmp: Path) -> None:
        timeline.write_people_csv(tmp)


class PlotWriter(Writer):
    """Fused emotion over time (stacked); beneath it a strip per person (their fused emotion,
    a black bar where they speak) and one for the voice's top label."""

    suffix = ".png"
    what = "plot"
    MAX_PEOPLE = 8  # strips for the people seen longest; more would not be legible

    def _write(self, timeline: Timeline, tmp: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch

        colours = {k: tuple(c / 255 for c in v) for k, v in COLOURS.items()}
        intervals = timeline.by_interval()
        t0 = np.array(list(intervals), dtype=float)
        t1 = np.array([rows[0].t_end for rows in intervals.values()], dtype=float)
        fused = per_interval(intervals, "fused")
        people = timeline.people()
        people = sorted(
            sorted(people, key=lambda p: -p["seconds_visible"])[: self.MAX_PEOPLE], key=lambda p: p["face_id"]
        )
        strips = len(people) + 1
        extra = 0.3 * max(0, strips - 2)  # inches: the figure grows by a strip's height per person past the first
        fig, (ax, strip) = plt.subplots(
            2, 1, figsize=(11, 4.8 + extra), height_ratios=[3.2, 0.5 * strips + extra], sharex=True
        )
        # Each label's band is one step-shaped polygon, and each strip one collection, rather
        # than a patch per interval: matplotlib draws a handful of artists, not hundreds.
        edges = np.append(t0, t1[-1:])
        bottom = np.zeros(len(t0))
        for k, label in enumerate(LABELS):
            top = bottom + np.nan_to_num(fused[:, k])
            ax.fill_between(
                edges,
                np.append(bottom, bottom[-1:]),
                np.append(top, top[-1:]),
                step="post",
                color=colours[label],
                linewidth=0,
            )
            bottom = top
        # With several people the band is their mean: said, so it is not read as one person's.
        together = " (all faces)" if len(people) > 1 else ""
        ax.set(ylim=(0, 1), ylabel=f"fused probability{together}", xlim=(0, float(t1.max()) if len(t1) else 1))
        ax.set_title(plot_title(timeline, together), loc="left")
        voice = per_interval(intervals, "voice")
        heard = ~np.isnan(voice).any(axis=1)
        strip.broken_barh(
            list(zip(t0[heard], (t1 - t0)[heard])),
            (-0.4, 0.8),
            facecolors=[colours[LABELS[k]] for k in voice[heard].argmax(axis=1)],
        )
        for row, person in enumerate(people, start=1):
            mine = [
                (r.t_start, r.t_end - r.t_start, r)
                for rows in intervals.values()
                for r in rows
                if r.face and r.face.id == person["face_id"] and r.fused
            ]
            strip.broken_barh(
                [(a, w) for a, w, _ in mine],
                (row - 0.4, 0.8),
                facecolors=[colours[r.fused.label] for _, _, r in mine],
            )
            spoke = [(a, w) for a, w, r in mine if r.face.speaking]
            if spoke:
                strip.broken_barh(spoke, (row - 0.4, 0.2), facecolors="black")
        strip.set(
            yticks=range(strips),
            yticklabels=["voice"] + [f"#{p['face_id']}" for p in people],
            xlabel="time (s)",
            ylim=(-0.5, strips - 0.5),
        )
        fig.legend(
            handles=[Patch(color=colours[k], label=k) for k in LABELS] + [Patch(color="black", label="speaks")],
            loc="upper right",
            ncols=8,
            fontsize=8,
            frameon=False,
        )
        # Margins in inches, within a pixel of what tight_layout(rect=(0, 0, 1, 0.95)) finds
        # whatever the timeline (the texts around the axes are fixed), without measuring
        # every tick label: that was 40 % of a plot's time.
        w, h = fig.get_size_inches()
        fig.subplots_adjust(
            left=0.67 / w, right=1 - 0.15 / w, bottom=0.585 / h, top=1 - 0.605 / h, hspace=0.14 * 4.8 / h
        )
        with warnings.catch_warnings():
            # A video's name in a script the font lacks (中文, emoji) draws as boxes: not worth a
            # warning on the console for every such video.
            warnings.filterwarnings("ignore", "Glyph .* missing from font", UserWarning)
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)


def plot_title(timeline: Timeline, together: str = "") -> str:
    """The plot's title: the video and its dominant fused emotion, or why it has none."""
    name = Path(str(timeline.facts.get("video", ""))).name
    if dom := timeline.dominant_emotion():
        return f"{name}: mostly {dom}{together}"
    if any(r.face or r.voice_active for r in timeline.rows):  # --fusion face or voice, and that one missing
        mode = timeline.facts.get("fusion")
        return f"{name}: no fused emotion (--fusion {mode}: {'no face seen' if mode == 'face' else 'no one seen speaking'})"
    return f"{name}: no face or speech found"


class AnnotatedVideoWriter(Writer):
    """The source video, every frame, with boxes, ids and labels drawn; its audio kept.

    One ffmpeg decodes, draws and encodes: a box and a tag per face slot and a voice tag,
    driven by a ``sendcmd`` script, so no frame comes through Python. A face keeps its slot
    while it is seen; its box moves every frame, interpolated between the positions the
    analysis sampled (``track`` in the rows it made, else each interval's box at its
    middle). The tag shows the face's own emotion; the speaker's also says it speaks and
    its fused emotion.
    """

    suffix = ".mp4"
    what = "annotated video"

    def __init__(self, source: str | Path, threads: int = 0):
        self.source = Path(source)
        self.threads = threads  # ffmpeg's decoding threads (0: resources.Plan.local()'s)

    def _write(self, timeline: Timeline, tmp: Path) -> None:
        from .media import filter_arg, probe, render_filtered

        info = probe(self.source)
        if not info.has_video or info.width <= 0 or info.height <= 0:
            raise RuntimeError("no frame to annotate")
        style = _TagStyle(info.width, info.height)
        intervals = timeline.by_interval()
        slots = _slots(intervals)
        n_slots = max((len(s) for s in slots.values()), default=0)
        font = filter_arg(str(_font_file()))
        # Non-square pixels made square first: boxes are in the pixels a player shows.
        filters = [f"scale={info.width}:{info.height},setsar=1"] if info.sar != 1.0 else []
        for k in range(n_slots):
            filters.append(f"drawbox@box{k}=enable=0:t={style.thick + 1}")
            filters.append(f"drawtext@tag{k}=enable=0:{style.text_options(font)}")
        filters.append(f"drawtext@voice=enable=0:{style.text_options(font)}")
        script: dict[float, list[str]] = {}
        for start, rows in intervals.items():
            script.setdefault(start, []).extend(self._commands(rows, slots[start], n_slots, style))
        fps = info.fps if info.fps > 0 else 25.0
        for t, commands in _motion(intervals, slots, _keyframes(intervals), fps, style):
            script.setdefault(t, []).extend(commands)
        commands = [f"{t!r} [enter] " + ", ".join(cmds) + ";" for t, cmds in sorted(script.items()) if cmds]
        audio = bool(timeline.facts.get("has_audio", True)) and info.has_audio
        codec = info.audio_codec if audio else None
        render_filtered(
            self.source,
            tmp,
            filters,
            "\n".join(commands),
            audio_codec=codec,
            size=(info.width, info.height),
            streams=(info.video_stream, info.audio_stream),  # the ones analysed: the default tracks
            threads=self.threads,
        )

    @staticmethod
    def _commands(rows: list[Row], slots: dict[int, int], n_slots: int, style: _TagStyle) -> list[str]:
        """The sendcmd commands that draw one interval's faces (in their ``slots``: face id ->
        slot) and voice (rows: its timeline rows)."""
        out = []
        faces = {r.face.id: r for r in rows if r.face}
        places = _tag_places(rows, style)
        used = {slot: face_id for face_id, slot in slots.items()}
        for k in range(n_slots):
            if k not in used:
                out += [f"drawbox@box{k} enable 0", f"drawtext@tag{k} enable 0"]
                continue
            r = faces[used[k]]
            label, text = face_tag(r)
            x, y, w, h = r.face.box
            out += [
                f"drawbox@box{k} {key} {value}"
                for key, value in (("x", x), ("y", y), ("w", w), ("h", h), ("color", style.hex(label)), ("enable", 1))
            ]
            out += [
                style.tag(
                    f"tag{k}", text, label, style.tag_x(x, text), style.tag_bottom(y, h, places.get(used[k], ABOVE))
                )
            ]
        voice = rows[0].voice if rows[0].voice_active else None
        if voice:
            text = f"voice {voice.label} {voice.confidence:.0%}"
            out.append(style.tag("voice", text, voice.label, 6 + style.pad, style.frame_h - 6 - style.pad))
        else:
            out.append("drawtext@voice enable 0")
        return out


# Where a face's tag goes (``_TagStyle.tag_bottom``): above its box (beneath where there is
# no room), beneath it, or above it one tag higher.
ABOVE, BENEATH, HIGHER = 0, 1, 2


def _tag_places(rows: list[Row], style: _TagStyle) -> dict[int, int]:
    """Per face id, where its tag goes in an interval (``ABOVE`` where not given): a tag that
    would cover one placed before it (faces side by side, a speaker's long tag) goes where
    it covers least, within the frame. The speaker's tag is placed first: it says the most."""
    placed: list[tuple] = []
    places: dict[int, int] = {}
    for r in sorted((r for r in rows if r.face), key=lambda r: (not r.face.speaking, r.face.id)):
        text = face_tag(r)[1]
        options = []
        for place in (ABOVE, BENEATH, HIGHER):
            rect = style.tag_rect(r.face.box, text, place)
            outside = rect[1] < 0 or rect[3] > style.frame_h  # a tag past the frame's edge is not drawn
            options.append((outside, sum(_overlap(rect, p) for p in placed), place, rect))
        *_, place, rect = min(options)
        placed.append(rect)
        if place != ABOVE:
            places[r.face.id] = place
    return places


def _overlap(a: tuple, b: tuple) -> int:
    """The area two (left, top, right, bottom) rectangles share."""
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def _slots(intervals: dict[float, list[Row]]) -> dict[float, dict[int, int]]:
    """Per interval, face id -> drawing slot: a face keeps its slot for as long as it is seen
    in consecutive intervals; a new face takes the lowest free one."""
    out: dict[float, dict[int, int]] = {}
    held: dict[int, int] = {}
    for start, rows in intervals.items():
        ids = [r.face.id for r in rows if r.face]
        held = {fid: slot for fid, slot in held.items() if fid in ids}
        for fid in ids:
            if fid not in held:
                held[fid] = min(set(range(len(ids) + len(held))) - set(held.values()))
        out[start] = dict(held)
    return out


def _keyframes(intervals: dict[float, list[Row]]) -> dict[int, list[tuple]]:
    """Per face id, its sampled positions (t, x, y, w, h) in time order: the rows' ``track``
    where the analysis left one, else each row's box at its interval's middle."""
    keys: dict[int, list[tuple]] = {}
    for rows in intervals.values():
        for r in rows:
            if r.face:
                points = r.face.track or [((r.t_start + r.t_end) / 2, *map(float, r.face.box))]
                keys.setdefault(r.face.id, []).extend(tuple(p) for p in points)
    return {fid: sorted(points) for fid, points in keys.items()}


def _shown(row: Row) -> tuple[float, float]:
    """When in its interval a face is on screen: from half a sampling step before the first
    frame it was found in to half a step after the last (the whole interval where it was
    found in every sampled frame, or where the row has no track)."""
    points = sorted(p[0] for p in row.face.track)
    if len(points) < 2:
        return row.t_start, row.t_end
    half = min(b - a for a, b in zip(points, points[1:])) / 2
    return max(row.t_start, points[0] - half), min(row.t_end, points[-1] + half)


def _position(t: float, points: np.ndarray) -> np.ndarray:
    """(x, y, w, h) at ``t`` from sampled ``points`` (t, x, y, w, h), interpolated; before the
    first and after the last, carried on at the speed of the two nearest (a box is shown at
    most half a sampling step beyond them: ``_shown``)."""
    times = points[:, 0]
    if len(points) >= 2 and (t < times[0] or t > times[-1]):
        a, b = (points[0], points[1]) if t < times[0] else (points[-2], points[-1])
        if b[0] > a[0]:
            return a[1:] + (b[1:] - a[1:]) * (t - a[0]) / (b[0] - a[0])
    return np.array([np.interp(t, times, points[:, i]) for i in range(1, 5)])


def _motion(intervals, slots, keys, fps: float, style: _TagStyle):
    """(time, commands) moving each slot's box and tag to its face's interpolated position,
    at every frame where it moved by a pixel or more; hiding them in the frames of an
    interval in which the face was not found (it came, went, or the shot changed)."""
    last: dict[int, tuple] = {}
    spans = [(start, rows[0].t_end) for start, rows in intervals.items()]
    for start, end in spans:
        first = int(np.ceil(start * fps - 1e-6))
        frames = np.arange(first, int(np.ceil(end * fps - 1e-6))) / fps
        at = slots[start]
        texts = {r.face.id: face_tag(r)[1] for r in intervals[start] if r.face}
        extent = {r.face.id: _shown(r) for r in intervals[start] if r.face}
        places = _tag_places(intervals[start], style)
        shown = dict.fromkeys(at.values(), True)  # _commands shows each face's slot at the start
        for t in frames:
            cmds = []
            for fid, k in at.items():
                lo, hi = extent[fid]
                visible = lo - 2e-3 <= t < hi + 2e-3  # track times are kept to the millisecond
                if visible != shown[k]:
                    cmds += [f"drawbox@box{k} enable {int(visible)}", f"drawtext@tag{k} enable {int(visible)}"]
                    shown[k] = visible
                if not visible:
                    continue
                box = [int(round(v)) for v in _position(t, np.array(keys[fid]))]
                if last.get(k) == (fid, *box):
                    continue
                x, y, w, h = box
                cmds += [
                    f"drawbox@box{k} x {x}",
                    f"drawbox@box{k} y {y}",
                    f"drawbox@box{k} w {w}",
                    f"drawbox@box{k} h {h}",
                    f"drawtext@tag{k} x {style.tag_x(x, texts[fid])}",
                    f"drawtext@tag{k} y {style.tag_bottom(y, h, places.get(fid, ABOVE))}-th",
                ]
                last[k] = (fid, *box)
            if cmds:
                yield round(float(t), 6), cmds


class _TagStyle:
    """Sizes that scale with the frame, and drawtext tags: text on a box of the label's colour."""

    def __init__(self, width: int, height: int):
        scale = max(0.45, min(width, height) / 700)
        self.frame_w, self.frame_h = width, height
        self.thick = max(1, int(round(2 * scale)))
        self.size = max(10, int(round(26 * scale)))
        self.height = int(round(self.size * 0.75))  # cap height of DejaVu Sans Bold, in pixels
        self.pad = max(3, int(round(4 * scale)))

    def tag_x(self, x: int, text: str) -> int:
        """Where a face's tag starts: at its box's left edge, moved left as far as it takes
        to keep the whole tag in the frame."""
        right = self.frame_w - _text_width(text, self.size) - self.pad
        return max(self.pad, min(x + self.pad, right))

    def tag_bottom(self, y: int, h: int, place: int = ABOVE) -> int:
        """The baseline of a face's tag at ``place``: ``ABOVE`` its box (beneath it where there
        is no room), ``BENEATH`` it, or ``HIGHER`` (above it, one tag higher)."""
        above = y - self.thick - self.pad - 2
        beneath = y + h + self.height + self.pad + 4
        if place == HIGHER:
            return above - self.size - 2 * self.pad
        return above if above - self.height - self.pad > 0 and place == ABOVE else beneath

    def tag_rect(self, box: tuple, text: str, place: int = ABOVE) -> tuple[int, int, int, int]:
        """Where a face's tag is drawn: (left, top, right, bottom) with its padding."""
        x, y, w, h = box
        left, bottom = self.tag_x(x, text) - self.pad, self.tag_bottom(y, h, place) + self.pad
        return left, bottom - self.size - 2 * self.pad, left + _text_width(text, self.size) + 2 * self.pad, bottom

    def text_options(self, font: str) -> str:
        return f"fontfile={font}:expansion=none:fontsize={self.size}:box=1:boxborderw={self.pad}:text=."

    @staticmethod
    def hex(label: str) -> str:
        r, g, b = COLOURS[label]
        return f"0x{r:02X}{g:02X}{b:02X}"

    def tag(self, name: str, text: str, label: str, x: int, bottom: int) -> str:
        """A reinit command: ``text`` with its baseline box bottom-left at (x, bottom)."""
        ink = "black" if dark_ink(label) else "white"
        options = f"text={text}:x={x}:y={bottom}-th:fontcolor={ink}:boxcolor={self.hex(label)}"
        return f"drawtext@{name} reinit '{options}', drawtext@{name} enable 1"


def dark_ink(label: str) -> bool:
    """Whether black text reads better than white on the label's colour (a light colour)."""
    r, g, b = COLOURS[label]
    return 0.299 * r + 0.587 * g + 0.114 * b > 150


def face_tag(r: Row) -> tuple[str, str]:
    """A face's label and tag in an annotated picture: its own emotion; the speaker's tag also
    says it speaks and gives the fused emotion."""
    shown = r.face.emotion or r.fused
    text = f"#{r.face.id} {shown.label} {shown.confidence:.0%}"
    if r.face.speaking:
        text += " - speaks"
        if r.fused:
            text += f" - fused {r.fused.label} {r.fused.confidence:.0%}"
    return shown.label, text


# Advance widths of DejaVu Sans Bold (the tags' font), in ems, of the characters a tag holds:
# measured once from the font, so placing a tag needs no font library (matplotlib's import
# would cost a CSV-and-video run a fifth of a second). Others count as 1 em, the widest.
_TAG_EMS = dict(
    zip(
        "#%-. 0123456789abcdefghijklmnopqrstuvwxyz",
        [0.84, 1.0, 0.41, 0.38, 0.35]
        + [0.7] * 10
        + [0.68, 0.71, 0.59, 0.71, 0.68, 0.44, 0.71, 0.71, 0.33]
        + [0.33, 0.66, 0.33, 1.04, 0.71, 0.68, 0.71, 0.71, 0.49, 0.6, 0.47, 0.71, 0.65, 0.92, 0.65, 0.65, 0.58],
        strict=True,
    )
)


def _text_width(text: str, size: int) -> int:
    """Pixels ``text`` takes in the tags' font at ``size`` pixels, as drawtext sets it (5 % more:
    at small sizes hinting rounds each advance up)."""
    return int(np.ceil(1.05 * size * sum(_TAG_EMS.get(c, 1.0) for c in text)))


def _font_file() -> Path:
    """DejaVu Sans Bold from matplotlib (a dependency already): ffmpeg's drawtext needs a
    font file, and a fresh machine may have no system fonts."""
    import importlib.util

    spec = importlib.util.find_spec("matplotlib")
    root = Path(next(iter(spec.submodule_search_locations)))
    return root / "mpl-data" / "fonts" / "ttf" / "DejaVuSans-Bold.ttf"


def summary_row(
    video: str, status: str, timeline: Timeline | None = None, error: str = "", seconds: float = 0.0
) -> dict:
    row = dict.fromkeys(SUMMARY_COLUMNS, "")
    row.update(video=video, status=status, error=error, seconds=round(seconds, 3))
    if timeline is not None:
        row.update(in_brief(timeline))
    return row


def in_brief(timeline: Timeline) -> dict:
    """A timeline in the summary's words: its length, intervals, faces, speech and dominant emotion."""
    return {
        "duration_s": timeline.duration_s,
        "intervals": timeline.intervals,
        "faces": timeline.faces,
        "speech_s": timeline.speech_s,
        "dominant_emotion": timeline.dominant_emotion(),
    }


def write_summary(rows: list[dict], path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        out = csv.DictWriter(f, SUMMARY_COLUMNS, extrasaction="ignore", lineterminator="\n")
        out.writeheader()
        out.writerows(rows)
