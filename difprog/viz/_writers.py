"""The pictures and reports of `difprog visualize`, `difprog attribute`, `difprog demo` and
`difprog train --model gpt`, written from Python: the same files the command line writes."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence

import jax
import numpy as np

from difprog import arguments
from difprog.errors import ArgumentError
from difprog.progress import note as log
from difprog.viz import (
    _attribution,
    _attribution_grid,
    _faithfulness,
    _images,
    _objectives,
    _optimize,
    _render,
    _saliency,
    _sanity,
    _tokens,
)

# Class visualisations take a smoother spectrum than Lucid's 1 / frequency (decay 1) and no L1
# penalty: on the Fashion-MNIST CNN (6 epochs, 93.1%), decay 1 with L1 0.05 drew stripes that
# a logistic regression and an MLP trained apart from it recognised as their classes 6 to 8
# times in 10 over 5 seeds; decay 1.5 without L1, 8 to 10 (`benchmarks/class_visualization.py`).
CLASS_DECAY = 1.5
# Channel visualisations start from noise rather than flat grey (each parameterisation's scale;
# image standard deviations of 0.35 and 0.2). From grey, a channel after a ReLU that is
# inactive everywhere gets no gradient and stays grey: 6 of the first 16 channels of the
# Fashion-MNIST CNN's max_pool2d_0 did; from this noise, none (fourier) or 1 (pixel).
CHANNEL_NOISE = {"fourier": 3.0, "pixel": 1.0}

# The prompt whose next token attribution.png explains, for a model trained on python-stdlib.
TOKEN_PROMPT = "import os\n\n\ndef read(path):\n    with open(path) as file:\n        return fi"


def write_visualizations(model, params, dataset, out: str | os.PathLike, *,
                         classes: Sequence[int] | None = None, layer: str | None = None,
                         channels: Sequence[int] | None = None, steps: int = 512,
                         param: str = "fourier", seed: int = 0, regularize: bool = True,
                         transforms: bool = True, progress: bool = True) -> list[pathlib.Path]:
    """Class (or channel) visualisations as PNG and npz, and saliency maps of test images.

    Optimises one input per class of `dataset` (or per channel of `layer`) and writes into
    `out`: classes.png (or channels_<layer>.png) with each class's probability, visualizations.npz
    (images, targets, history) and saliency.png of the first ten test images.

    Args:
        model, params: a trained image classifier.
        dataset: a `difprog.data.Dataset` (its image shape, classes and test images).
        classes: classes to visualise (default: all); ignored when `layer` is given.
        layer, channels: a layer path and its channels to visualise (default: the first 8).
        steps, param, seed: optimisation steps, 'fourier' or 'pixel', the seed.
        regularize: a total-variation penalty (and L1 for channels); transforms: random jitter,
            crops, zooms. Classes are drawn with `fourier(decay=CLASS_DECAY)`, channels from
            noise (`CHANNEL_NOISE`).
        progress: a progress bar and compile lines on stderr.

    Returns:
        The paths written: the grid, visualizations.npz and saliency.png.
    """
    from difprog.files import write_npz

    arguments.one_of("viz.write_visualizations", "param", param, ("fourier", "pixel"))
    for name, value in (("regularize", regularize), ("transforms", transforms)):
        arguments.flag("viz.write_visualizations", name, value)
    objective, targets, labels, stem = _objective(dataset, classes, layer, channels, regularize)
    shape = (len(targets), *dataset.x_train.shape[1:])
    result = _optimize.visualize(
        model, params, objective, shape, steps=steps, seed=seed,
        parameterization=_parameterization(param, classes=layer is None),
        transforms=None if transforms else False, progress=progress)
    probabilities = np.asarray(jax.nn.softmax(model.apply(params, result.images)))
    if layer is None:
        labels = [f"{label}\np={probabilities[i, c]:.2f}" for i, (label, c)
                  in enumerate(zip(labels, targets))]
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    grid = _render.save_grid(result.images, out / f"{stem}.png", labels=labels,
                             title=f"{result.objective}, {steps} steps, seed {seed}")
    npz = write_npz(out / "visualizations.npz", images=result.images,
                    targets=np.asarray(targets), history=result.history)
    examples = dataset.x_test[:10]
    maps = _saliency.saliency(model, params, examples, dataset.y_test[:10])
    saliency = _render.save_saliency(examples, maps, out / "saliency.png",
                                     labels=[_named(dataset, y) for y in dataset.y_test[:10]])
    return [grid, npz, saliency]


def _parameterization(param: str, classes: bool) -> _images.Parameterization:
    """Classes: a smooth spectrum (`CLASS_DECAY`) from a flat start. Channels: from noise
    (`CHANNEL_NOISE`), so that most ReLUs are active somewhere and pass a gradient."""
    if param == "pixel":
        return _images.pixel() if classes else _images.pixel(scale=CHANNEL_NOISE["pixel"])
    return (_images.fourier(decay=CLASS_DECAY) if classes else
            _images.fourier(scale=CHANNEL_NOISE["fourier"]))


def _named(dataset, label: int, number: str = "label ") -> str:
    """'Ankle boot' for a data set that names its classes, `number` and the label otherwise."""
    names = getattr(dataset, "classes", None)
    return names[int(label)] if names else f"{number}{int(label)}"


def _objective(dataset, classes, layer, channels, regularize: bool) -> tuple:
    """(the objective, its targets, their labels, the grid's file stem) of each class, or of
    each channel of `layer`; with `regularize`, a total-variation penalty, and for channels an
    L1 penalty too (see `CLASS_DECAY`)."""
    if layer is None:
        targets = list(range(dataset.num_classes)) if classes is None else list(classes)
        objective, labels, stem = _objectives.class_logit(targets), \
            [_named(dataset, c, "class ") for c in targets], "classes"
    else:
        targets = list(range(8)) if channels is None else list(channels)
        objective = _objectives.per_image(*(_objectives.channel(layer, c) for c in targets))
        labels, stem = [f"{layer}:{c}" for c in targets], f"channels_{layer.replace('/', '_')}"
    if regularize:
        objective = objective - 0.05 * _objectives.total_variation()
        if layer is not None:
            objective = objective - 0.05 * _objectives.l1()
    return objective, targets, labels, stem


def write_attributions(model, params, dataset, out: str | os.PathLike, *,
                       methods: Sequence[str] | None = None, count: int = 8, seed: int = 0,
                       steps: int = 64, samples: int = 32, noise: float = 0.15,
                       layer: str | None = None, window: int = 2, stride: int = 1,
                       sanity: bool = True, note: str = "") -> tuple[list[pathlib.Path], str]:
    """Attribution maps of the first `count` test images, each explained for its label, and
    their sanity checks.

    Writes into `out` attributions.png (one row per image, one column per method) and
    attributions.npz (images, labels, one map per method); with `sanity`, the completeness of
    integrated gradients, the cascading model randomisation (everywhere and on the foreground)
    and the faithfulness of each method (`viz.faithfulness`: deletion and insertion areas,
    also under each column of attributions.png, and normalised infidelity) as sanity.json and
    sanity.txt, and the mean deletion and insertion curves as faithfulness.png.

    Args:
        model, params, dataset: a trained image classifier and its `difprog.data.Dataset`.
        methods: from `viz.METHODS` (default: all the model allows: grad_cam needs a layer of
            feature maps).
        count: test images explained; seed: SmoothGrad's noise and the re-initialised weights.
        steps, samples, noise: integrated gradients' path points, SmoothGrad's noisy copies
            and noise (a fraction of each image's value range).
        layer: Grad-CAM's layer (default: the last with feature maps).
        window, stride: occlusion's square window and stride, in pixels.
        note: appended to the figure's title.

    Returns:
        (the paths written, the sanity checks' tables as text, '' without `sanity`).
    """
    from difprog.files import atomic, write_bytes, write_json, write_npz

    count = arguments.positive_int("viz.write_attributions", "count", count)
    sanity = arguments.flag("viz.write_attributions", "sanity", sanity)
    x, y = dataset.x_test[:count], dataset.y_test[:count]
    methods, settings = _attribution_settings(model, params, x, methods, dict(
        steps=steps, samples=samples, noise=noise, layer=layer, window=window, stride=stride))
    key = jax.random.key(seed)
    maps = _attribution_grid.attributions(model, params, x, y, methods, key=key, **settings)
    empty = [_attribution_grid.empty_map_note(model, params, x, y, method, count,
                                              settings["layer"])
             for method, count in _attribution_grid.empty_maps(maps).items()]
    for line in empty:
        log(line)
    predicted = np.asarray(jax.numpy.argmax(model.apply(params, x), -1))
    described = {"integrated_gradients": f"integrated gradients {steps} steps",
                 "smoothgrad": f"SmoothGrad {samples} samples (noise {noise}, seed {seed})",
                 "grad_cam": f"Grad-CAM at {settings['layer']}",
                 "occlusion": f"occlusion {window}x{window} stride {settings['stride']}"}
    title = "; ".join(["attribution of each label's score",
                       *(described[m] for m in methods if m in described)]) + note
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    faithful = (_faithfulness.faithfulness(model, params, x, y, maps, jax.random.fold_in(key, 2))
                if sanity else None)
    notes = {m: "del {:.2f} ins {:.2f}".format(*faithful.areas(m)) for m in methods} \
        if faithful else None
    written = [_attribution_grid.save_attributions(
                   x, maps, out / "attributions.png", title=title, notes=notes,
                   labels=[f"{_named(dataset, a)}\npredicted {_named(dataset, b, '')}"
                           for a, b in zip(y, predicted)]),
               write_npz(out / "attributions.npz", images=x, labels=y, **maps)]
    if not sanity:
        return written, ""
    written.append(_save_faithfulness(faithful, out / "faithfulness.png", len(x)))
    checks = {**_sanity_checks(model, params, x, y, key, methods, settings),
              "faithfulness": faithful}
    tables = "\n\n".join([*empty, *(str(check) for check in checks.values())]) + "\n"
    written.append(write_json(out / "sanity.json", {
        **{name: check.to_json() for name, check in checks.items()}, "empty_maps": empty,
        "settings": {**settings, "seed": seed, "images": int(count), "note": note.strip(", ")}}))
    with atomic(out / "sanity.txt") as temporary:
        write_bytes(temporary, tables.encode())
    return [*written, out / "sanity.txt"], tables


def _save_faithfulness(faithful, path: pathlib.Path, count: int) -> pathlib.Path:
    """The mean deletion and insertion curves of every method, side by side."""
    fractions = next(iter(faithful.curves.values())).fractions
    panels = {kind: {f"{m} ({faithful.areas(m)[i]:.3f})":
                     getattr(faithful.curves[m], kind).mean(0) for m in faithful.methods}
              for i, kind in enumerate(("deletion", "insertion"))}
    return _render.save_curve_panels(
        fractions, panels, path, xlabel="fraction of the positions deleted / inserted",
        ylabel=f"label's probability, mean of {count} images", ylim=(0, 1),
        title="deletion (lower is better) and insertion (higher is better), areas in brackets "
              "(Petsiuk et al. 2018)")


def _attribution_settings(model, params, x, methods, settings: dict) -> tuple[list, dict]:
    """The methods (default: all the model allows), Grad-CAM's layer (default: the last with
    feature maps), and occlusion's window and stride checked against the images."""
    if methods is None:
        spatial = _has_feature_maps(model, params, x)
        methods = [m for m in _attribution_grid.METHODS
                   if m != "grad_cam" or spatial or settings["layer"] is not None]
    if settings["layer"] is None and "grad_cam" in methods:
        settings["layer"] = _attribution_grid.last_spatial_layer(model, params, x)
    window, stride = settings["window"], settings["stride"]
    if "occlusion" in methods and window > min(x.shape[1:3]):
        raise ArgumentError(f"--window {window}: the images are {x.shape[1]}x{x.shape[2]} "
                            f"pixels; choose a window at most that")
    if "occlusion" in methods and stride > window:
        raise ArgumentError(f"--stride {stride}: larger than --window {window}, occlusion would "
                            f"leave pixels between windows unexplained; choose at most {window}")
    return list(methods), settings


def _sanity_checks(model, params, x, y, key, methods, settings) -> dict:
    """Completeness of integrated gradients and the randomisation test (all positions, and the
    foreground)."""
    everywhere, foreground = _sanity.randomizations(
        model, params, x, y, jax.random.fold_in(key, 1), methods=methods, **settings)
    return {"completeness": _sanity.completeness(model, params, x, y),
            "randomization": everywhere, "randomization_foreground": foreground}


def _has_feature_maps(model, params, x) -> bool:
    return any(len(out.shape) == 4
               for out in _attribution.layer_outputs(model, params, x).values())


def write_token_attribution(run: str | os.PathLike, corpus) -> pathlib.Path:
    """attribution.png in the run directory `run` of a language model: gradient x input of
    the trained model's next token after a prompt (`TOKEN_PROMPT`, a fixed piece of Python,
    for the python-stdlib corpus, else the first 64 tokens of `corpus`'s validation text),
    as `difprog train --model gpt` writes it. Returns the path written."""
    from difprog import lm

    run = pathlib.Path(run)
    trained = lm.load_lm(run)
    ids = (trained.codec.encode(TOKEN_PROMPT) if corpus.name == "python-stdlib"
           else corpus.validation[:64])[-trained.context:]
    result = _tokens.token_attribution(trained.model, trained.params, ids)
    return _tokens.save_token_attribution(trained.codec, ids, result, run / "attribution.png")
