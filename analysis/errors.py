"""The one error type for bad user input: printed as one line, no traceback."""
from __future__ import annotations


class AnalysisError(Exception):
    """Bad input (config, CSV, result.json, missing data). The message names what and where."""
