"""Exceptions shared by the library, the command line and the Slicer module (no heavy imports)."""
from __future__ import annotations


class Cancelled(Exception):
    """The user asked to stop; nothing was produced."""
