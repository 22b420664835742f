"""Loading libtms and declaring its functions for ctypes, once.

The library is, in this order: the file TMS_LIB names (it always wins), the libtms.so installed
inside this package (a wheel, `pip install ./bindings/python`), or the repository's
target/release/libtms.so (a checkout). A library whose tms_version() is not this package's
version is refused: its functions may take other arguments than `_SIGNATURES` declares.

Strings the library returns are declared as c_void_p (not c_char_p, which would copy and lose
the pointer) so they can be handed back to tms_string_free.
"""

from __future__ import annotations

import ctypes
from array import array
from itertools import accumulate
import os
import sys
from ctypes import CFUNCTYPE, POINTER, c_char_p, c_int, c_int32, c_int64, c_size_t, c_uint64, c_void_p
from typing import Any, Callable, Iterable, cast

from ._version import __version__
from .errors import InvalidInputError, error_for

LIBRARY_NAME = "libtms.dylib" if sys.platform == "darwin" else "libtms.so"
_PACKAGE = os.path.dirname(os.path.abspath(__file__))
_REPO = os.path.dirname(os.path.dirname(os.path.dirname(_PACKAGE)))


def _candidates() -> list[str]:
    explicit = os.environ.get("TMS_LIB")
    if explicit:
        return [explicit]
    return [os.path.join(_PACKAGE, LIBRARY_NAME), os.path.join(_REPO, "target", "release", LIBRARY_NAME)]


def _library_path() -> str:
    """The library this process loads (see the module's docstring for the order)."""
    candidates = _candidates()
    if len(candidates) == 1:
        return candidates[0]
    for path in candidates:
        if os.path.exists(path):
            return path
    raise ImportError(
        f"libtms was not found (looked for {' and '.join(candidates)}). Install the package with "
        "`pip install ./bindings/python` from the repository, build the library there with "
        "`cargo build --release`, or point TMS_LIB at a libtms.so."
    )


def _load() -> tuple[str, ctypes.CDLL]:
    path = _library_path()
    try:
        loaded = ctypes.CDLL(path)
    except OSError as e:
        raise ImportError(
            f"cannot load libtms from {path}: {e}. Build it with `cargo build --release` "
            "in the repository, or point TMS_LIB at libtms.so."
        ) from e
    # Checked before any other function is declared: another release may lack some of them.
    try:
        tms_version = loaded.tms_version
    except AttributeError:
        raise ImportError(f"{path} is not libtms: it has no tms_version()") from None
    tms_version.argtypes = []
    tms_version.restype = c_char_p
    found = tms_version().decode()
    if found != __version__:
        raise ImportError(
            f"{path} is libtms {found}, but this tms package is {__version__}: their functions "
            "may not match. Load the library of the same release (reinstall the package, rebuild "
            "with `cargo build --release`, or fix TMS_LIB)."
        )
    return path, loaded


#: The path of the loaded library, for diagnostics.
library_path, lib = _load()

_P = c_void_p  # opaque TmsStore*
_S = c_char_p  # const char* in
_OUT_S = POINTER(c_void_p)  # char** out
_STRS = POINTER(c_char_p)  # const char* const*


class CreatedJob(ctypes.Structure):
    """TmsCreatedJob: what tms_create_job_packed writes into a struct of the caller's."""

    _fields_ = [("job_id", ctypes.c_char * 37), ("created_at", ctypes.c_char * 32), ("customer_count", c_uint64)]


# void (*)(void *user_data, int32_t level, const char *event, const char *line)
EVENT_CALLBACK = CFUNCTYPE(None, c_void_p, c_int32, c_char_p, c_char_p)

_SIGNATURES = {
    "tms_version": ([], c_char_p),
    "tms_status_name": ([c_int], c_char_p),
    "tms_last_error_message": ([], c_void_p),
    "tms_string_free": ([c_void_p], None),
    "tms_store_open": ([_S, _S, _S, POINTER(c_void_p)], c_int),
    "tms_store_close": ([_P], None),
    "tms_map_action": ([_S, POINTER(c_int32)], c_int),
    "tms_parse_customer_ids": ([_S, c_int, _OUT_S], c_int),
    "tms_create_job": (
        [_P, _S, c_int32, _S, _STRS, c_size_t, _S, _S, _S, _S, _S, _OUT_S, _OUT_S],
        c_int,
    ),
    "tms_create_job_packed": (
        [_P, _S, c_int32, _S, _S, c_size_t, _S, _S, _S, _S, _S, POINTER(CreatedJob)],
        c_int,
    ),
    "tms_update_job": ([_P, _S, _S, POINTER(c_int64), _S, _S], c_int),
    "tms_get_job": ([_P, _S, _OUT_S], c_int),
    "tms_get_user_jobs": ([_P, _S, c_int64, _OUT_S], c_int),
    "tms_get_job_customers": ([_P, _S, _OUT_S], c_int),
    "tms_record_audit": ([_P, _S, _S, _S, _S, _S, _S, POINTER(c_int64), POINTER(c_int64)], c_int),
    "tms_get_audit_trail": ([_P, _S, _S, _S, c_int64, _OUT_S], c_int),
    "tms_get_action_types": ([_P, _OUT_S], c_int),
    "tms_get_audit_stats": ([_P, _OUT_S], c_int),
    "tms_clear_audit_logs": ([_P, POINTER(c_uint64)], c_int),
    "tms_cache_get": ([_P, _S, _S, c_int64, _OUT_S], c_int),
    "tms_cache_get_batch": ([_P, _STRS, c_size_t, _S, c_int64, _OUT_S], c_int),
    "tms_cache_put": ([_P, _S, _S, _S, c_int64], c_int),
    "tms_cache_cleanup": ([_P, c_int64, POINTER(c_uint64)], c_int),
    "tms_cache_invalidate": ([_P, _S, _S, POINTER(c_uint64)], c_int),
    "tms_cache_stats": ([_P, _OUT_S], c_int),
    "tms_set_action": ([_P, _S, _S, _S, _S, POINTER(c_int32), _OUT_S], c_int),
    "tms_recover_interrupted": ([_P, POINTER(c_uint64)], c_int),
    "tms_store_set_event_callback": ([_P, EVENT_CALLBACK, c_void_p], c_int),
    "tms_verify_audit": ([_P, POINTER(c_int64), _S, _OUT_S], c_int),
    "tms_adopt_unchained": ([_P, _S, _OUT_S], c_int),
    "tms_audit_checkpoint": ([_P, _S, _S, _OUT_S], c_int),
    "tms_verify_audit_checkpoint": ([_P, _S, _S, _OUT_S], c_int),
    "tms_store_metrics": ([_P, _OUT_S], c_int),
    "tms_debug_hold_write_lock": ([_P, c_int32, ctypes.c_uint32], c_int),
    "tms_store_copy_into": ([_P, _P, _OUT_S], c_int),
}

for _name, (_args, _res) in _SIGNATURES.items():
    _fn = getattr(lib, _name)
    _fn.argtypes = _args
    _fn.restype = _res

INPUT_MANUAL = 0
INPUT_CSV = 1


def encode(value: object, field: str) -> bytes | None:
    """A Python str as the NUL-terminated UTF-8 the library expects; None stays NULL.

    A NUL inside the text would silently cut it short in C, so it is refused here. Lone
    surrogates are passed through, for the library to refuse as invalid UTF-8.
    """
    if value is None:
        return None
    if type(value) is str:  # the common case first: this runs for every argument of every call
        data = value.encode("utf-8", "surrogatepass")
    elif isinstance(value, bytes):
        data = value
    else:
        data = str(value).encode("utf-8", "surrogatepass")
    # `0 in data` looks for the byte value directly; `b"\0" in data` first tries the needle as an
    # int and pays for a TypeError it then clears (measured: 320 ns against 35 ns per argument).
    if 0 in data:
        raise InvalidInputError(f"{field} contains a NUL character")
    return data


def id_list(values: Iterable[object], field: str) -> list[str | bytes]:
    """IDs as strings: str as it is, an int as its digits; anything else (a dict, a list, None)
    is refused, where a repr would otherwise be stored as an ID."""
    out: list[str | bytes] = []
    for i, v in enumerate(values):
        if isinstance(v, (str, bytes)):
            out.append(v)
        elif isinstance(v, int) and not isinstance(v, bool):
            out.append(str(v))
        else:
            raise InvalidInputError(f"{field}[{i}] must be a string, not {type(v).__name__}")
    return out


def id_blob(values: Iterable[str | int], field: str) -> bytes:
    """A list of IDs as one buffer, separated by NULs (tms_create_job_packed's `cids`): one join
    and one encode, however many IDs. Refused or converted exactly as `string_array` does."""
    if isinstance(values, (str, bytes)):
        raise InvalidInputError(f"{field} must be a list of strings, not a single string")
    if not isinstance(values, (list, tuple)):
        values = list(values)  # a generator would be spent by the first pass below
    try:
        joined = "\0".join(values)  # type: ignore[arg-type]  # anything but str fails here
    except TypeError:  # an int, bytes, or something to refuse: the checked path below
        joined = None
    if joined is not None and joined.count("\0") == max(len(values) - 1, 0):
        return joined.encode("utf-8", "surrogatepass")  # lone surrogates: refused by the library
    return b"\0".join([encode(v, f"{field}[{i}]") or b"" for i, v in enumerate(id_list(values, field))])


def string_array(values: Iterable[str | int], field: str) -> tuple[ctypes.Array[c_char_p], int]:
    """A list of str as a `const char *const *` array; returns (array, count). The array keeps
    the memory its pointers point into alive.

    Lists of tens of thousands of IDs are common: the usual case (all str, no NUL) is encoded
    in one piece (see `_packed`); a short list item by item, which is cheaper below a few dozen;
    anything else takes the checked path per item."""
    if isinstance(values, (str, bytes)):
        raise InvalidInputError(f"{field} must be a list of strings, not a single string")
    if not isinstance(values, (list, tuple)):
        values = list(values)  # a generator would be spent by the first pass below
    if len(values) > _PACK_FROM:
        packed = _packed(values)
        if packed is not None:
            return packed, len(values)
    items: list[bytes] | None
    try:
        # An int (or anything else) fails here on purpose; the checked path below takes it.
        items = [v.encode("utf-8", "surrogatepass") for v in values]  # type: ignore[union-attr]
    except (AttributeError, TypeError):
        items = None
    if items is None or 0 in b"".join(items):  # `0 in`: see encode()
        checked = [encode(v, f"{field}[{i}]") for i, v in enumerate(id_list(values, field))]
        return (c_char_p * len(checked))(*checked), len(checked)
    return (c_char_p * len(items))(*items), len(items)


#: Lists longer than this are packed (measured: 3 IDs 2.8 µs item by item, 4.2 µs packed;
#: 150 IDs 70 µs against 35 µs; 27,682 IDs 15.6 ms against 6 ms).
_PACK_FROM = 16
_POINTER_CODE = "Q" if ctypes.sizeof(ctypes.c_void_p) == 8 else "I"


def _packed(values: list[Any] | tuple[Any, ...]) -> ctypes.Array[c_char_p] | None:
    """All IDs as one NUL-separated buffer and an array of pointers into it, built by C-level
    loops (one join, one encode, one running sum) instead of a Python object per ID. None when
    the list is not all ASCII str without NUL: the item-by-item path handles (or refuses) it."""
    try:
        joined = "\0".join(values)
    except TypeError:
        return None
    if joined.count("\0") != len(values) - 1:
        return None  # a NUL inside an ID
    blob = joined.encode("utf-8", "surrogatepass")
    if len(blob) != len(joined):
        return None  # not ASCII: characters are not bytes, the offsets below would be wrong
    buffer = ctypes.create_string_buffer(blob)
    starts = array(_POINTER_CODE, accumulate(map((1).__add__, map(len, values)), initial=ctypes.addressof(buffer)))
    starts.pop()  # the running sum's last value is the end of the buffer
    pointers = (c_char_p * len(values)).from_buffer(starts)
    pointers._buffer = buffer  # type: ignore[attr-defined]  # the text must outlive the call
    return pointers


def take_string(ptr: int | None) -> str | None:
    """Copy a library-owned string into Python and free it."""
    if not ptr:
        return None
    try:
        return ctypes.string_at(ptr).decode("utf-8")
    finally:
        lib.tms_string_free(ptr)


def last_error_message() -> str:
    ptr = lib.tms_last_error_message()
    return take_string(ptr) or "unknown error"


def check(status: int) -> None:
    """Raise the status's own exception, carrying the library's message, unless it is 0."""
    if status != 0:
        raise error_for(status, last_error_message())


def call_json(fn: Callable[..., int], *args: Any) -> str:
    """Call a function whose last argument is a `char **out_json`; return the decoded JSON text."""
    out = c_void_p()
    try:
        check(fn(*args, ctypes.byref(out)))
        return ctypes.string_at(cast(int, out.value)).decode("utf-8")  # set: the call succeeded
    finally:
        if out.value:
            lib.tms_string_free(out.value)
