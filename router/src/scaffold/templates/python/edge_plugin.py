"""Helpers for edge-router plugins in Python: write one function per record, these do the batch.

A batch arrives as one byte string plus two offsets per record; an answer goes back as compact
lists. `filter_batch`, `enrich_batch` and `route_batch` call your function once per record and
turn an exception into that record's error (the router dead-letters it with the message, or
applies the stage's `on_error`) instead of letting it trap the whole call. `parse_config` turns
the stage's config into a dict or raises `Err` with a message the router prints at start-up.

This file belongs to your project: change it as you like.
"""
import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import types


def parse_config(config):
    """The stage's `config` table as a dict; raises Err (start-up stops with the message)."""
    try:
        value = json.loads(config)
    except ValueError as e:
        raise Err(f"config is not JSON: {e}")
    if not isinstance(value, dict):
        raise Err("config must be a JSON object")
    return value


def records(batch):
    """Yields (index, payload bytes) for every record of the batch."""
    data, spans = batch.data, batch.spans
    for i in range(len(spans) // 2):
        yield i, data[spans[2 * i]:spans[2 * i + 1]]


def _error(i, e):
    return types.RecordError(i, str(e) or type(e).__name__)


def filter_batch(batch, keep):
    """`keep(record) -> bool` per record: True keeps it, False drops it, an exception is its error."""
    flags, errors = [], []
    for i, rec in records(batch):
        try:
            flags.append(bool(keep(rec)))
        except Exception as e:  # noqa: BLE001 -- any failure is this record's error
            flags.append(False)
            errors.append(_error(i, e))
    return wit_world.FilterResult(flags, errors)


def enrich_batch(batch, enrich):
    """`enrich(record) -> bytes | None` per record: new payload bytes, or None to leave it as it
    is; an exception is its error. Only the changed records go back to the router."""
    changed, out, ends, errors = [], bytearray(), [], []
    for i, rec in records(batch):
        try:
            new = enrich(rec)
        except Exception as e:  # noqa: BLE001
            errors.append(_error(i, e))
            continue
        if new is not None and new != rec:
            changed.append(i)
            out += new
            ends.append(len(out))
    return wit_world.EnrichResult(changed, bytes(out), ends, errors)


def route_batch(batch, names, route):
    """`route(record) -> str | None` per record: one of `names` (what `init` returned), or None
    for the router's default sinks; an exception (or a name not in `names`) is its error."""
    index = {name: i for i, name in enumerate(names)}
    destinations, errors = [], []
    for i, rec in records(batch):
        try:
            name = route(rec)
            if name is not None and name not in index:
                raise ValueError(f"unknown destination {name!r} (init returned {names})")
            destinations.append(None if name is None else index[name])
        except Exception as e:  # noqa: BLE001
            destinations.append(None)
            errors.append(_error(i, e))
    return wit_world.RouteResult(destinations, errors)
