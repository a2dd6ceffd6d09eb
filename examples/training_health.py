"""The lectures' training pathologies on the digits, each watched by `difprog.monitor`: a healthy
CNN, ten sigmoid layers (vanishing gradients), a learning rate 30 times too large (the
update/weight ratio), ReLUs behind biases of -5 (dead from the start), and a
log of a negative activation (the first non-finite gate). Prints each run's diagnoses and writes
its health.json, health.png and health.html into DIR/<run>/ (default: ./training-health), after
EPOCHS epochs each (default 5).

    python examples/training_health.py [DIR [EPOCHS]]
"""

from __future__ import annotations

import pathlib
import sys

import jax

from difprog import data, gates, layers, models
from difprog.errors import NonFiniteLossError
from difprog.train import TrainConfig, fit


def runs(epochs: int):
    minus_five = jax.nn.initializers.constant(-5.0)
    sigmoids = [part for _ in range(10) for part in (layers.Dense(32), layers.Sigmoid())]
    return {
        "healthy": (models.cnn(), TrainConfig(epochs=epochs)),
        "sigmoid-stack": (layers.serial(layers.Flatten(), *sigmoids, layers.Dense(10)),
                          TrainConfig(epochs=epochs)),
        "learning-rate-30x": (models.cnn(), TrainConfig(epochs=epochs, learning_rate=30 * 2e-3,
                                                        schedule="constant")),
        "dead-relus": (layers.serial(layers.Flatten(), layers.Dense(64, b_init=minus_five),
                                     layers.Relu(), layers.Dense(10)),
                       TrainConfig(epochs=epochs)),
        "log-of-negative": (layers.serial(layers.Flatten(), layers.Dense(16),
                                          layers.activation(gates.log)(), layers.Dense(10)),
                            TrainConfig(epochs=1)),
    }


def main(out: pathlib.Path, epochs: int = 5) -> None:
    digits = data.digits()
    for name, (model, config) in runs(epochs).items():
        print(f"== {name}")
        try:
            result = fit(model, digits, config, out=out / name, progress=False,
                         monitor_every=5)
            print(f"   test accuracy {result.test_accuracy:.2%} after {config.epochs} epochs")
            for diagnosis in result.health["diagnoses"] or [{"message": "no diagnosis"}]:
                print(f"   - {diagnosis['message']}")
        except NonFiniteLossError as error:
            print(f"   stopped: {error}")


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "training-health"),
         int(sys.argv[2]) if len(sys.argv) > 2 else 5)
