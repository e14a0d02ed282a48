"""Subcommands added by later features (kept apart so cli.py stays small)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Nothing yet."""
