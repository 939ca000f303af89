"""Bundle identity (one sha256 over the manifest), pinning, Ed25519 signatures, and damaged zips."""

import json
import shutil
import zipfile
from pathlib import Path

import pytest
from conftest import make_tiny_bundle

from edgedistill.cli import main
from edgedistill.errors import ModelError
from edgedistill.export.bundle import write_zip
from edgedistill.fileutil import sha256_file
from edgedistill.runtime import Bundle, verify_bundle


@pytest.fixture(scope="module")
def bundle(tiny_teacher, tmp_path_factory):
    return make_tiny_bundle(tiny_teacher, tmp_path_factory.mktemp("id"))


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    from edgedistill.api import keygen

    d = tmp_path_factory.mktemp("keys")
    mine, other = keygen(d / "mine.pem"), keygen(d / "other.pem")
    return {"private": mine[0], "public": mine[1], "other_private": other[0], "other_public": other[1]}


def _copy(bundle: Path, tmp_path: Path, name="b") -> Path:
    return Path(shutil.copytree(bundle, tmp_path / name))


def test_the_id_is_the_sha256_of_the_stored_canonical_manifest(bundle):
    b = Bundle.open(bundle)
    assert b.id == sha256_file(bundle / "manifest.json") == verify_bundle(bundle)["bundle_id"]
    text = (bundle / "manifest.json").read_text()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=True) + "\n"
    assert Bundle.open(bundle, expect_id=b.id.upper()).id == b.id  # hex case does not matter


def test_an_edited_manifest_changes_the_id_and_a_pinned_app_refuses_it(bundle, tmp_path):
    pinned = Bundle.open(bundle).id
    t = _copy(bundle, tmp_path)
    m = json.loads((t / "manifest.json").read_text())
    m["max_length"] = 4  # the case: every file hash still matches
    (t / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")
    assert verify_bundle(t)["bundle_id"] != pinned
    with pytest.raises(ModelError, match=f"bundle id [0-9a-f]{{64}} is not the expected {pinned}"):
        Bundle.open(t, expect_id=pinned)
    with pytest.raises(ModelError, match="not a sha256"):
        Bundle.open(bundle, expect_id="abc")


def test_zip_and_folder_have_the_same_id(bundle, tmp_path):
    z = write_zip(_copy(bundle, tmp_path), tmp_path / "b.zip")
    assert Bundle.open(z).id == Bundle.open(bundle).id


def test_a_flipped_byte_inside_a_zip_is_the_runtimes_own_error(bundle, tmp_path):
    z = write_zip(_copy(bundle, tmp_path), tmp_path / "b.zip")
    data = bytearray(z.read_bytes())
    with zipfile.ZipFile(z) as f:
        info = f.getinfo("model.onnx")
    at = info.header_offset + 30 + len(info.filename) + info.compress_size // 2  # inside the deflated model
    data[at] ^= 0xFF
    z.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=r"b\.zip!model\.onnx: damaged zip member \(Bad CRC-32"):
        Bundle.open(z)


def test_truncated_zip_is_refused_clearly(bundle, tmp_path, capsys):
    z = write_zip(_copy(bundle, tmp_path), tmp_path / "b.zip")
    z.write_bytes(z.read_bytes()[: z.stat().st_size // 2])
    assert main(["bundle", "verify", str(z)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "b.zip" in err


def test_signed_bundle_verifies_only_with_its_key(bundle, keys, tmp_path, capsys):
    from edgedistill.api import sign_bundle

    t = _copy(bundle, tmp_path)
    bid = sign_bundle(t, keys["private"], zip_bundle=True)
    assert (t / "signature.json").is_file() and bid == Bundle.open(t).id
    for path in (t, t.with_suffix(".zip")):
        assert Bundle.open(path, public_key=keys["public"], expect_id=bid).id == bid
        with pytest.raises(ModelError, match="bad signature"):
            Bundle.open(path, public_key=keys["other_public"])
    assert main(["bundle", "verify", str(t), "--public-key", str(keys["public"])]) == 0
    assert f"id: {bid}  (signature ok)" in capsys.readouterr().out
    # a re-signature by another key does not pass for the right key
    sign_bundle(t, keys["other_private"])
    with pytest.raises(ModelError, match="bad signature"):
        verify_bundle(t, public_key=keys["public"])


def test_signature_of_an_edited_manifest_is_refused(bundle, keys, tmp_path):
    from edgedistill.api import sign_bundle

    t = _copy(bundle, tmp_path)
    sign_bundle(t, keys["private"])
    m = json.loads((t / "manifest.json").read_text())
    m["max_length"] = 4
    (t / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True) + "\n")
    with pytest.raises(ModelError, match="the manifest changed after signing"):
        verify_bundle(t, public_key=keys["public"])
    assert verify_bundle(t)  # without a key the bundle is internally consistent: pinning or signing catches it


def test_unsigned_bundle_with_a_key_and_bad_keys_are_refused(bundle, keys, tmp_path):
    from edgedistill.api import keygen, sign_bundle

    with pytest.raises(ModelError, match="not signed"):
        verify_bundle(bundle, public_key=keys["public"])
    with pytest.raises(ModelError, match="not a PEM private key"):
        sign_bundle(_copy(bundle, tmp_path), keys["public"])
    with pytest.raises(ModelError, match="already exists"):
        keygen(keys["private"])
    assert keys["private"].stat().st_mode & 0o077 == 0


def test_predict_and_verify_cli_pin_the_id(bundle, tmp_path, capsys):
    assert main(["bundle", "verify", str(bundle)]) == 0
    bid = capsys.readouterr().out.split("id: ")[1].split()[0]
    assert main(["predict", "--bundle", str(bundle), "--expect-id", bid, "--json", "the movie"]) == 0
    capsys.readouterr()
    assert main(["predict", "--bundle", str(bundle), "--expect-id", "0" * 64, "the movie"]) == 2
    assert "is not the expected" in capsys.readouterr().err


def test_runtime_threads_are_checked(bundle):
    with pytest.raises(ModelError, match="threads must be an integer 1..1024"):
        Bundle.open(bundle, threads=-3)


def test_a_zip_with_a_file_twice_is_refused(bundle, tmp_path):
    import warnings

    z = tmp_path / "dup.zip"
    with zipfile.ZipFile(z, "w") as f, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for p in sorted(bundle.iterdir()):
            f.write(p, p.name)
        f.writestr("manifest.json", "{}")
    with pytest.raises(ModelError, match="holds 'manifest.json' twice"):
        Bundle.open(z)
