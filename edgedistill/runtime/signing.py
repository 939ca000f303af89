"""Ed25519 signatures of bundle ids (optional; needs the ``cryptography`` package).

A bundle's id is the sha256 of its manifest, and the manifest holds the sha256 of every other file, so
signing the id signs the whole bundle. The signature lives in ``signature.json`` beside the manifest:
``{"algorithm": "ed25519", "bundle_id": ..., "signature": hex, "public_key": hex}``. The public key in the
file is informational only: verification always uses the key the app brings (``public_key``), so a bundle
re-signed with another key is refused.

Keys are PEM files: a PKCS#8 private key (written 0600) and its SubjectPublicKeyInfo public key.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import ModelError
from .format import SIGNATURE, BundleFiles

ALGORITHM = "ed25519"


def _crypto():
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ModuleNotFoundError:
        raise ModelError("bundle signatures need the Python package 'cryptography'; "
                         "pip install 'edgedistill[sign]'") from None
    return serialization, ed25519


def generate_keypair(private_path: str | Path) -> tuple[Path, Path]:
    """Write a new Ed25519 private key to ``private_path`` (0600) and its public key to ``private_path.pub``."""
    from ..fileutil import write_bytes_atomic

    serialization, ed25519 = _crypto()
    private_path = Path(private_path)
    if private_path.exists():
        raise ModelError(f"{private_path}: already exists; refusing to overwrite a key")
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    write_bytes_atomic(private_path, pem)
    os.chmod(private_path, 0o600)
    public_path = private_path.with_name(private_path.name + ".pub")
    write_bytes_atomic(public_path, pub)
    return private_path, public_path


def load_key(path: str | Path, private: bool):
    serialization, ed25519 = _crypto()
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ModelError(f"{path}: cannot read the key ({e.strerror})") from None
    try:
        key = (serialization.load_pem_private_key(data, password=None) if private
               else serialization.load_pem_public_key(data))
    except (ValueError, TypeError) as e:
        kind = "private" if private else "public"
        raise ModelError(f"{path}: not a PEM {kind} key ({' '.join(str(e).split())[:120]})") from None
    want = ed25519.Ed25519PrivateKey if private else ed25519.Ed25519PublicKey
    if not isinstance(key, want):
        raise ModelError(f"{path}: not an Ed25519 key (bundles are signed with Ed25519)")
    return key


def _raw_public(key) -> str:
    serialization, _ = _crypto()
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def sign_bundle(folder: str | Path, private_key: str | Path) -> str:
    """Sign a bundle folder (verified first) with ``private_key``; writes ``signature.json``, returns the id."""
    from ..fileutil import write_text_atomic
    from .format import verify_files

    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"{folder}: sign the bundle folder (then zip it); a .zip cannot be changed in place")
    key = load_key(private_key, private=True)
    files = BundleFiles(folder)
    try:
        verify_files(files)
        bundle_id = files.id
    finally:
        files.close()
    record = {"algorithm": ALGORITHM, "bundle_id": bundle_id, "signature": key.sign(bundle_id.encode()).hex(),
              "public_key": _raw_public(key.public_key())}
    write_text_atomic(folder / SIGNATURE, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return bundle_id


def verify_signature(files: BundleFiles, public_key: str | Path) -> None:
    """Refuse unless ``signature.json`` signs this bundle's id with ``public_key``."""
    key = load_key(public_key, private=False)
    from cryptography.exceptions import InvalidSignature

    if not files.exists(SIGNATURE):
        raise ModelError(f"{files.path}: the bundle is not signed (no {SIGNATURE}), but a public key was given")
    try:
        record = json.loads(files.read(SIGNATURE))
        sig = bytes.fromhex(record["signature"])
        signed_id = record["bundle_id"]
    except (ValueError, KeyError, TypeError):
        raise ModelError(f"{files.path}/{SIGNATURE}: unreadable signature record") from None
    if record.get("algorithm") != ALGORITHM:
        raise ModelError(f"{files.path}/{SIGNATURE}: algorithm {record.get('algorithm')!r} is not {ALGORITHM!r}")
    if signed_id != files.id:
        raise ModelError(f"{files.path}: the signature is for bundle {signed_id}, not this bundle ({files.id}); "
                         "the manifest changed after signing")
    try:
        key.verify(sig, signed_id.encode())
    except InvalidSignature:
        raise ModelError(f"{files.path}: bad signature: not signed by the key in {public_key}") from None
