"""DataFrames as Parquet (`.parquet`) and numpy arrays as `.npy`, never pickled inside the format.

pyarrow and numpy are imported when a value needs them. What the format cannot hold (object columns,
object arrays) is pickled instead (`signed_pickle`), with the format's reason in the warning.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from flyte_lab.engine.codecs import signed_pickle, typed_json

if TYPE_CHECKING:
    from flyte_lab.engine.artifacts import ArtifactRef, ArtifactStore


def write_parquet(store: ArtifactStore, value: Any, spec: Any, namespace: dict[str, Any] | None) -> ArtifactRef:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq

        buffer = io.BytesIO()
        # preserve_index=None keeps a RangeIndex as metadata and any other index as columns
        pq.write_table(pa.Table.from_pandas(value, preserve_index=None), buffer)
    except (ValueError, TypeError, ImportError) as exc:  # object columns
        return signed_pickle.write_value(store, value, typed_json.qualname(type(value)), reason=str(exc))
    rows, cols = value.shape
    names = ", ".join(str(c) for c in value.columns)
    data = buffer.getvalue()
    return store.ref(store.write_blob(data, "parquet"), "parquet", data, f"DataFrame {rows}x{cols} [{names}]")


def read_parquet(store: ArtifactStore, key: str, spec: Any, namespace: dict[str, Any] | None) -> Any:
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(store.read_verified(key))).to_pandas()


def write_npy(store: ArtifactStore, value: Any, spec: Any, namespace: dict[str, Any] | None) -> ArtifactRef:
    try:
        import numpy as np

        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=False)
    except (ValueError, TypeError, ImportError) as exc:  # object arrays
        return signed_pickle.write_value(store, value, typed_json.qualname(type(value)), reason=str(exc))
    data = buffer.getvalue()
    return store.ref(store.write_blob(data, "npy"), "npy", data, f"ndarray {value.dtype} {value.shape}")


def read_npy(store: ArtifactStore, key: str, spec: Any, namespace: dict[str, Any] | None) -> Any:
    import numpy as np

    return np.load(io.BytesIO(store.read_verified(key)), allow_pickle=False)
