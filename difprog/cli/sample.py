"""Loads a checkpoint written by difprog train --model gpt and prints the prompt followed by
generated tokens, each drawn from the model's next-token distribution over the last --context
tokens."""

from __future__ import annotations

import argparse

from difprog.cli import options

__all__ = ["HELP", "arguments", "run"]

HELP = "generate text with a trained language model"


def arguments(parser: options.Parser) -> None:
    """The options of difprog sample."""
    options.add_checkpoint(parser)
    parser.add_argument("--prompt", required=True, help="the text to continue, such as 'def '")
    parser.add_argument("--length", type=options.integer(1, 100_000), default=200,
                        help="tokens to generate")
    parser.add_argument("--temperature", type=options.number(positive=False), default=1.0,
                        help="divides the logits: lower is more conservative (and loops "
                             "sooner); 0 always takes the most likely token")
    parser.add_argument("--top-k", type=options.positive, default=None,
                        help="draw only from the k most likely tokens (default: all)")
    parser.add_argument("--top-p", type=options.share, default=None,
                        help="then only from the fewest most likely tokens whose probability "
                             "(at --temperature) sums to at least p (default: all)")
    options.add_seed(parser, "seed of the draws")


def run(args: argparse.Namespace) -> int:
    """difprog sample: prints the prompt and its continuation."""
    from difprog import lm

    print(lm.sample(args.checkpoint, args.prompt, length=args.length,
                    temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                    seed=args.seed))
    return 0
