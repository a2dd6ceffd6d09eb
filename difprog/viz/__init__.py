"""Feature visualisation by optimising inputs, attribution (saliency, integrated gradients,
SmoothGrad, Grad-CAM, occlusion) with its sanity checks, and token attribution.

Example:
    >>> from difprog import viz
    >>> objective = viz.class_logit(range(10)) - 0.05 * viz.total_variation()
    >>> result = viz.visualize(model, params, objective, (10, 8, 8, 1))
    >>> viz.save_grid(result.images, "classes.png", labels=range(10))

The command line's pictures and reports, from Python: `write_visualizations` (difprog
visualize), `write_attributions` (difprog attribute, with the sanity checks) and
`write_token_attribution` (the attribution.png of difprog train --model gpt).
"""

from difprog.viz._attribution import (
    grad_cam,
    integrated_gradients,
    layer_outputs,
    occlusion,
    smoothgrad,
)
from difprog.viz._attribution_grid import (
    GRADIENT_METHODS,
    METHODS,
    Attributions,
    attributions,
    empty_map_note,
    empty_maps,
    last_spatial_layer,
    save_attributions,
)
from difprog.viz._faithfulness import (
    DeletionInsertion,
    Faithfulness,
    deletion_insertion,
    faithfulness,
    infidelity,
    sensitivity_max,
)
from difprog.viz._images import (
    COLOUR_MIXING,
    Parameterization,
    compose,
    decorrelated_to_rgb,
    fourier,
    jitter,
    pad_crop,
    pixel,
    random_affine,
    random_rotate,
    random_scale,
    rgb_to_decorrelated,
    standard_transforms,
)
from difprog.viz._objectives import (
    Objective,
    blur,
    channel,
    class_logit,
    deepdream,
    direction,
    diversity,
    l1,
    l2,
    neuron,
    per_image,
    total_variation,
)
from difprog.viz._optimize import Visualization, visualize
from difprog.viz._render import save_curve_panels, save_curves, save_grid, save_saliency
from difprog.viz._saliency import gradient_times_input, saliency
from difprog.viz._sanity import (
    Completeness,
    Randomization,
    completeness,
    model_randomization,
    randomizations,
    spearman,
    trainable_layers,
)
from difprog.viz._tokens import (
    TokenAttribution,
    save_token_attribution,
    token_attribution,
)
from difprog.viz._writers import (
    CHANNEL_NOISE,
    CLASS_DECAY,
    TOKEN_PROMPT,
    write_attributions,
    write_token_attribution,
    write_visualizations,
)

__all__ = [
    "CHANNEL_NOISE",
    "CLASS_DECAY",
    "GRADIENT_METHODS",
    "METHODS",
    "Attributions",
    "Completeness",
    "DeletionInsertion",
    "Faithfulness",
    "Randomization",
    "attributions",
    "completeness",
    "deletion_insertion",
    "empty_map_note",
    "empty_maps",
    "faithfulness",
    "grad_cam",
    "infidelity",
    "integrated_gradients",
    "last_spatial_layer",
    "layer_outputs",
    "model_randomization",
    "occlusion",
    "randomizations",
    "save_attributions",
    "smoothgrad",
    "spearman",
    "trainable_layers",
    "COLOUR_MIXING",
    "Objective",
    "Parameterization",
    "TokenAttribution",
    "Visualization",
    "blur",
    "channel",
    "class_logit",
    "compose",
    "decorrelated_to_rgb",
    "deepdream",
    "direction",
    "diversity",
    "fourier",
    "gradient_times_input",
    "jitter",
    "l1",
    "l2",
    "neuron",
    "pad_crop",
    "per_image",
    "pixel",
    "random_affine",
    "random_rotate",
    "random_scale",
    "rgb_to_decorrelated",
    "saliency",
    "save_curve_panels",
    "save_curves",
    "save_grid",
    "save_saliency",
    "save_token_attribution",
    "sensitivity_max",
    "standard_transforms",
    "token_attribution",
    "total_variation",
    "visualize",
    "TOKEN_PROMPT",
    "write_attributions",
    "write_token_attribution",
    "write_visualizations",
]
