"""Makers of the test data: the hostile-input corpus (tests/data/bad), heads on bodies, the rendered face videos
(tests/data/video). Importable by the tests (`from data_makers import bad_inputs`); each writer also runs as a
script from the repository root, e.g. `python tests/data_makers/bad_inputs.py`."""
