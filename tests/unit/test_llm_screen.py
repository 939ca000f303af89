"""benchmarks/llm_screen.py: typed overrides and the table (the training itself is llm.py's kd_ce path)."""

import pytest
from conftest import load_benchmark


def test_overrides_are_typed_from_the_distill_spec_and_bad_keys_refused():
    b = load_benchmark("llm_screen", "bench_llm_screen")
    got = b.parse_sets(["hidden_weight=10", "hidden_loss=mse", "max_steps=5", "freeze_embeddings=false"])
    assert got == {"hidden_weight": 10.0, "hidden_loss": "mse", "max_steps": 5, "freeze_embeddings": False}
    assert isinstance(got["max_steps"], int) and isinstance(got["hidden_weight"], float)
    for bad in ("no_such_key=1", "hidden_weight"):
        with pytest.raises(SystemExit, match="KEY=VALUE"):
            b.parse_sets([bad])


def test_markdown_orders_by_test_ppl_and_shows_overrides():
    b = load_benchmark("llm_screen", "bench_llm_screen")
    row = {"name": "base", "overrides": {}, "steps": 100, "test_ppl": 124.5, "curve": [[0, 545.7], [100, 125.9]],
           "s_per_step": 9.04, "chat_nonempty_rate": 1.0, "host": "h", "command": "c1"}
    other = {**row, "name": "lr", "overrides": {"learning_rate": 0.001}, "test_ppl": 120.0, "command": "c2"}
    md = b.markdown([row, other])
    assert md.index("| lr |") < md.index("| base |")
    assert '{"learning_rate": 0.001}' in md and "| (none) |" in md and "0: 545.7, 100: 125.9" in md
    assert "**124.5**" in md and "`c1`; `c2`" in md
    assert "| (none) | 15 | 1024 | 100 |" in md  # rows from before --train-blocks / --layers: llm.py's 1,024 / 15
    assert "| 18 | 1024 | 100 |" in b.markdown([{**row, "layers": 18, "mlp_width": 1536}])
    assert "| 15 (MLP 1024) | 1024 | 100 |" in b.markdown([{**row, "layers": 15, "mlp_width": 1024}])
    shrunk = {**row, "layers": 11, "mlp_width": 1536, "importance": "ppl", "stages": [20, 11]}
    assert "| 11 (ppl importance, via 20) | 1024 | 100 |" in b.markdown([shrunk])
    assert "| 11 | 1024 | 100 |" in b.markdown([{**shrunk, "importance": "cosine", "stages": None}])
    small = b.markdown([row, {**other, "train_blocks": 256}])
    assert small.index("| base |") < small.index("| lr |") and "| 256 | 100 |" in small
