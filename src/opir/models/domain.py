"""The mixture domain of a trained model: where in mixture-embedding space its training data lie, and how a mixture
it never saw is placed there before the network reads it.

A network conditioned on a mixture embedding learns from a handful of distinct electrolytes (OpIRSpec-7K-sim: five
among the system split's training systems), so the embeddings it trained on span a space of at most that many
dimensions minus one. Along that span it has learned how the forecast moves; beyond the range of its training
mixtures it extrapolates that learned function, and off the span its first layer's weights are still their random
initial values (no gradient ever reached them). Either can turn a new electrolyte into a forecast several times the
size of any seen (docs/decisions.md, seventeenth session: the latent ABCC on EC-only 1.2 M LiPF6).

:class:`MixtureDomain` is that span with, along each of its principal axes, the range of the training mixtures, in
the metric the network reads (its condition encoder's standardization, where it has one). :meth:`MixtureDomain.place`
leaves a mixture inside it as it is, bit for bit, and moves one outside to the nearest point of the box: its
principal coordinates clipped to the training range, its part off the span dropped. The model then forecasts a new
electrolyte as the nearest chemistry it knows instead of extrapolating; how far each one was moved is reported, so a
user sees that the forecast is a hedge, not a prediction of the new chemistry's own behaviour.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from opir.core.errors import ConfigError

log = logging.getLogger(__name__)

#: predict.mixture_domain: place unseen mixtures in the training domain, or read them as they are (the paper)
PLACEMENTS = ("training", "open")

# Relative size below which a singular value counts as zero (the span's rank) and a coordinate or residual as inside.
RANK_TOLERANCE = 1e-6
INSIDE_TOLERANCE = 1e-4


@dataclass(frozen=True)
class MixtureDomain:
    """The training mixtures' span and ranges, in the standardized space ``(x - mean) / std``."""

    mean: np.ndarray  # (D,) the network's standardization (zeros where it reads the raw embedding)
    std: np.ndarray  # (D,) (ones where it reads the raw embedding)
    center: np.ndarray  # (D,) mean of the distinct training mixtures, standardized
    axes: np.ndarray  # (r, D) orthonormal principal axes of their span (r = 0 for a single mixture)
    low: np.ndarray  # (r,) least coordinate of a training mixture along each axis
    high: np.ndarray  # (r,) greatest
    scale: float  # RMS distance of the training mixtures from their center: what "far" is measured against

    @classmethod
    def fit(cls, training: np.ndarray, mean: np.ndarray | None = None, std: np.ndarray | None = None) -> MixtureDomain:
        """The domain of ``training`` (n, D) raw mixture embeddings (repeats are counted once: a system's many
        samples share one mixture); ``mean``/``std``: the standardization the network applies, if any."""
        training = np.asarray(training, dtype=np.float64)
        if training.ndim != 2 or not len(training):
            raise ValueError(f"training mixtures must be a non-empty (n, D) array, got shape {training.shape}")
        dim = training.shape[1]
        mean = np.zeros(dim) if mean is None else np.asarray(mean, dtype=np.float64)
        std = np.ones(dim) if std is None else np.asarray(std, dtype=np.float64)
        standardized = np.unique((training - mean) / std, axis=0)
        center = standardized.mean(axis=0)
        offsets = standardized - center
        _, singular, rows = np.linalg.svd(offsets, full_matrices=False)
        rank = int(np.sum(singular > RANK_TOLERANCE * max(float(singular[0]) if singular.size else 0.0, 1e-12)))
        axes = rows[:rank]
        coords = offsets @ axes.T
        scale = float(np.sqrt(np.mean(np.sum(offsets**2, axis=1)))) if len(offsets) > 1 else 1.0
        return cls(mean, std, center, axes, coords.min(axis=0), coords.max(axis=0), max(scale, 1e-12))

    def place(self, mixtures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``mixtures`` (n, D) raw embeddings placed in the domain, and how far each was moved (in units of
        :attr:`scale`; 0 for a mixture inside, which is returned unchanged)."""
        mixtures = np.asarray(mixtures)
        offsets = (mixtures.astype(np.float64) - self.mean) / self.std - self.center
        coords = offsets @ self.axes.T
        clipped = np.clip(coords, self.low, self.high)
        placed_offsets = clipped @ self.axes
        moved = np.linalg.norm(offsets - placed_offsets, axis=1) / self.scale
        tolerance = INSIDE_TOLERANCE * (1.0 + np.linalg.norm(offsets, axis=1) / self.scale)
        inside = moved <= tolerance
        placed = ((placed_offsets + self.center) * self.std + self.mean).astype(mixtures.dtype)
        placed[inside] = mixtures[inside]
        return placed, np.where(inside, 0.0, moved)


def check_placement(placement: str, where: str) -> str:
    """``placement`` if it is one of :data:`PLACEMENTS`, else a ConfigError naming ``where`` it was set."""
    if placement not in PLACEMENTS:
        raise ConfigError(f"{where} {placement!r}: one of {', '.join(PLACEMENTS)}")
    return placement


def place_system_mixtures(mixtures: dict[str, np.ndarray], training_systems: list[str], test_systems: list[str],
                          mean: np.ndarray | None = None,
                          std: np.ndarray | None = None) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """``mixtures`` (system_id -> raw embedding) with each of ``test_systems`` placed in the domain of
    ``training_systems`` (in the metric ``mean``/``std``), and how far each moved system was moved."""
    domain = MixtureDomain.fit(np.stack([mixtures[s] for s in training_systems]), mean, std)
    placed = dict(mixtures)
    moved = {}
    for system in test_systems:
        new, distance = domain.place(np.asarray(mixtures[system])[None])
        placed[system] = new[0]
        if distance[0] > 0:
            moved[system] = round(float(distance[0]), 4)
    return placed, moved


def log_moved(what: str, moved: dict[str, float]) -> None:
    """One warning per system whose mixture was placed in the training mixtures' domain."""
    for system, distance in sorted(moved.items()):
        log.warning("%s: the mixture of %s lies outside the mixtures the model trained on (%.3g x their spread away); "
                    "it is forecast at the nearest point of their domain, not extrapolated (predict.mixture_domain)",
                    what, system, distance)
