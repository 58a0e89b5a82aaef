"""Serialise a reconstruction's state (``Pipeline.state_bytes``) to bytes and back.

Loading uses ``torch.load(weights_only=True)``: even our own saved states are never unpickled
with code execution, so a tampered object in storage cannot run anything."""

from __future__ import annotations

import io
import pickle
from typing import Any

import torch

from core.errors import RecipeError


def state_to_bytes(state: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def state_from_bytes(data: bytes) -> dict[str, Any]:
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise RecipeError(f"saved reconstruction state is unreadable: {str(err).splitlines()[0][:200]}") from None
