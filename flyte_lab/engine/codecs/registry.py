"""The artifact codecs by name, in a registry (as papermill's I/O handlers are: `papermill_io.register`).

A codec says the extension its files get (which names the codec in every key: `ab/<sha256>.EXT`), how the
store reads a value back and how it writes one. `engine/artifacts.py` registers the built-in ones (the
modules of this package, and its own list manifest) and dispatches through `CODECS`; a new codec is one
more `register`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flyte_lab.engine.artifacts import ArtifactRef, ArtifactStore

Namespace = dict[str, Any] | None
# (store, key, declared type, namespace) -> the value
Reader = Callable[["ArtifactStore", str, Any, Namespace], Any]
# (store, value, declared type, namespace) -> where it was stored
Writer = Callable[["ArtifactStore", Any, Any, Namespace], "ArtifactRef"]


@dataclass(frozen=True)
class Codec:
    name: str  # what `ArtifactRef.codec` and the run store say
    ext: str
    read: Reader
    write: Writer | None  # None: written by the store itself (a list manifest, from its elements)


class CodecRegistry:
    def __init__(self) -> None:
        self._by_name: dict[str, Codec] = {}
        self._by_ext: dict[str, Codec] = {}

    def register(self, codec: Codec) -> None:
        # a key's extension must name one codec, or a stored file could be read by the wrong one
        if codec.name in self._by_name or codec.ext in self._by_ext:
            raise ValueError(f"codec {codec.name!r} (.{codec.ext}) clashes with a registered one")
        self._by_name[codec.name] = codec
        self._by_ext[codec.ext] = codec

    def writer(self, name: str) -> Writer:
        write = self._by_name[name].write
        if write is None:
            raise ValueError(f"codec {name!r} is written by the artifact store itself, not from a value")
        return write

    def of_ext(self, ext: str) -> Codec:
        return self._by_ext[ext]

    def key_pattern(self) -> re.Pattern[str]:
        """Every key a store computes: `ab/<sha256>.EXT`, EXT one of the registered codecs' (group 1: the hash)."""
        exts = "|".join(re.escape(ext) for ext in self._by_ext)
        return re.compile(rf"^[0-9a-f]{{2}}/([0-9a-f]{{64}})\.({exts})$")
