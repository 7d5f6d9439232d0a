"""The names of the model zoo's members and of the scores a scoring graph can export: the one
list the config schema, the networks, export and the docs all use. No torch here, so the
runtime config loads without the train extra."""

from __future__ import annotations

from typing import Literal, get_args

ModelName = Literal["ganomaly", "skip_ganomaly", "skip_attention", "skip_ganomaly_pp"]
ScoreName = Literal["latent_l2", "image_l1", "residual_max", "feature_l1", "feature_l2", "combined", "pixel_max",
                    "residual_rel", "colour_max", "residual_colour", "greying_max", "residual_colour_greying"]

#: model families selectable by ``training.model``
MODEL_NAMES: tuple[str, ...] = get_args(ModelName)
#: every score the scoring graph can compute, in export order
ALL_SCORES: tuple[str, ...] = get_args(ScoreName)
#: output order of a GANomaly scoring graph without D (and its ONNX output names)
GANOMALY_SCORES: tuple[str, ...] = ALL_SCORES[:3]
#: scores that need the discriminator in the graph
D_SCORES = frozenset({"feature_l1", "feature_l2", "combined", "pixel_max"})
#: scores exported only when a config's ``scores`` names them (family defaults stay as they were)
OPT_IN_SCORES = frozenset({"residual_rel", "colour_max", "residual_colour", "greying_max", "residual_colour_greying"})
#: scores of colour: they need colour tiles
COLOUR_SCORES = frozenset({"colour_max", "residual_colour", "greying_max", "residual_colour_greying"})
#: scores made of other scores, normalised first: a composite is exported only with its parts
COMPOSITE_PARTS: dict[str, tuple[str, ...]] = {
    "combined": ("image_l1", "feature_l2"),
    "residual_colour": ("residual_max", "colour_max"),
    "residual_colour_greying": ("residual_max", "colour_max", "greying_max"),
}
