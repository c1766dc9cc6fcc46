"""The reliability cases of tools/reliability_cases.py: a case table per area (``cases_*.py``), the file
crafting they use (``craft.py``), the shared inputs and builders (``harness.py``) and the run of one case (``run.py``)."""
