"""A tiny semantic-search app on top of an edgedistill bundle (no torch needed).

    pip install 'edgedistill[runtime]'
    python examples/app_python/app.py runs/quickstart/bundles/phone "a film that made me laugh"
"""

import sys

import numpy as np

from edgedistill.errors import EdgedistillError
from edgedistill.runtime import Bundle

DOCUMENTS = [
    "A gorgeous, witty, seductive movie.",
    "The plot is dull and the acting is worse.",
    "Battery life is great but the screen scratches easily.",
    "The funniest comedy I have seen in years.",
    "The Senate voted on Tuesday to confirm the nominee.",
]


def main(bundle_path: str, query: str) -> int:
    try:
        bundle = Bundle.open(bundle_path)  # verifies every file's sha256 first
    except EdgedistillError as e:
        print(f"cannot open the bundle: {e}", file=sys.stderr)
        return 2
    docs = bundle.embed(DOCUMENTS)  # [n, hidden], L2-normalised when the manifest says normalize
    q = bundle.embed([query])[0]
    scores = docs @ q
    for i in np.argsort(-scores):
        print(f"{scores[i]:+.3f}  {DOCUMENTS[i]}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: app.py BUNDLE_FOLDER_OR_ZIP QUERY")
    sys.exit(main(sys.argv[1], sys.argv[2]))
