"""Explain any function as a computational graph with its values and gradients at every node.

`explain(f, *args)` traces f, runs its forward pass and then its backward pass node by node
through each gate's own rules, and returns an `Explanation` with a table, a rendered graph and
the same computation as flat numpy source.
"""

from difprog.graph._explain import Explanation, explain
from difprog.graph._nodes import Node

__all__ = ["Explanation", "Node", "explain"]
