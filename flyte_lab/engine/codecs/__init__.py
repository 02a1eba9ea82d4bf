"""How each kind of task value is stored as an artifact: one module per file format.

`registry` is the registry the artifact store dispatches through (`engine/artifacts.CODECS` holds the
built-in codecs); `typed_json` encodes a value as JSON by its declared type and `json_codec` stores it;
`parquet_npy` writes DataFrames as Parquet and arrays as .npy; `signed_pickle` is cloudpickle behind the
store's HMAC signature; `path_artifacts` copies files and folders in and out. Every reader and writer takes
the store (keys, content-addressed blobs, signing) as its first argument and keeps no state of its own.
"""
