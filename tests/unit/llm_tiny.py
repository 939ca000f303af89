"""Tiny random Llama causal LMs and a word-level tokenizer for the LLM unit tests."""

from __future__ import annotations

from pathlib import Path

WORDS = ("the a cat dog sat ran on in mat park big small red blue and then it was is saw "
         "bird tree house car sun moon day night happy sad quick slow").split()
SPECIAL = ["<pad>", "<unk>", "<s>", "</s>"]


def tiny_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIAL + WORDS)}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>")


def tiny_llama(layers: int = 4, hidden: int = 32, ffn: int = 64, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(SPECIAL) + len(WORDS), hidden_size=hidden, intermediate_size=ffn,
                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                      max_position_embeddings=128, tie_word_embeddings=True, bos_token_id=2, eos_token_id=3,
                      pad_token_id=0)
    return LlamaForCausalLM(cfg).eval()


def save_tiny_llama(folder: Path, **kw) -> Path:
    """Saved and reloadable, as the export tests need (random models are checked after a reload)."""
    folder.mkdir(parents=True, exist_ok=True)
    tiny_llama(**kw).save_pretrained(folder, safe_serialization=True)
    tiny_tokenizer().save_pretrained(folder)
    return folder


def tiny_text(n_docs: int = 40, words: int = 60, seed: int = 0) -> list[str]:
    """Documents with learnable structure: a repeated cycle of words with a little noise."""
    import random

    rng = random.Random(seed)
    cycle = ["the", "big", "cat", "sat", "on", "the", "red", "mat", "and", "then", "it", "ran"]
    docs = []
    for _ in range(n_docs):
        start = rng.randrange(len(cycle))
        toks = [cycle[(start + i) % len(cycle)] if rng.random() > 0.1 else rng.choice(WORDS) for i in range(words)]
        docs.append(" ".join(toks))
    return docs


def trained_tiny_llama(folder: Path, layers: int = 2, steps: int = 60) -> Path:
    """A tiny Llama fitted to :func:`tiny_text` for a few steps, so its greedy text varies; saved for reloading."""
    import numpy as np
    import torch

    from edgedistill.llm.blocks import pack_blocks

    model, tok = tiny_llama(layers=layers), tiny_tokenizer()
    blocks = torch.from_numpy(pack_blocks(tiny_text(40, words=40), tok, 16).astype(np.int64))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for i in range(steps):
        ids = blocks[(i * 8) % (len(blocks) - 8):][:8]
        loss = model(input_ids=ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    folder.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder


def tiny_bpe_tokenizer(vocab_size: int = 400):
    """A byte-level BPE tokenizer (the kind output-vocabulary trimming works on) trained on :func:`tiny_text`
    plus a few words the text never uses, so that some merges build tokens a trimmed vocabulary drops."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator(tiny_text(40, words=40) + [" ".join(WORDS)] * 3 + ["elephant giraffe zebra"] * 20,
                           trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", unk_token="<unk>", bos_token="<s>",
                                   eos_token="</s>")


def save_tiny_bpe_llama(folder: Path, layers: int = 4, seed: int = 0) -> Path:
    """A tiny random Llama over :func:`tiny_bpe_tokenizer`, saved with it."""
    from transformers import LlamaConfig, LlamaForCausalLM
    import torch

    tok = tiny_bpe_tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      tie_word_embeddings=True, bos_token_id=2, eos_token_id=3, pad_token_id=0)
    folder.mkdir(parents=True, exist_ok=True)
    LlamaForCausalLM(cfg).eval().save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return folder
