"""FaceModel's views: the zooms and mirror images whose predictions it averages."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from emocli.labels import LABELS
from emocli.models import FaceModel, ModelError, _zoomed


def with_preprocess(source, out, **changes):
    """A copy of the ONNX model ``source`` whose ``emocli.preprocess`` has ``changes``."""
    model = onnx.load(str(source))
    for prop in model.metadata_props:
        if prop.key == "emocli.preprocess":
            prop.value = json.dumps({**json.loads(prop.value), **changes})
    onnx.save(model, str(out))
    return out


def test_zoomed_views_are_the_centre_or_the_crop_with_its_edges_extended():
    crop = np.arange(100 * 80, dtype=np.uint16).reshape(100, 80)
    assert np.array_equal(_zoomed(crop, 2.0), crop[25:75, 20:60])
    wider = _zoomed(crop, 0.5)
    assert wider.shape == (200, 160) and np.array_equal(wider[50:150, 40:120], crop)
    assert (wider[:50, :40] == crop[0, 0]).all() and (wider[-50:, -40:] == crop[-1, -1]).all()
    assert _zoomed(crop, 1.0) is crop


def test_face_model_averages_the_zooms_in_its_metadata(face_onnx, tmp_path):
    crop = np.full((120, 120), 20, np.uint8)  # dark, with a bright centre: the tiny model reads the mean
    crop[30:90, 30:90] = 235
    happy, sad = LABELS.index("happy"), LABELS.index("sad")
    whole = FaceModel(with_preprocess(face_onnx, tmp_path / "whole.onnx", zooms=[1.0]))
    centre = FaceModel(with_preprocess(face_onnx, tmp_path / "centre.onnx", zooms=[2.0]))
    both = FaceModel(with_preprocess(face_onnx, tmp_path / "both.onnx", zooms=[1.0, 2.0]))
    p_whole, p_centre, p_both = (m.predict([crop, 255 - crop]) for m in (whole, centre, both))
    assert p_whole[0].argmax() == sad and p_centre[0].argmax() == happy  # the views really differ
    assert p_whole[1].argmax() == happy and p_centre[1].argmax() == sad
    assert np.allclose(p_both, (p_whole + p_centre) / 2, atol=1e-6)
    assert both.prepare([crop, crop]).shape == (4, 48, 48, 1)


def test_face_model_rejects_meaningless_zooms(face_onnx, tmp_path):
    with pytest.raises(ModelError, match="zooms must be positive"):
        FaceModel(with_preprocess(face_onnx, tmp_path / "bad.onnx", zooms=[1.0, 0.0]))


def test_analyzer_can_classify_each_face_once(face_onnx, voice_onnx, tmp_path):
    from emocli.pipeline import Analyzer

    views = with_preprocess(face_onnx, tmp_path / "views.onnx", zooms=[1.0, 2.0], flip_average=True)
    crop = np.zeros((60, 60, 3), np.uint8)
    with Analyzer(face_model=views, voice_model=voice_onnx, face_views=True) as every:
        assert every.face_model.zooms == (1.0, 2.0) and every.face_model.flip_average
        assert every.face_model.prepare([crop]).shape[0] == 2
    with Analyzer(face_model=views, voice_model=voice_onnx, face_views=False) as once:
        assert once.face_model.zooms == (1.0,) and not once.face_model.flip_average
        assert once.face_model.prepare([crop]).shape[0] == 1


def test_exported_face_models_average_in_one_file_each_keeping_its_graph(face_onnx, voice_onnx, tmp_path):
    from conftest import build_onnx
    from typer.testing import CliRunner

    from emocli.cli import app
    from emocli.models import read_info

    # A second tiny face model that reads the crop the other way round: bright is sad.
    w, b = np.zeros((1, len(LABELS))), np.zeros(len(LABELS))
    w[0, LABELS.index("sad")], b[LABELS.index("sad")] = 10.0, -5.0
    w[0, LABELS.index("happy")], b[LABELS.index("happy")] = -10.0, 5.0
    preprocess = read_info(face_onnx).preprocess
    other = build_onnx(tmp_path / "other.onnx", "face", preprocess, "image", ["N", 48, 48, 1], [1, 2, 3], w, b)

    runner = CliRunner()
    result = runner.invoke(app, ["export", str(face_onnx), str(other), "-o", str(tmp_path / "both.onnx")])
    assert result.exit_code == 0, result.output
    assert "average of 2" in result.output and "no --metrics-json" in result.output
    crops = [np.full((50, 50), v, np.uint8) for v in (10, 128, 240)]
    a, o, both = (FaceModel(p, views=False).predict(crops) for p in (face_onnx, other, tmp_path / "both.onnx"))
    assert np.abs(a - o).max() > 0.5  # two models that disagree ...
    assert np.allclose(both, (a + o) / 2, atol=1e-6)  # ... averaged in one file
    assert read_info(tmp_path / "both.onnx").preprocess == preprocess

    again = runner.invoke(app, ["export", str(face_onnx), str(other), "-o", str(tmp_path / "both.onnx")])
    assert again.exit_code == 1 and "already exists" in again.output
    onto = runner.invoke(app, ["export", str(face_onnx), str(other), "-o", str(other), "--force"])
    assert onto.exit_code == 1 and "is one of the models" in onto.output
    voice = runner.invoke(app, ["export", str(face_onnx), str(voice_onnx), "-o", str(tmp_path / "x.onnx")])
    assert voice.exit_code == 1 and "different tasks" in voice.output and not (tmp_path / "x.onnx").exists()
    wider = with_preprocess(other, tmp_path / "wider.onnx", crop_margin=0.3)
    differ = runner.invoke(app, ["export", str(face_onnx), str(wider), "-o", str(tmp_path / "x.onnx")])
    assert differ.exit_code == 1 and "crop_margin" in differ.output
    mixed = runner.invoke(app, ["export", str(face_onnx), str(tmp_path), "-o", str(tmp_path / "x.onnx")])
    assert mixed.exit_code == 2 and "not both" in mixed.output


def test_exported_voice_models_average_in_one_file_each_reading_features_with_its_own_scaler(voice_onnx, tmp_path):
    from conftest import build_onnx
    from typer.testing import CliRunner

    from emocli.cli import app
    from emocli.features import FeatureSpec, audio_features, normalize
    from emocli.models import VoiceModel, read_info

    spec = FeatureSpec.from_dict(read_info(voice_onnx).preprocess)
    rng = np.random.default_rng(0)
    t = np.arange(32_000) / 16_000
    clips = [0.5 * np.sin(2 * np.pi * 220 * t), 0.01 * np.sin(2 * np.pi * 440 * t), rng.normal(0, 0.1, 32_000)]
    raw = np.stack([audio_features(c.astype(np.float32), spec) for c in clips])
    mean, std = raw.mean((0, 1)), raw.std((0, 1)) + 1.0
    # Two runs fitted on different corpora: each standardises the features with its own statistics.
    shape = ["N", "T", spec.n_features]
    w = rng.normal(0, 3 / np.sqrt(spec.n_features), (spec.n_features, len(LABELS)))
    first = build_onnx(
        tmp_path / "a.onnx",
        "voice",
        {**spec.to_dict(), "mean": mean.tolist(), "std": std.tolist()},
        "features",
        shape,
        [1],
        w,
        np.zeros(len(LABELS)),
    )
    moved = {
        "mean": (mean + std * rng.normal(0, 1, len(mean))).tolist(),
        "std": (std * rng.uniform(0.5, 2, len(std))).tolist(),
    }
    second = build_onnx(
        tmp_path / "b.onnx",
        "voice",
        {**spec.to_dict(), **moved, "temperature": 3.0},
        "features",
        shape,
        [1],
        w,
        np.zeros(len(LABELS)),
    )

    def probs(path, temperature=None):
        model = VoiceModel(path)
        if temperature is not None:
            model.temperature = temperature
        return model.run(np.stack([normalize(f, model.spec) for f in raw]))

    a, b = probs(first), probs(second, temperature=1.0)
    assert np.abs(a - b).max() > 0.3  # the scalers really change what each member reads

    result = CliRunner().invoke(
        app, ["export", str(first), str(second), "-o", str(tmp_path / "avg.onnx"), "--temperature", "2"]
    )
    assert result.exit_code == 0, result.output
    assert "voice, average of 2" in result.output
    info = read_info(tmp_path / "avg.onnx")
    assert info.preprocess["temperature"] == 2.0 and info.preprocess["mean"] == read_info(first).preprocess["mean"]
    assert np.allclose(probs(tmp_path / "avg.onnx", temperature=1.0), (a + b) / 2, atol=1e-5)
    tempered = np.sqrt((a + b) / 2)
    assert np.allclose(probs(tmp_path / "avg.onnx"), tempered / tempered.sum(1, keepdims=True), atol=1e-5)

    plain = CliRunner().invoke(app, ["export", str(first), str(second), "-o", str(tmp_path / "plain.onnx")])
    assert plain.exit_code == 0 and "not calibrated" in plain.output
    assert "temperature" not in read_info(tmp_path / "plain.onnx").preprocess  # a member's own is dropped
    longer = with_preprocess(second, tmp_path / "c.onnx", window_s=3.0)
    differ = CliRunner().invoke(app, ["export", str(first), str(longer), "-o", str(tmp_path / "x.onnx")])
    assert differ.exit_code == 1 and "window_s" in differ.output and not (tmp_path / "x.onnx").exists()


def _bright_is_happy(k: int = len(LABELS)) -> tuple[np.ndarray, np.ndarray]:
    w, b = np.zeros((1, k)), np.zeros(k)
    w[0, 3 % k], b[3 % k] = 20.0, -10.0
    return w, b


def test_a_model_exported_for_one_face_at_a_time_classifies_many(face_onnx, tmp_path):
    """A graph whose input takes a batch of one (many exports have it) is run face by face."""
    from conftest import build_onnx

    preprocess = {"input_size": [48, 48], "grayscale": True, "scale": 1 / 255, "crop_margin": 0.1}
    w, b = _bright_is_happy()
    one = build_onnx(tmp_path / "one.onnx", "face", preprocess, "image", [1, 48, 48, 1], [1, 2, 3], w, b)
    any_ = build_onnx(tmp_path / "any.onnx", "face", preprocess, "image", ["N", 48, 48, 1], [1, 2, 3], w, b)
    crops = [np.full((60, 60, 3), level, np.uint8) for level in (20, 128, 240)]
    got = FaceModel(one, views=False).predict(crops)
    assert got.shape == (3, len(LABELS)) and np.allclose(got, FaceModel(any_, views=False).predict(crops))


def test_a_model_whose_output_does_not_match_its_labels_is_refused_on_sight(tmp_path):
    from conftest import build_onnx
    from typer.testing import CliRunner

    from emocli.cli import app
    from emocli.models import read_info

    w, b = _bright_is_happy(5)
    five = build_onnx(tmp_path / "five.onnx", "face", {}, "image", ["N", 48, 48, 1], [1, 2, 3], w, b)
    for load in (read_info, FaceModel):
        with pytest.raises(ModelError, match="its output has 5 values but its emocli.labels name 7"):
            load(five)
    r = CliRunner().invoke(app, ["models", str(five)])
    assert r.exit_code == 1 and "output has 5 values" in r.output


def test_models_shows_every_card_it_can_and_a_missing_file_is_bad_usage(face_onnx, voice_onnx, tmp_path):
    from typer.testing import CliRunner

    from emocli.cli import app

    r = CliRunner().invoke(app, ["models", str(face_onnx), str(tmp_path / "gone.onnx")])
    assert r.exit_code == 2
    assert f"face: {face_onnx}" in r.output and f"{tmp_path / 'gone.onnx'}: no such model file" in r.output
    for args in (
        ["evaluate", str(tmp_path / "gone.onnx"), "--data", str(tmp_path)],
        ["evaluate", str(face_onnx), "--data", str(tmp_path / "gone")],
        ["evaluate", str(voice_onnx), "--data", str(tmp_path), "--face-views"],
        ["export", str(face_onnx), str(tmp_path / "gone.onnx"), "-o", str(tmp_path / "avg.onnx")],
        ["export", str(face_onnx), str(face_onnx), "-o", str(tmp_path / "avg.onnx"), "--weights", "1,2,3"],
        ["export", str(face_onnx), str(face_onnx), "-o", str(tmp_path / "avg.onnx"), "--temperature", "0.5"],
        ["export", str(face_onnx), str(face_onnx), "-o", str(tmp_path / "avg.onnx"), "--metrics-json", "gone.json"],
        ["export", str(face_onnx), str(face_onnx), "-o", str(tmp_path / "avg.onnx"), "--metrics-json", str(face_onnx)],
    ):
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, (args, r.output)
    assert not (tmp_path / "avg.onnx").exists()


def test_float16_storage_is_named_once_however_often_it_was_asked_for(face_onnx, tmp_path):
    from typer.testing import CliRunner

    from emocli.cli import app
    from emocli.models import read_info

    half = tmp_path / "half.onnx"
    r = CliRunner().invoke(app, ["export", str(face_onnx), str(face_onnx), "-o", str(half), "--half"])
    assert r.exit_code == 0 and "averaging it with itself" in r.output, r.output
    again = tmp_path / "again.onnx"
    assert CliRunner().invoke(app, ["export", str(half), str(face_onnx), "-o", str(again), "--half"]).exit_code == 0
    assert read_info(half).precision == read_info(again).precision == "float32, float16 storage"
