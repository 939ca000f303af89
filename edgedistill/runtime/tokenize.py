"""The bundle's tokenizer (``tokenizer.json``, Hugging Face ``tokenizers``),
configured from the manifest to produce exactly the ids the exporter saw."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ModelError


class BundleTokenizer:
    """Pads to the longest text of a batch; truncates to ``max_length`` unless told not to.

    Two immutable ``tokenizers`` objects (with and without truncation) are
    built once, so concurrent calls never reconfigure shared state.
    """

    def __init__(self, tokenizer_json: str, spec: dict, max_length: int, input_names: Sequence[str]):
        from tokenizers import Tokenizer

        self.max_length = int(max_length)
        self.input_names = list(input_names)
        unknown = [n for n in self.input_names if n not in ("input_ids", "attention_mask", "token_type_ids")]
        if unknown:
            raise ModelError(f"model input {unknown[0]!r} is not one the tokenizer produces")
        pad_token = spec.get("pad_token") or "[PAD]"
        pad_id = spec.get("pad_id")
        try:
            self._trunc = Tokenizer.from_str(tokenizer_json)
            self._full = Tokenizer.from_str(tokenizer_json)
        except Exception as e:  # tokenizers raises plain Exception for malformed JSON
            raise ModelError(f"the bundle's tokenizer cannot be loaded ({' '.join(str(e).split())[:200]})") from None
        if pad_id is None:
            pad_id = self._trunc.token_to_id(pad_token)
        if pad_id is None:
            raise ModelError(f"the bundle's tokenizer has no padding token {pad_token!r}")
        side = "left" if spec.get("padding_side") == "left" else "right"
        for t in (self._trunc, self._full):
            t.enable_padding(pad_id=int(pad_id), pad_token=pad_token, pad_type_id=int(spec.get("pad_type_id", 0)),
                             direction=side)
            t.no_truncation()
        self._trunc.enable_truncation(self.max_length, strategy="longest_first",
                                      direction="left" if spec.get("truncation_side") == "left" else "right")

    def __call__(self, texts: Sequence[str], truncate: bool = True) -> dict[str, np.ndarray]:
        texts = check_texts(texts)
        encs = (self._trunc if truncate else self._full).encode_batch(texts)
        if not truncate:
            for i, e in enumerate(encs):
                n = int(sum(e.attention_mask))
                if n > self.max_length:
                    raise ModelError(f"text {i} is {n} tokens long, over the bundle's max_length "
                                     f"{self.max_length}; shorten it or allow truncation")
        cols = {"input_ids": [e.ids for e in encs], "attention_mask": [e.attention_mask for e in encs],
                "token_type_ids": [e.type_ids for e in encs]}
        return {n: np.asarray(cols[n], dtype=np.int64) for n in self.input_names}


def check_texts(texts) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    texts = list(texts)
    bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
    if bad:
        raise ModelError(f"texts must be strings; item {bad[0]} is {type(texts[bad[0]]).__name__}")
    if not texts:
        raise ModelError("no texts given")
    return texts
