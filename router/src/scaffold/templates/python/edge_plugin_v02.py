"""Helpers for edge-router plugins in Python, contract 0.2 (transform and aggregate stages): write
one function per record, these do the batch.

A batch arrives as one byte string plus two offsets per record; outputs go back as one byte
string plus an end offset each, with keys, attributes and destinations in a sparse list.
`transform_batch` calls your `transform(record)` once per record and gathers the outputs it
returns; `process_batch` calls your `add(record)` once per record; `outputs` turns what your
`emit()` returns into a `tick` or `flush` answer. An exception in `transform` or `add` becomes
that record's error (the router dead-letters it with the message, or applies the stage's
`on_error`) instead of trapping the whole call; an exception in `tick` or `flush` traps, and
the instance's state is lost. `parse_config` turns the stage's config into a dict or raises
`Err` with a message the router prints at start-up.

This file belongs to your project: change it as you like.
"""
import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import types

# Longest partition key, in characters (the router's and Kinesis's limit).
KEY_CHARS_MAX = 256


class Output:
    """One output record: its payload (bytes) and what to set on it. Unset: taken from the input
    record (transform) or left empty (aggregate). `attributes` is a dict (or a list of pairs);
    `destinations` names sinks among those `init` returned (empty: where the input would go, or
    the default sinks)."""

    __slots__ = ("payload", "partition_key", "explicit_hash_key", "attributes", "destinations")

    def __init__(self, payload, partition_key=None, explicit_hash_key=None, attributes=None,
                 destinations=None):
        self.payload = payload
        self.partition_key = partition_key
        self.explicit_hash_key = explicit_hash_key
        self.attributes = attributes or {}
        self.destinations = destinations or []


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


class _Outputs:
    """Outputs being gathered for one call."""

    def __init__(self, names):
        self.data = bytearray()
        self.ends = []
        self.meta = []
        self.index = {name: i for i, name in enumerate(names)}

    def add(self, out):
        if isinstance(out, (bytes, bytearray, memoryview)):
            out = Output(bytes(out))
        elif not isinstance(out, Output):
            raise TypeError(f"an output is bytes or an edge_plugin.Output, not {type(out).__name__}")
        key = out.partition_key
        if key is not None and not (isinstance(key, str) and 1 <= len(key) <= KEY_CHARS_MAX):
            raise ValueError(f"a partition key is a string of 1 to {KEY_CHARS_MAX} characters")
        attributes = out.attributes
        attributes = list(attributes.items()) if isinstance(attributes, dict) else list(attributes)
        destinations = []
        for name in out.destinations:
            if name not in self.index:
                raise ValueError(f"unknown destination {name!r} (init returned {list(self.index)})")
            if self.index[name] not in destinations:
                destinations.append(self.index[name])
        k = len(self.ends)
        self.data += out.payload
        self.ends.append(len(self.data))
        if key is not None or out.explicit_hash_key is not None or attributes or destinations:
            self.meta.append(types.OutputMeta(k, key, out.explicit_hash_key, attributes, destinations))

    def mark(self):
        return len(self.data), len(self.ends), len(self.meta)

    def rewind(self, mark):
        del self.data[mark[0]:]
        del self.ends[mark[1]:]
        del self.meta[mark[2]:]

    def outputs(self):
        return types.Outputs(bytes(self.data), self.ends, self.meta)


def transform_batch(batch, transform, names=()):
    """`transform(record) -> list` per record: its outputs (bytes or Output each; an empty list
    drops the record), in order; an exception is its error (and what it returned is not used).
    `names`: the destination names `init` returned."""
    out, inputs, errors = _Outputs(names), [], []
    for i, rec in records(batch):
        mark = out.mark()
        try:
            for o in transform(rec) or ():
                out.add(o)
        except Exception as e:  # noqa: BLE001 -- any failure is this record's error
            out.rewind(mark)
            errors.append(_error(i, e))
            continue
        inputs.extend([i] * (len(out.ends) - mark[1]))
    return wit_world.TransformResult(out.outputs(), inputs, [], errors)


def process_batch(batch, add):
    """`add(record)` per record: takes it into the state; returning False drops it (counted as
    dropped); an exception is its error."""
    dropped, errors = [], []
    for i, rec in records(batch):
        try:
            if add(rec) is False:
                dropped.append(i)
        except Exception as e:  # noqa: BLE001
            errors.append(_error(i, e))
    return wit_world.ProcessResult(types.Outputs(b"", [], []), dropped, errors)


def outputs(items, names=()):
    """A `tick` or `flush` answer from `items` (bytes or Output each), e.g. what `emit()`
    returned. `names`: the destination names `init` returned."""
    out = _Outputs(names)
    for o in items:
        out.add(o)
    return out.outputs()
