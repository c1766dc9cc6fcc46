# The README's two commands: `make demo` (the main job on the bundled default) and `make test`.
# Both create .venv/ and install what they need on a machine with only Python 3.11.
.PHONY: demo test test-slow format

demo:
	@scripts/venv.sh
	.venv/bin/shunted demo

test:
	@scripts/venv.sh test,onnx,openvino
	.venv/bin/ruff check shunted tests benchmarks tools hubconf.py
	.venv/bin/ruff format --check shunted tests benchmarks tools hubconf.py
	.venv/bin/lint-imports
	.venv/bin/python -m pytest -q

# The full CIFAR-10 check (10,000 images against the official result and the PyTorch reference); CI runs it too.
test-slow:
	@scripts/venv.sh test,onnx,openvino
	.venv/bin/python -m pytest -q -m slow

format:
	.venv/bin/ruff format shunted tests benchmarks tools hubconf.py
	.venv/bin/ruff check --fix shunted tests benchmarks tools hubconf.py
