"""Explain any function as a computational graph with its values and gradients at every node.

`explain(f, *args)` traces f, runs its forward pass and then its backward pass node by node
through each gate's own rules, and returns an `Explanation` with a table, a rendered graph and
the same computation as flat numpy source. `write_explanations` writes the explanations of
`difprog demo` (the lectures' sigmoid neuron, a trained model's loss per layer).
"""

from difprog.graph._explain import Explanation, explain
from difprog.graph._nodes import Node
from difprog.graph._render import MAX_DRAWN
from difprog.graph._writers import write_explanations

__all__ = ["MAX_DRAWN", "Explanation", "Node", "explain", "write_explanations"]
