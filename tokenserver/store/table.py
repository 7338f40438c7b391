"""What every table's store shares: the database it uses and rows read into records."""

from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, TypeVar

from tokenserver.store.db import Database

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

__all__ = ["TableStore", "record"]

R = TypeVar("R", bound="DataclassInstance")


class TableStore:
    def __init__(self, db: Database) -> None:
        self._db = db


def record(cls: type[R], row: object, **computed: object) -> R:
    """A `cls` from the row's columns of its fields' names, but for the `computed` ones.

    Records name their fields as the columns do, so that a column added to
    both needs no mapping written for it.
    """
    values = {
        f.name: computed[f.name] if f.name in computed else getattr(row, f.name)
        for f in fields(cls)
        if f.init
    }
    return cls(**values)
