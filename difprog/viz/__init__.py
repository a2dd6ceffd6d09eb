"""Feature visualisation by optimising inputs, saliency maps, and token attribution.

Example:
    >>> from difprog import viz
    >>> objective = viz.class_logit(range(10)) - 0.05 * viz.total_variation()
    >>> result = viz.visualize(model, params, objective, (10, 8, 8, 1))
    >>> viz.save_grid(result.images, "classes.png", labels=range(10))
"""

from difprog.viz._images import (
    Parameterization,
    compose,
    fourier,
    jitter,
    pad_crop,
    pixel,
    random_scale,
    standard_transforms,
)
from difprog.viz._objectives import (
    Objective,
    blur,
    channel,
    class_logit,
    deepdream,
    direction,
    l1,
    l2,
    neuron,
    per_image,
    total_variation,
)
from difprog.viz._optimize import Visualization, visualize
from difprog.viz._render import save_grid, save_saliency
from difprog.viz._saliency import gradient_times_input, saliency
from difprog.viz._tokens import (
    TokenAttribution,
    save_token_attribution,
    token_attribution,
)

__all__ = [
    "Objective",
    "Parameterization",
    "TokenAttribution",
    "Visualization",
    "blur",
    "channel",
    "class_logit",
    "compose",
    "deepdream",
    "direction",
    "fourier",
    "gradient_times_input",
    "jitter",
    "l1",
    "l2",
    "neuron",
    "pad_crop",
    "per_image",
    "pixel",
    "random_scale",
    "saliency",
    "save_grid",
    "save_saliency",
    "save_token_attribution",
    "standard_transforms",
    "token_attribution",
    "total_variation",
    "visualize",
]
