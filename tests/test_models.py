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
