"""benchmarks/llm_tail_head.py and llm_decode.py --tail-head: the tables (the head is tested in test_llm_tail_head)."""

from conftest import load_benchmark


def test_markdown_shows_each_tail_against_the_full_head():
    b = load_benchmark("llm_tail_head", "bench_llm_tail_head")
    res = {"teacher_ppl": 50.0, "test_blocks": 32, "command": "c", "measured": "d", "host": "h",
           "full_multiply_adds": 28_311_552, "hidden_blocks": 192, "hidden_positions": 49_152, "heal_steps": 400,
           "heal_batch": 512, "rows": [{"min_count": 3, "kept": 23821, "rank": 64, "multiply_adds": 15_400_000,
                                        "plain_ppl": 500.0, "weighted_ppl": 60.0, "healed_ppl": 55.0}]}
    md = b.markdown(res)
    assert "**50.00**" in md and "(full: 28.3M)" in md
    assert "| 3 | 23,821 | 64 | 15.4M | 500.00 (+900.0%) | 60.00 (+20.0%) | **55.00 (+10.0%)** |" in md


def test_decode_table_names_the_tail_head_student_and_its_ratio():
    mod = load_benchmark("llm_decode", "bench_llm_decode")
    cell = lambda tok_s: {"custom": tok_s, "prefill_tok_s": {"custom": 1.0}}  # noqa: E731
    res = {"cpu": "c", "cache_len": 512, "prompt_tokens": 64, "new_tokens": 48, "repeats": 1, "attentions": ["custom"],
           "loadavg_start": 0.0, "loadavg_end": 0.0, "models": {
               "teacher": {"threads": {"1": cell(100.0)}, "bytes": {"custom": 1}, "greedy_equal": False},
               "student-15L-tail10r128": {"threads": {"1": cell(210.0)}, "bytes": {"custom": 1}, "greedy_equal": False,
                                          "paired_vs_teacher": {"custom": {"1": None}},
                                          "tail_head": {"kept": 12399, "rank": 128, "min_count": 10,
                                                        "multiply_adds": 11_900_000,
                                                        "full_multiply_adds": 28_311_552}}}}
    res["student_vs_teacher_by_model"] = {m: mod.student_vs_teacher(res["models"], m) for m in res["models"]
                                          if m.startswith("student")}
    md = mod._markdown(res)
    assert "| student-15L-tail10r128 | custom | 1 | 2.10x | - | 2.10x |" in md
    assert "| student-15L-tail10r128 | 12,399 | 128 | 11.9M of 28.3M |" in md
