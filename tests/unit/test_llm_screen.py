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
    # rows from before --train-blocks / --layers / --vocab-min-count: llm.py's 1,024 / 15 / full
    assert "| (none) | 15 | full | 1024 | 100 |" in md
    assert "| 18 | full | 1024 | 100 |" in b.markdown([{**row, "layers": 18, "mlp_width": 1536}])
    assert "| 15 (MLP 1024) | full | 1024 | 100 |" in b.markdown([{**row, "layers": 15, "mlp_width": 1024}])
    shrunk = {**row, "layers": 11, "mlp_width": 1536, "importance": "ppl", "stages": [20, 11]}
    assert "| 11 (ppl importance, via 20) | full | 1024 | 100 |" in b.markdown([shrunk])
    assert "| 11 | full | 1024 | 100 |" in b.markdown([{**shrunk, "importance": "cosine", "stages": None}])
    small = b.markdown([row, {**other, "train_blocks": 256}])
    assert small.index("| base |") < small.index("| lr |") and "| 256 | 100 |" in small


def test_markdown_shows_the_trimmed_vocabulary_and_both_ppls_of_an_after_arm():
    b = load_benchmark("llm_screen", "bench_llm_screen")
    row = {"name": "t", "overrides": {}, "steps": 200, "test_ppl": 105.4, "curve": [], "s_per_step": 5.0,
           "chat_nonempty_rate": 1.0, "host": "h", "command": "c"}
    after = {**row, "vocab": {"when": "after", "min_count": 3, "kept": 23821, "test_ppl_trimmed": 126.0}}
    before = {**row, "name": "b", "test_ppl": 110.2,
              "vocab": {"when": "before", "min_count": 3, "kept": 23821, "test_ppl_trimmed": 110.2}}
    md = b.markdown([after, before])
    assert "| after, min 3 (23,821 kept) |" in md and "**105.4** -> **126.0**" in md
    assert "| before, min 3 (23,821 kept) |" in md and "**110.2** |" in md and "-> **110.2**" not in md
