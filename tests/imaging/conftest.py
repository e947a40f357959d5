"""The position-sensitive probe model of the inference tests, for the parity tests here."""

from tests.inference.conftest import probe_model  # noqa: F401 - a fixture, used by name
