import json

import pytest
from llm_tiny import save_tiny_bpe_llama, save_tiny_llama, tiny_text, tiny_tokenizer

from edgedistill.cli import main
from edgedistill.errors import ModelError
from edgedistill.llm.recipe import load_llm_recipe
from edgedistill.llm.stage import check_shared_tokenizer
from edgedistill.llm.teacher import load_causal_lm


def _recipe(tmp_path, teacher, student: str = "", **distill):
    (tmp_path / "text.txt").write_text("\n\n".join(tiny_text(120, words=40)))
    d = {"mode": "kd", "loss": "forward_kl", "top_k": 4, "max_steps": 6, "batch_size": 4, "eval_every": 3,
         "learning_rate": 3e-3, "warmup_steps": 1, **distill}
    body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in d.items())
    path = tmp_path / "llm.toml"
    path.write_text(f'name = "tiny"\nkind = "llm"\n[teacher]\npath = "{teacher}"\n'
                    f'[data]\nsource = "txt"\npath = "text.txt"\nblock_size = 16\nval_blocks = 8\ntest_blocks = 8\n'
                    f'[student]\nnum_layers = 2\nimportance = "cosine"\ncalibration_blocks = 4\n{student}'
                    f"[distill]\n{body}\n")
    return path


def test_cli_llm_distill_end_to_end(tmp_path, capsys):
    teacher = save_tiny_llama(tmp_path / "teacher", layers=4)
    recipe = _recipe(tmp_path, teacher)
    assert main(["llm", "distill", str(recipe), "-o", str(tmp_path / "run")]) == 0
    folder = tmp_path / "run" / "student"
    report = json.loads((folder / "llm_distill.json").read_text())
    assert len(report["student"]["layers"]) == 2 and report["distill"]["steps"] == 6
    assert report["distill"]["tokens_per_s"] > 0 and report["teacher"]["test"]["ppl"] > 1
    model, tok = load_causal_lm(folder)
    assert model.config.num_hidden_layers == 2 and tok.eos_token == "</s>"


def test_trimmed_output_vocabulary_student_distills_exports_and_generates(tmp_path):
    """output_vocab = "trim": a smaller vocabulary in the student folder, its quality cost measured on the
    same held-out text, and a bundle whose greedy text equals the eager trimmed student's."""
    from edgedistill import api
    from edgedistill.llm import output_vocab
    from edgedistill.llm.generate import EagerLM, Sampling, generate_text

    teacher = save_tiny_bpe_llama(tmp_path / "teacher", layers=4)
    recipe = _recipe(tmp_path, teacher, student='output_vocab = "trim"\noutput_vocab_min_count = 2\n')
    assert main(["llm", "distill", str(recipe), "-o", str(tmp_path / "run")]) == 0
    folder = tmp_path / "run" / "student"
    rec = json.loads((folder / "llm_distill.json").read_text())["output_vocab"]
    full_tok = load_causal_lm(teacher)[1]
    model, tok = load_causal_lm(folder)
    assert rec["kept"] == model.config.vocab_size == len(tok) < rec["full_size"] == len(full_tok)
    assert 0 < rec["held_out_coverage"] <= 1 and rec["tokens_per_full_token"] >= 1
    assert rec["when"] == "after" and rec["test_ppl_full"] > 1 and rec["test_ppl_trimmed"] > 1
    sweep = {r["min_count"]: r for r in rec["sweep"]}  # the other choices, measured on the same text
    assert {1, 2, 3, 5, 10} <= set(sweep) and sweep[2]["test_ppl_trimmed"] == rec["test_ppl_trimmed"]
    assert sweep[1]["kept"] >= sweep[2]["kept"] >= sweep[10]["kept"]
    assert sweep[1]["tokens_per_full_token"] <= sweep[10]["tokens_per_full_token"]
    plan = output_vocab.read(folder)
    assert len(plan.new_to_old) == rec["kept"] and plan.min_count == 2
    text = "the elephant sat on the red mat"  # 'elephant' is not in the training text
    assert max(tok.encode(text)) < rec["kept"] and tok.decode(tok.encode(text)) == text
    bundle = api.llm_export(folder, tmp_path / "bundle", scheme="et-fp32", max_cache_len=32)
    eager = generate_text(EagerLM(model, 32), tok, "the big cat", Sampling(max_new_tokens=8))
    assert eager.strip()  # a comparison of real text
    assert api.generate(api.open_llm(bundle), "the big cat", max_tokens=8).strip() == eager.strip()


def test_vocabulary_trimmed_before_distillation(tmp_path):
    """output_vocab_when = "before": the student trains in the kept vocabulary (teacher targets over kept
    tokens), its cost is measured per full-vocabulary token of the same held-out text, and the folder is the
    same kind of trimmed checkpoint as after-training trimming gives."""
    from edgedistill.llm import output_vocab

    teacher = save_tiny_bpe_llama(tmp_path / "teacher", layers=4)
    recipe = _recipe(tmp_path, teacher, student='output_vocab = "trim"\noutput_vocab_min_count = 2\n'
                                                'output_vocab_when = "before"\n')
    # chat in the mix too: its prompts and the full teacher's answers are counted, then re-tokenised
    recipe.write_text(recipe.read_text().replace("test_blocks = 8\n", "test_blocks = 8\nchat_ratio = 0.25\n"
                                                 "chat_prompts = 8\nchat_eval_prompts = 4\nchat_answer_tokens = 6\n"))
    assert main(["llm", "distill", str(recipe), "-o", str(tmp_path / "run")]) == 0
    folder = tmp_path / "run" / "student"
    report = json.loads((folder / "llm_distill.json").read_text())
    rec = report["output_vocab"]
    model, tok = load_causal_lm(folder)
    full_tok = load_causal_lm(teacher)[1]
    assert rec["when"] == "before" and rec["kept"] == model.config.vocab_size == len(tok) < len(full_tok)
    assert rec["test_ppl_trimmed"] > 1 and rec["tokens_per_full_token"] >= 1
    assert rec["teacher_test_ppl_trimmed"] > 1 and rec["teacher_test_ppl_full"] > 1
    assert report["distill"]["steps"] == 6 and report["student"]["test_after"]["ppl"] > 1
    assert report["chat"]["train_prompts"] > 0 and report["chat"]["prompts"] > 0
    assert output_vocab.read(folder).new_to_old == sorted(output_vocab.read(folder).new_to_old)
    assert tok.eos_token == full_tok.eos_token and model.config.eos_token_id == tok.eos_token_id
    text = "the elephant sat on the red mat"
    assert max(tok.encode(text)) < rec["kept"] and tok.decode(tok.encode(text)) == text


def test_trimmed_teacher_targets_are_the_full_distribution_renormalised_over_kept_tokens(tmp_path):
    import torch

    from edgedistill.llm import output_vocab

    teacher, _ = load_causal_lm(save_tiny_bpe_llama(tmp_path / "teacher", layers=2))
    kept = list(range(0, teacher.config.vocab_size, 3))
    ids = torch.tensor([kept[1:9]])
    with torch.no_grad():
        full = torch.log_softmax(teacher(input_ids=ids).logits.float(), -1)[..., kept]
        where = {old: new for new, old in enumerate(kept)}
        trimmed = output_vocab.trim_causal_lm(teacher, kept)
        small = torch.log_softmax(trimmed(input_ids=torch.tensor([[where[i] for i in ids[0].tolist()]])).logits, -1)
    assert torch.allclose(torch.log_softmax(full, -1), small, atol=1e-5)
    assert not torch.allclose(full, small, atol=1e-3)  # renormalised: the dropped tokens' mass moved


@pytest.mark.parametrize("change,message", [
    ({"loss": "nope"}, "unknown token KD loss 'nope'"),
    ({"mode": "maybe"}, "key 'mode'"),
    ({"top_k": 0}, "key 'top_k': expected 1..1024"),
    ({"learning_rate": "fast"}, "key 'learning_rate': expected a number"),
])
def test_bad_llm_recipe_values_are_one_line_errors(tmp_path, capsys, change, message):
    recipe = _recipe(tmp_path, tmp_path / "missing", **change)
    assert main(["llm", "distill", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgedistill: error:") and message in err and "\n" not in err


@pytest.mark.parametrize("student,message", [
    ('output_vocab = "small"\n', "key 'output_vocab'"),
    ("output_vocab_min_count = 0\n", "key 'output_vocab_min_count': expected >= 1"),
    ("output_vocab_max_size = 10\n", "key 'output_vocab_max_size': expected >= 256"),
    ('output_vocab_when = "during"\n', "key 'output_vocab_when'"),
])
def test_bad_output_vocab_keys_are_one_line_errors(tmp_path, capsys, student, message):
    recipe = _recipe(tmp_path, tmp_path / "missing", student=student)
    assert main(["llm", "distill", str(recipe)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_missing_teacher_and_unknown_keys(tmp_path, capsys):
    recipe = _recipe(tmp_path, tmp_path / "missing")
    assert main(["llm", "distill", str(recipe), "-o", str(tmp_path / "run")]) == 2
    assert "expected a Hugging Face folder or a .gguf file" in capsys.readouterr().err
    recipe.write_text(recipe.read_text().replace("[student]", "[student]\nwidth = 3"))
    with pytest.raises(Exception, match="unknown key 'width'"):
        load_llm_recipe(recipe)


def test_tokenizer_mismatch_is_refused(tmp_path):
    from transformers import AutoTokenizer

    other = AutoTokenizer.from_pretrained(save_tiny_llama(tmp_path / "a"))
    check_shared_tokenizer(tiny_tokenizer(), other)  # same tokenizer, saved and reloaded
    other.add_tokens(["zebra"])
    with pytest.raises(ModelError, match="shared tokenizer"):
        check_shared_tokenizer(tiny_tokenizer(), other)
    check_shared_tokenizer(tiny_tokenizer(), tiny_tokenizer())


def _example_llm_recipes(*names: str):
    from pathlib import Path

    from edgedistill.llm.recipe import load_llm_recipe

    root = Path(__file__).resolve().parents[2] / "examples" / "llm"
    return [load_llm_recipe(root / f"{name}.toml") for name in names]


def test_the_gpu_recipe_is_the_cpu_recipe_on_over_100x_the_tokens():
    cpu, gpu = _example_llm_recipes("recipe", "gpu")

    def tokens(r):
        return r.distill.max_steps * r.distill.batch_size * r.data.block_size

    assert tokens(gpu) >= 100 * tokens(cpu)
    assert gpu.distill.device == "cuda" and gpu.distill.precision == "bf16"
    # the same model, losses, chat mix and held-out text: only the budget (and where it runs) differs
    assert gpu.teacher == cpu.teacher and gpu.student == cpu.student and gpu.export == cpu.export
    for key in ("mode", "loss", "top_k", "tail", "temperature", "ce_weight"):
        assert getattr(gpu.distill, key) == getattr(cpu.distill, key), key
    for key in ("source", "block_size", "val_blocks", "test_blocks", "chat_ratio", "chat_eval_prompts"):
        assert getattr(gpu.data, key) == getattr(cpu.data, key), key
    assert gpu.data.max_train_blocks is None  # all of Brown's train split


def test_the_long_cpu_recipe_is_the_cpu_recipe_on_all_of_brown_seen_once():
    from dataclasses import replace

    cpu, long = _example_llm_recipes("recipe", "long")
    assert long.teacher == cpu.teacher and long.student == cpu.student and long.export == cpu.export
    assert long.data == replace(cpu.data, max_train_blocks=None)
    budget = {"learning_rate": 1e-3, "max_steps": 1350, "eval_every": 100, "precision": "bf16"}
    assert long.distill == replace(cpu.distill, **budget)
    # 3 prose rows per step: every one of Brown's 4,087 train blocks at most once
    d = long.distill
    prose_rows = d.max_steps * (d.batch_size - max(1, round(long.data.chat_ratio * d.batch_size)))
    assert prose_rows <= 4087


def test_first_piece_targets_sum_each_dropped_token_onto_the_kept_token_it_starts_with(tmp_path):
    """The KD targets of a vocabulary trimmed before distillation: a normalised distribution over kept ids,
    where a dropped token's probability lands on its trimmed spelling's first piece."""
    import torch

    from edgedistill.llm import output_vocab
    from edgedistill.llm.trim_first import FirstPieceHead, first_pieces, targets_model
    from edgedistill.llm.trim_student import full_tokenizer_json, small_tokenizer

    teacher, tok = load_causal_lm(save_tiny_bpe_llama(tmp_path / "teacher", layers=2))
    full_json = full_tokenizer_json(tok)
    counts = output_vocab.count_ids([tok.encode(" ".join(tiny_text(40, words=20)))], len(tok))
    kept = output_vocab.choose_kept(full_json, counts, min_count=2)
    small = small_tokenizer(tok, output_vocab.trimmed_tokenizer_json(full_json, kept))
    rows = teacher.get_output_embeddings().weight.shape[0]
    pieces = first_pieces(full_json, small, kept, rows)
    dropped = [i for i in range(len(tok)) if i not in set(kept)]
    assert dropped and all(pieces[k] == n for n, k in enumerate(kept))
    word = tok.convert_ids_to_tokens(dropped[0])
    assert pieces[dropped[0]] == small.backend_tokenizer.model.tokenize(word)[0].id
    ids = torch.tensor([kept[1:7]])
    with torch.no_grad():
        full = torch.softmax(teacher(input_ids=ids).logits.float(), -1)[0]
        full_head = teacher.get_output_embeddings()
        head = FirstPieceHead(full_head.weight, full_head.bias, pieces, len(kept))
        trimmed = output_vocab.trim_causal_lm(teacher, kept)
        where = {old: new for new, old in enumerate(kept)}
        got = targets_model(trimmed, head)(input_ids=torch.tensor([[where[i] for i in ids[0].tolist()]])).logits[0]
    want = torch.zeros(full.shape[0], len(kept)).index_add_(-1, pieces, full)
    assert torch.allclose(torch.softmax(got, -1), want, atol=1e-6) and torch.allclose(want.sum(-1), torch.ones(6))
    assert trimmed.get_output_embeddings().weight.shape[0] == len(kept)  # the student's side keeps plain rows
    from edgedistill.llm.topk_cache import teacher_topk

    model, small_ids = targets_model(trimmed, head), torch.tensor([[where[i] for i in kept[1:9]]] * 3)
    one_v, one_i = teacher_topk(model, small_ids, k=4, chunk=10_000)
    v, i = teacher_topk(model, small_ids, k=4, chunk=5)  # chunked from the hidden states, as on a GPU
    assert torch.allclose(v.float(), one_v.float(), atol=2e-3) and torch.equal(i, one_i)
