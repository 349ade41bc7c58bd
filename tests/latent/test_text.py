import shutil

import pytest
import torch

from s2dit.errors import S2DitError
from s2dit.latent.text import TextEmbeddingCache, TextEncoder, pad_tokens


@pytest.fixture(scope="module")
def minilm():
    return TextEncoder.minilm(max_length=32)


def test_minilm_token_states_and_masks(minilm):
    tokens, mask = minilm.encode(["a small red ball rises", "a big blue box", ""])
    assert minilm.dim == 384 and tokens.shape[0] == 3 and tokens.shape[2] == 384
    assert tokens.dtype == torch.float32 and mask.dtype == torch.bool
    assert mask.sum(1).tolist()[2] == 2  # the empty prompt is [CLS] [SEP]
    assert mask.sum(1)[0] > mask.sum(1)[1]
    assert (tokens[~mask] == 0).all()  # padding is zeroed
    alone, alone_mask = minilm.encode(["a big blue box"])
    n = int(alone_mask.sum())
    torch.testing.assert_close(tokens[1, :n], alone[0], rtol=1e-4, atol=1e-4)  # padding does not leak
    assert not torch.allclose(tokens[0, 1], tokens[1, 1])
    again, _ = minilm.encode(["a small red ball rises", "a big blue box", ""])
    assert torch.equal(again, tokens)  # deterministic
    long, long_mask = minilm.encode(["word " * 100])
    assert long.shape[1] == 32 and long_mask.all()  # truncated at max_length


def test_a_t5_encoder_from_a_local_folder(minilm, tmp_path):
    """A T5-style encoder saved with save_pretrained loads offline and masks its padding."""
    from transformers import T5Config, T5EncoderModel

    tokenizer_dir = minilm.tokenizer.name_or_path
    config = T5Config(
        vocab_size=minilm.tokenizer.vocab_size,
        d_model=16,
        d_ff=32,
        d_kv=8,
        num_heads=2,
        num_layers=1,
        pad_token_id=0,
    )
    T5EncoderModel(config).save_pretrained(tmp_path)
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(f"{tokenizer_dir}/{f}", tmp_path / f)
    encoder = TextEncoder.from_folder(tmp_path, max_length=16)
    tokens, mask = encoder.encode(["a red ball", "a green triangle falls down"])
    assert encoder.dim == 16 and tokens.shape[2] == 16 and (tokens[~mask] == 0).all()
    assert encoder.name == tmp_path.name


def test_missing_or_incomplete_folders_are_clear_errors(tmp_path):
    with pytest.raises(S2DitError, match=r"needs config\.json, weights"):
        TextEncoder.from_folder(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text('{"model_type": "bert"}')
    (tmp_path / "vocab.txt").write_text("[PAD]\n")
    with pytest.raises(S2DitError, match="cannot load the text encoder"):
        TextEncoder.from_folder(tmp_path)


def test_cache_encodes_each_prompt_once_and_trims(minilm, tmp_path):
    calls = []
    original = minilm.encode

    def counting(prompts):
        calls.append(list(prompts))
        return original(prompts)

    minilm.encode = counting
    try:
        cache = TextEmbeddingCache(tmp_path, minilm)
        first = cache.encode(["a red ball", "a big blue box falls", "a red ball"])
        second = cache.encode(["a big blue box falls", "a red ball"])
    finally:
        del minilm.encode
    assert calls == [["a red ball", "a big blue box falls"]]  # duplicates and cached prompts not re-encoded
    assert torch.equal(
        second[0][1, : int(second[1][1].sum())], first[0][0, : int(first[1][0].sum())]
    )  # a hit
    direct, direct_mask = original(["a big blue box falls"])
    torch.testing.assert_close(second[0][0, : int(second[1][0].sum())], direct[0, : int(direct_mask.sum())])
    files = list(tmp_path.rglob("*.safetensors"))
    assert len(files) == 2 and not list(tmp_path.rglob(".tmp-*"))
    assert all(p.parent.parent.name == "minilm-l6-v2-32" for p in files)


def test_pad_tokens():
    tokens, mask = pad_tokens([torch.ones(2, 3), torch.ones(4, 3)])
    assert tokens.shape == (2, 4, 3) and mask.sum(1).tolist() == [2, 4] and tokens[0, 2:].abs().sum() == 0
