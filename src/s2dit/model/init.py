"""Initialise an S2DiT from a full-attention checkpoint wherever shapes match (docs/architecture.md §3, §7).

Two sources:

* a Wan-style diffusers ``WanTransformer3DModel`` state dict (the teacher family), whose keys and layouts
  are translated: fused Q/K/V, RoPE pairs (Wan rotates adjacent dimensions, we rotate halves), the output
  projection's channel order, and the modulation tables;
* another S2DiT state dict (e.g. an all-``F`` model), loaded key by key.

Student block ``i`` takes teacher block ``round(i * (n_teacher - 1) / (n_student - 1))``, so depths may
differ. Every kind takes what it shares with a full-attention block (Q/K/V, QK-norms, output projection,
cross-attention, FFN, modulation); LCHA's feature map, conv and gate start fresh, and so do the stage
entry/exit when the source is Wan (an S2DiT source passes its stage modules on by stage index). Q/K weights
are only taken from a Wan source whose head size equals the student's (RoPE pairs live inside heads).
:func:`init_from_full_attention` returns a report of what was loaded, what starts fresh and what
was skipped for a shape mismatch.
"""

from __future__ import annotations

import dataclasses

import torch

from s2dit.model.transformer import S2DiT


@dataclasses.dataclass
class InitReport:
    loaded: list[str]
    fresh: list[str]
    skipped: list[tuple[str, str]]  # (student key, why)

    def format(self) -> str:
        lines = [
            f"loaded {len(self.loaded)} tensors, {len(self.fresh)} start fresh, {len(self.skipped)} skipped"
        ]
        fresh = sorted({k.split(".", 2)[-1] if k.startswith("blocks.") else k for k in self.fresh})
        if fresh:
            lines.append("fresh: " + ", ".join(fresh))
        if self.skipped:
            shown = ", ".join(f"{k} ({why})" for k, why in self.skipped[:3])
            more = f" and {len(self.skipped) - 3} more" if len(self.skipped) > 3 else ""
            lines.append(f"skipped for their shapes: {shown}{more}")
        return "\n".join(lines)


def _rope_perm(head_dim: int, heads: int) -> torch.Tensor:
    """Row order that turns Wan's adjacent-pair layout into our rotate-half layout, per head."""
    one = torch.cat([torch.arange(0, head_dim, 2), torch.arange(1, head_dim, 2)])
    return torch.cat([one + h * head_dim for h in range(heads)])


def _teacher_index(i: int, n_student: int, n_teacher: int) -> int:
    return 0 if n_student == 1 else round(i * (n_teacher - 1) / (n_student - 1))


def wan_to_s2dit(
    wan: dict[str, torch.Tensor], model: S2DiT, wan_heads: int | None = None
) -> dict[str, torch.Tensor]:
    """Translate a diffusers Wan state dict into S2DiT key names and layouts (for every student block).

    ``wan_heads``: the teacher's ``num_attention_heads``. When its head size differs from the student's,
    the self-attention Q/K projections and norms are left out (they start fresh).
    """
    cfg = model.config
    C, perm = cfg.in_channels, _rope_perm(cfg.head_dim, cfg.heads)
    out = {
        "patch.proj.weight": wan["patch_embedding.weight"],
        "patch.proj.bias": wan["patch_embedding.bias"],
        "time.mlp.0.weight": wan["condition_embedder.time_embedder.linear_1.weight"],
        "time.mlp.0.bias": wan["condition_embedder.time_embedder.linear_1.bias"],
        "time.mlp.2.weight": wan["condition_embedder.time_embedder.linear_2.weight"],
        "time.mlp.2.bias": wan["condition_embedder.time_embedder.linear_2.bias"],
        "time.to_modulation.1.weight": wan["condition_embedder.time_proj.weight"],
        "time.to_modulation.1.bias": wan["condition_embedder.time_proj.bias"],
        "text.mlp.0.weight": wan["condition_embedder.text_embedder.linear_1.weight"],
        "text.mlp.0.bias": wan["condition_embedder.text_embedder.linear_1.bias"],
        "text.mlp.2.weight": wan["condition_embedder.text_embedder.linear_2.weight"],
        "text.mlp.2.bias": wan["condition_embedder.text_embedder.linear_2.bias"],
        "out_modulation": wan["scale_shift_table"].reshape(1, 1, 2, -1),
    }
    # Wan's output channels are ordered (sub-pixel s = 2i + j, channel c); ours (c, s).
    P = wan["proj_out.weight"].shape[0]
    if P == 4 * C:
        order = torch.arange(P).reshape(4, C).t().reshape(-1)
        out["proj_out.weight"], out["proj_out.bias"] = (
            wan["proj_out.weight"][order],
            wan["proj_out.bias"][order],
        )
    n_teacher = 1 + max(int(k.split(".")[1]) for k in wan if k.startswith("blocks."))
    for i in range(len(model.blocks)):
        t = f"blocks.{_teacher_index(i, len(model.blocks), n_teacher)}."
        s = f"blocks.{i}."
        q, k, v = (wan[f"{t}attn1.to_{x}.weight"] for x in "qkv")
        qb, kb, vb = (wan[f"{t}attn1.to_{x}.bias"] for x in "qkv")
        same_heads = wan_heads is None or q.shape[0] // wan_heads == cfg.head_dim
        if q.shape[0] == perm.numel() and same_heads:
            q, k, qb, kb = q[perm], k[perm], qb[perm], kb[perm]
            out[s + "mixer.norm_q.weight"] = wan[f"{t}attn1.norm_q.weight"][perm]
            out[s + "mixer.norm_k.weight"] = wan[f"{t}attn1.norm_k.weight"][perm]
            out[s + "mixer.qkv.weight"] = torch.cat([q, k, v])
            out[s + "mixer.qkv.bias"] = torch.cat([qb, kb, vb])
        out[s + "mixer.out.weight"] = wan[f"{t}attn1.to_out.0.weight"]
        out[s + "mixer.out.bias"] = wan[f"{t}attn1.to_out.0.bias"]
        for x, y in (("q", "q"), ("k", "k"), ("v", "v"), ("out", "out.0")):
            out[f"{s}cross.{x}.weight"] = wan[f"{t}attn2.to_{y}.weight"]
            out[f"{s}cross.{x}.bias"] = wan[f"{t}attn2.to_{y}.bias"]
        out[s + "cross.norm_q.weight"] = wan[f"{t}attn2.norm_q.weight"]
        out[s + "cross.norm_k.weight"] = wan[f"{t}attn2.norm_k.weight"]
        out[s + "norm_cross.weight"], out[s + "norm_cross.bias"] = (
            wan[f"{t}norm2.weight"],
            wan[f"{t}norm2.bias"],
        )
        out[s + "ffn.fc1.weight"], out[s + "ffn.fc1.bias"] = (
            wan[f"{t}ffn.net.0.proj.weight"],
            wan[f"{t}ffn.net.0.proj.bias"],
        )
        out[s + "ffn.fc2.weight"], out[s + "ffn.fc2.bias"] = (
            wan[f"{t}ffn.net.2.weight"],
            wan[f"{t}ffn.net.2.bias"],
        )
        out[s + "modulation"] = wan[f"{t}scale_shift_table"].reshape(1, 1, 6, -1)
    return out


def s2dit_to_s2dit(source: dict[str, torch.Tensor], model: S2DiT) -> dict[str, torch.Tensor]:
    """Another S2DiT's state dict, its blocks spread over this model's depth."""
    n_teacher = 1 + max((int(k.split(".")[1]) for k in source if k.startswith("blocks.")), default=-1)
    out = {k: v for k, v in source.items() if not k.startswith("blocks.")}
    for i in range(len(model.blocks)):
        prefix = f"blocks.{_teacher_index(i, len(model.blocks), n_teacher)}."
        out.update({f"blocks.{i}.{k[len(prefix) :]}": v for k, v in source.items() if k.startswith(prefix)})
    return out


@torch.no_grad()
def init_from_full_attention(
    model: S2DiT, state_dict: dict[str, torch.Tensor], wan_heads: int | None = None
) -> InitReport:
    """Copy every tensor of ``state_dict`` (Wan diffusers or S2DiT keys) whose shape matches ``model``.

    ``wan_heads``: a Wan source's ``num_attention_heads`` (its diffusers config), so that Q/K weights are
    only taken when the head size matches. Without it, equal widths are taken to mean equal heads.
    """
    is_wan = any(k.startswith("condition_embedder.") for k in state_dict)
    mapped = wan_to_s2dit(state_dict, model, wan_heads) if is_wan else s2dit_to_s2dit(state_dict, model)
    target = model.state_dict()
    report = InitReport([], [], [])
    for key, tensor in target.items():
        source = mapped.get(key)
        if source is None:
            report.fresh.append(key)
        elif source.shape != tensor.shape:
            report.skipped.append((key, f"shape {tuple(source.shape)} vs {tuple(tensor.shape)}"))
            report.fresh.append(key)
        else:
            tensor.copy_(source)
            report.loaded.append(key)
    return report
