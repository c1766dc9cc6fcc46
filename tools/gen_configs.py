"""Write configs/shunted_{t,s,b}.yaml and configs/shunted_{t,s,b}_train.yaml from shunted/config_schema.py, and
configs/shunted_t_fpn_camvid.yaml (shunted seg-train, its camvid_defaults in shunted/engine/seg/config.py).

    python tools/gen_configs.py           # rewrite the files
    python tools/gen_configs.py --check   # exit 1 if a file differs from what the schema gives

tests/test_config.py and tests/engine/test_seg_train.py check the shipped files are exactly this output.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shunted.config_schema import render_eval_yaml, render_train_yaml  # noqa: E402
from shunted.engine.seg.config import render_camvid_yaml  # noqa: E402
from shunted.fileio import write_text_atomic  # noqa: E402
from shunted.models.registry import VARIANTS  # noqa: E402


def expected() -> dict[Path, str]:
    out = {}
    for name in sorted(VARIANTS):
        out[ROOT / "configs" / f"{name}.yaml"] = render_eval_yaml(name)
        out[ROOT / "configs" / f"{name}_train.yaml"] = render_train_yaml(name)
    out[ROOT / "configs" / "shunted_t_fpn_camvid.yaml"] = render_camvid_yaml("shunted_t_fpn")  # seg-train
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    stale = []
    for path, text in expected().items():
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path)
        if not args.check:
            write_text_atomic(path, text)
    for path in stale:
        print(f"{'differs' if args.check else 'wrote'}: {path.relative_to(ROOT)}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
