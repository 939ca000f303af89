import pytest
import torch

from edgedistill.errors import ModelError, RecipeError
from edgedistill.models.loading import load_encoder
from edgedistill.models.student import build_student, ffn_importance, plan_student, save_student
from edgedistill.recipe import StudentSpec

TEXTS = ["the movie was great", "a dull and boring film", "this plot is really clumsy", "so charming and funny"]


@pytest.fixture(scope="module")
def teacher(tiny_teacher):
    return load_encoder(tiny_teacher)


def test_plan_evenly_spaced_keeps_last_layer(teacher):
    model, _ = teacher
    assert plan_student(StudentSpec(num_layers=2), model.config).layers == [0, 3]
    assert plan_student(StudentSpec(num_layers=1), model.config).layers == [3]
    assert plan_student(StudentSpec(), model.config).layers == [0, 3]
    assert plan_student(StudentSpec(layers=[1, 2]), model.config).layers == [1, 2]


@pytest.mark.parametrize("spec, match", [
    (StudentSpec(layers=[0, 9]), "layer 9 does not exist"),
    (StudentSpec(num_layers=9), "more than the teacher's 4 layers"),
    (StudentSpec(intermediate_size=999), "wider than the teacher's 64"),
])
def test_plan_errors(teacher, spec, match):
    with pytest.raises(RecipeError, match=match):
        plan_student(spec, teacher[0].config)


def test_full_student_reproduces_the_teacher(teacher):
    model, tok = teacher
    plan = plan_student(StudentSpec(layers=[0, 1, 2, 3]), model.config)
    student = build_student(model, tok, plan, TEXTS, 32, "importance").eval()
    feats = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(student(**feats).last_hidden_state, model(**feats).last_hidden_state, atol=1e-5)


def test_kept_layers_copy_teacher_weights_and_ffn_is_narrowed_by_importance(teacher):
    model, tok = teacher
    plan = plan_student(StudentSpec(layers=[1, 3], intermediate_size=16), model.config)
    student = build_student(model, tok, plan, TEXTS, 32, "importance")
    assert student.config.num_hidden_layers == 2 and student.config.intermediate_size == 16
    t_layer, s_layer = model.encoder.layer[3], student.encoder.layer[1]
    assert torch.equal(s_layer.attention.self.query.weight, t_layer.attention.self.query.weight)
    keep = torch.sort(torch.topk(ffn_importance(model, tok, TEXTS, [3], 32)[3], 16).indices).values
    assert torch.equal(s_layer.intermediate.dense.weight, t_layer.intermediate.dense.weight[keep])
    assert torch.equal(s_layer.output.dense.weight, t_layer.output.dense.weight[:, keep])
    first = build_student(model, tok, plan, TEXTS, 32, "first")
    assert torch.equal(first.encoder.layer[1].intermediate.dense.weight, t_layer.intermediate.dense.weight[:16])


def test_importance_beats_arbitrary_choice_on_output_error(teacher):
    model, tok = teacher
    plan = plan_student(StudentSpec(layers=[0, 1, 2, 3], intermediate_size=24), model.config)
    feats = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        ref = model(**feats).last_hidden_state
        errs = {sel: (build_student(model, tok, plan, TEXTS, 32, sel)(**feats).last_hidden_state - ref).pow(2).mean()
                for sel in ("importance", "first")}
    assert errs["importance"] < errs["first"]


def test_saved_student_is_a_plain_hf_folder(teacher, tiny_teacher, tmp_path):
    from transformers import AutoModel

    model, tok = teacher
    plan = plan_student(StudentSpec(layers=[3]), model.config)
    save_student(build_student(model, tok, plan, TEXTS, 32, "importance"), tok, tiny_teacher, tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert loaded.config.num_hidden_layers == 1
    assert (tmp_path / "model.safetensors").is_file() and (tmp_path / "tokenizer.json").is_file()


def test_pickle_weights_are_refused(tmp_path, tiny_teacher):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(tiny_teacher, folder)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(ModelError, match="only safetensors"):
        load_encoder(folder)


def test_corrupt_weights_are_a_model_error(tmp_path, tiny_teacher):
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(tiny_teacher, folder)
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelError, match="cannot load the model weights"):
        load_encoder(folder)
