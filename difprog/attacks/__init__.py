"""Adversarial attacks on any difprog model, or any function from inputs to logits: the fast
gradient sign method, projected gradient descent (L-inf and L2, random start, targeted),
CS231n's fooling image, the robustness curve and its report (`write_attack`, the command
line's `difprog attack`). Every gradient they climb runs through the
model's gates' hand-written backward rules; all are batched and jitted.

Example:
    >>> from difprog import attacks
    >>> adversarial = attacks.pgd(model, params, x, y, eps=0.1, steps=40)
    >>> attacks.robustness(model, params, x, y, [0, 0.05, 0.1, 0.2])
"""

from difprog.attacks._fooling import fooling_image
from difprog.attacks._gradient import NORMS, fgsm, perturb, pgd
from difprog.attacks._report import EPS, write_attack
from difprog.attacks._robustness import ATTACKS, robustness

__all__ = ["ATTACKS", "EPS", "NORMS", "fgsm", "fooling_image", "perturb", "pgd", "robustness",
           "write_attack"]
