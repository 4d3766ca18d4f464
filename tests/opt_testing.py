"""Shared helpers for the OPT tests: tiny random transformers models and their optiml params."""

from __future__ import annotations

import numpy as np
import torch
import transformers

from optiml.models import convert, opt

# Tiny configs: pre-LN, and the 350m variant (post-LN, word_embed_proj_dim != hidden_size).
PRE_LN = opt.OPTConfig(
    vocab_size=96, hidden_size=32, num_layers=2, num_heads=4, ffn_dim=64, max_positions=64,
    dropout=0.0, dtype="float32",
)  # fmt: skip
POST_LN = PRE_LN.replace(word_embed_proj_dim=16, do_layer_norm_before=False, num_layers=3)
CONFIGS = {"pre_ln": PRE_LN, "post_ln_350m": POST_LN}
REAL_VOCAB = PRE_LN.replace(vocab_size=50272)  # for text: OPT's tokenizer


def hf_model(config: opt.OPTConfig, seed: int = 0) -> transformers.OPTForCausalLM:
    """A random OPTForCausalLM (eager attention, dropout off) with every parameter perturbed,
    so biases and LayerNorm affines are not at their trivial init."""
    torch.manual_seed(seed)
    hf_config = transformers.OPTConfig(
        **{**convert.hf_config_dict(config), "dropout": 0.0, "attention_dropout": 0.0}
    )
    hf_config._attn_implementation = "eager"
    model = transformers.OPTForCausalLM(hf_config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = 0.2 * torch.randn_like(p)
            p.copy_(1.0 + noise if "layer_norm.weight" in name else noise)
    return model


def hf_param_count(config: opt.OPTConfig) -> int:
    """transformers' OPTForCausalLM parameter count for `config`, built on torch's meta device
    (shapes only, so 175b costs no memory); the tied lm_head is counted once."""
    hf_config = transformers.OPTConfig(**convert.hf_config_dict(config))
    with torch.device("meta"):
        model = transformers.OPTForCausalLM(hf_config)
    return sum(p.numel() for p in model.parameters())


def params_of(model: transformers.OPTForCausalLM, config: opt.OPTConfig) -> dict:
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    return convert.hf_to_params(state.__getitem__, config)


def hf_logits(model: transformers.OPTForCausalLM, tokens: np.ndarray, mask=None) -> np.ndarray:
    with torch.no_grad():
        ids = torch.tensor(np.asarray(tokens), dtype=torch.long)
        attn = None if mask is None else torch.tensor(np.asarray(mask), dtype=torch.long)
        return model(input_ids=ids, attention_mask=attn).logits.numpy()


def save_text_model(folder, gpt2_bpe, config: opt.OPTConfig = REAL_VOCAB, seed: int = 3):
    """A tiny random OPT with OPT's vocabulary saved as an HF folder with its tokenizer files
    (from `gpt2_bpe`, the data dir's GPT-2 files); returns the folder."""
    from optiml.models.tokenizer import OPTTokenizer

    hf_model(config, seed=seed).save_pretrained(folder)
    OPTTokenizer.from_folder(gpt2_bpe).save_hf(folder)
    return folder
