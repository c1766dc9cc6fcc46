#!/usr/bin/env bash
# The Pillow tests (RandAugment, training and evaluation preprocessing, image loading) on the other Pillow.
#
# pyproject allows pillow>=10,<14; .venv gets the newest that pip picks (13.x on a fresh machine). This stage
# tests the other major release in its own venv, .venv-pillow: 12.3.0 when .venv has 13, else 13.0.0, with numpy
# and pytest only. No Paddle: these test files, the package modules they import and tests/conftest.py load
# without it. Extra arguments go to pytest.
# Usage: scripts/pillow_check.sh [-x ...]     PILLOW=12.2.0 scripts/pillow_check.sh   (a chosen version)
set -euo pipefail
cd "$(dirname "$0")/.."
main_pillow=$(.venv/bin/python -c "import PIL; print(PIL.__version__.split('.')[0])" 2>/dev/null || echo 13)
default=13.0.0
[ "$main_pillow" = 13 ] && default=12.3.0
pillow="${PILLOW:-$default}"
venv=.venv-pillow
py="${PYTHON:-$(command -v python3.11 || command -v python3)}"
if [ ! -x "$venv/bin/python" ]; then
    "$py" -m venv "$venv"
fi
stamp="$venv/.installed-pillow-$pillow"
if [ ! -f "$stamp" ]; then
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "pillow==$pillow" "numpy>=1.24,<3" "pytest>=8,<10"
    touch "$stamp"
fi
# fails here rather than testing another version by mistake
"$venv/bin/python" -c "import PIL, sys; v = PIL.__version__; print('Pillow', v); sys.exit(v != '$pillow')"
if "$venv/bin/python" -c "import paddle" 2>/dev/null; then
    echo "$venv has Paddle; this check is meant to run without it" >&2
    exit 1
fi
# the repository's shunted/ (not installed: installing it would pull Paddle in)
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$venv/bin/python" -m pytest -q -p no:cacheprovider \
    tests/data/test_randaugment.py \
    tests/data/test_train_transforms.py \
    tests/data/test_transforms.py \
    tests/data/test_datasets.py \
    "$@"
