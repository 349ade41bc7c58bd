"""The samplers by name, free of torch, so that configs and the command line check a ``sampler`` value
(and explain the choices in ``--help``) before torch is imported."""

from __future__ import annotations

# Bidirectional: the whole clip at once, with CFG (s2dit.diffusion.sampling.sample). euler and unipc
# integrate the probability-flow ODE; ancestral draws fresh noise at every step (DDPM's posterior).
BIDIRECTIONAL = ("unipc", "euler", "ancestral")
STREAM = "stream"  # chunk by chunk with a model's stream settings (s2dit.diffusion.streaming): S2DiT only
ALL = (*BIDIRECTIONAL, STREAM)


def listed(names: tuple[str, ...], last: str = "or") -> str:
    """``("a", "b", "c")`` -> ``"a, b or c"``: the choices in an error or a help text."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {last} {names[-1]}"
