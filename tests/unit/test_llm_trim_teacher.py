"""benchmarks/llm_trim_teacher.py: the table (the measures are trim_first's, tested in test_llm_pipeline)."""

from conftest import load_benchmark


def test_markdown_shows_each_min_count_against_the_untrimmed_teacher():
    b = load_benchmark("llm_trim_teacher", "bench_llm_trim_teacher")
    res = {"teacher_ppl": 50.0, "test_blocks": 32, "command": "c", "measured": "d", "host": "h",
           "rows": [{"min_count": 3, "kept": 23821, "coverage": 0.975, "tokens_per_full_token": 1.031,
                     "rows_ppl": 60.0, "first_piece_ppl": 55.0}]}
    md = b.markdown(res)
    assert "**50.00**" in md and "| 3 | 23,821 | 97.5% | 1.031 | 60.00 (+20%) | 55.00 (+10%) |" in md
