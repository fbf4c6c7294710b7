"""Training batches for the face model: FER2013 faces degraded the way video faces are.

FER2013 faces are sharp, well-exposed web photos. The faces emocli classifies come from
video: small faces upscaled from a few dozen pixels, defocus and motion blur, codec
blocks, dim rooms and sensor noise. Each training face is degraded by a random subset of
these, with cv2 on the 48x48 uint8 image, before the model's own geometric augmentation
(flip, rotation, zoom, shift, contrast, erasing) runs in the graph.

Targets may be soft: a blend of the dataset's label and a crowd's votes (FER+).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import keras
import numpy as np

from ..models import DEFAULT_FACE_PREPROCESS, normalize_faces


@dataclass
class Camera:
    blur_p: float = 0.25  # Gaussian defocus ...
    blur_sigma: tuple[float, float] = (0.4, 1.4)  # ... of this many pixels at 48 px
    lowres_p: float = 0.25  # a small face upscaled: down to this many pixels and back
    lowres_side: tuple[int, int] = (14, 36)
    jpeg_p: float = 0.25  # block artifacts at a quality drawn from this range
    jpeg_quality: tuple[int, int] = (12, 60)
    light_p: float = 0.3  # exposure: gamma and gain
    gamma: tuple[float, float] = (0.6, 1.8)
    gain: tuple[float, float] = (0.45, 1.15)
    noise_p: float = 0.25  # sensor noise, grey levels (standard deviation)
    noise_sigma: tuple[float, float] = (2.0, 12.0)


CAMERA_PRESETS = {
    "full": Camera(),
    "off": Camera(blur_p=0, lowres_p=0, jpeg_p=0, light_p=0, noise_p=0),
}


def degrade(face: np.ndarray, camera: Camera, rng: np.random.Generator) -> np.ndarray:
    """One uint8 grey face with a random subset of the camera's degradations applied."""
    img = face
    side = img.shape[0]
    if rng.random() < camera.lowres_p:
        small = int(rng.integers(camera.lowres_side[0], camera.lowres_side[1] + 1))
        img = cv2.resize(cv2.resize(img, (small, small), interpolation=cv2.INTER_AREA), (side, side))
    if rng.random() < camera.blur_p:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(*camera.blur_sigma))
    if rng.random() < camera.light_p:
        x = (img.astype(np.float32) / 255.0) ** rng.uniform(*camera.gamma) * rng.uniform(*camera.gain)
        img = np.clip(x * 255.0, 0, 255).astype(np.uint8)
    if rng.random() < camera.noise_p:
        noise = rng.normal(0.0, rng.uniform(*camera.noise_sigma), img.shape)
        img = np.clip(img + noise, 0, 255).astype(np.uint8)
    if rng.random() < camera.jpeg_p:
        quality = int(rng.integers(camera.jpeg_quality[0], camera.jpeg_quality[1] + 1))
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if ok:
            img = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    return img


def blend_targets(y: np.ndarray, crowd: np.ndarray | None, weight: float, n_classes: int) -> np.ndarray:
    """(1 - weight) x the one-hot label + weight x the crowd's vote shares, per face;
    the label alone where the crowd has no votes (NaN rows)."""
    onehot = np.eye(n_classes, dtype=np.float32)[y]
    if crowd is None or weight == 0:
        return onehot
    known = ~np.isnan(crowd).any(axis=1)
    out = onehot.copy()
    out[known] = (1 - weight) * onehot[known] + weight * crowd[known]
    return out


class FaceBatches(keras.utils.PyDataset):
    """Shuffled batches of (degraded faces as the model's input, targets, sample weights).

    Epoch ``e``'s order and degradations come from ``default_rng([seed, e, ...])``, so a
    resumed run sees what an uninterrupted one would.
    """

    def __init__(
        self,
        faces: np.ndarray,
        targets: np.ndarray,
        weights: np.ndarray,
        camera: Camera,
        batch_size: int,
        seed: int = 0,
        epoch: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.faces, self.targets, self.weights, self.camera = faces, targets, weights, camera
        self.batch_size, self.seed = batch_size, seed
        self.seek(epoch)

    def seek(self, epoch: int) -> None:
        """Draw what epoch ``epoch`` draws next (a resumed run starts mid-way)."""
        self.epoch = epoch
        self.order = np.random.default_rng([self.seed, epoch]).permutation(len(self.faces))

    def __len__(self) -> int:
        return int(np.ceil(len(self.faces) / self.batch_size))

    def on_epoch_end(self) -> None:
        self.seek(self.epoch + 1)

    def __getitem__(self, b: int):
        idx = self.order[b * self.batch_size : (b + 1) * self.batch_size]
        rng = np.random.default_rng([self.seed, self.epoch, b])
        x = np.stack([degrade(self.faces[i], self.camera, rng) for i in idx])
        return normalize_faces(x, DEFAULT_FACE_PREPROCESS)[..., None], self.targets[idx], self.weights[idx]
