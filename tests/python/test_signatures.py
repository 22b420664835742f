"""Every ctypes declaration of the binding matches include/tms.h.

ctypes trusts what it is told: an argument declared with the wrong width or a missing one is not
an error but a corrupted call. So the prototypes are read from the header (cbindgen writes them
in one regular shape) and each C type is mapped to the ctypes type the binding must use for it.
"""

import ctypes
import os
import re
from ctypes import POINTER, c_char_p, c_int, c_int32, c_int64, c_size_t, c_uint32, c_uint64, c_void_p

import pytest

from tms import _native

HEADER = os.path.join(os.path.dirname(__file__), "..", "..", "include", "tms.h")

# C type (whitespace normalised) -> the ctypes type for an argument of that type.
ARGUMENT_TYPES = {
    "const struct TmsStore *": c_void_p,  # the handle is opaque to Python
    "struct TmsStore *": c_void_p,
    "struct TmsStore **": POINTER(c_void_p),
    "const char *": c_char_p,
    "const char *const *": POINTER(c_char_p),
    "char **": POINTER(c_void_p),  # out strings stay pointers, to be given to tms_string_free
    "char *": c_void_p,
    "int": c_int,
    "int32_t": c_int32,
    "uint32_t": c_uint32,
    "int64_t": c_int64,
    "size_t": c_size_t,
    "int32_t *": POINTER(c_int32),
    "const int64_t *": POINTER(c_int64),
    "int64_t *": POINTER(c_int64),
    "uint64_t *": POINTER(c_uint64),
    "void *": c_void_p,
    "TmsEventCallback": _native.EVENT_CALLBACK,
    "struct TmsCreatedJob *": POINTER(_native.CreatedJob),
}

# C field type -> ctypes type, for the structs the caller owns.
FIELD_TYPES = {"char": ctypes.c_char, "uint64_t": c_uint64}
STRUCT = re.compile(r"typedef struct (\w+) \{(.*?)\} \1;", re.S)
FIELD = re.compile(r"^\s*(\w+) (\w+)(?:\[(\d+)\])?;", re.M)

# C return type -> the ctypes restype. A `char *` is owned by the caller and must be freed, so it
# is kept as a pointer; a `const char *` is static and may be read as bytes directly.
RETURN_TYPES = {
    "enum TmsStatus": c_int,
    "void": None,
    "const char *": c_char_p,
    "char *": c_void_p,
}

PROTOTYPE = re.compile(r"^([A-Za-z_][\w ]*?[\s*]+)(tms_\w+)\(([^)]*)\);", re.M)
CALLBACK = re.compile(r"typedef (\w+) \(\*TmsEventCallback\)\(([^)]*)\);")


def normalise(c_type):
    """`const  struct TmsStore*` -> `const struct TmsStore *`: one space before each `*`."""
    c_type = re.sub(r"\s+", " ", c_type.strip())
    c_type = re.sub(r"\s*\*", " *", c_type)
    return c_type.replace("* *", "**").replace("* const", "*const")


def parameter_types(params):
    """The types of a parameter list, the parameter names dropped."""
    params = params.strip()
    if params in ("", "void"):
        return []
    return [normalise(re.sub(r"\w+$", "", p.strip())) for p in params.split(",")]


def read_header():
    with open(HEADER, encoding="utf-8") as f:
        text = f.read()
    # Comments hold example calls; only declarations count.
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return text


def header_prototypes(text=None):
    """{name: (return C type, [argument C types])} of every function the header (or `text`) declares."""
    found = {}
    for match in PROTOTYPE.finditer(read_header() if text is None else text):
        ret, name, params = match.groups()
        found[name] = (normalise(ret), parameter_types(params))
    return found


def test_the_header_parses_into_the_functions_it_declares():
    prototypes = header_prototypes()
    # A parse that silently found nothing would pass every comparison below.
    assert len(prototypes) >= 25
    assert prototypes["tms_store_open"] == (
        "enum TmsStatus", ["const char *", "const char *", "const char *", "struct TmsStore **"])
    assert prototypes["tms_version"] == ("const char *", [])
    declared = len(re.findall(r"\btms_\w+\(", read_header()))
    assert declared == len(prototypes), "a prototype in tms.h is not in the shape this test reads"


def test_the_binding_declares_exactly_the_header_functions():
    header = set(header_prototypes())
    binding = set(_native._SIGNATURES)
    assert header - binding == set(), "functions in tms.h that _native._SIGNATURES does not declare"
    assert binding - header == set(), "functions in _native._SIGNATURES that tms.h does not declare"


def signature_problems(prototype, declaration):
    """What is wrong with a ctypes `declaration` (argtypes, restype) of a C `prototype`."""
    ret, args = prototype
    unknown = [t for t in args if t not in ARGUMENT_TYPES] + ([ret] if ret not in RETURN_TYPES else [])
    if unknown:
        return [f"C types this test cannot map yet: {unknown}"]
    declared_args, declared_ret = declaration
    problems = []
    if list(declared_args) != [ARGUMENT_TYPES[t] for t in args]:
        problems.append("arguments")
    if declared_ret is not RETURN_TYPES[ret]:
        problems.append("return type")
    return problems


@pytest.mark.parametrize("name", sorted(header_prototypes()))
def test_each_signature_matches_the_header(name):
    assert signature_problems(header_prototypes()[name], _native._SIGNATURES[name]) == [], name
    declared_args, declared_ret = _native._SIGNATURES[name]
    # What ctypes actually uses is what was declared (nothing overwrote it later).
    fn = getattr(_native.lib, name)
    assert list(fn.argtypes) == list(declared_args) and fn.restype is declared_ret


def test_each_struct_matches_the_header():
    """A Structure whose fields differ from the header's in name, order, type or array length
    would make the library write past or beside it."""
    structs = {name: body for name, body in STRUCT.findall(read_header())}
    assert set(structs) == {"TmsCreatedJob"}, "a new struct in the header needs its Structure here"
    for name, structure in {"TmsCreatedJob": _native.CreatedJob}.items():
        expected = [(field, FIELD_TYPES[c_type] * int(n) if n else FIELD_TYPES[c_type])
                    for c_type, field, n in FIELD.findall(structs[name])]
        assert [(f, t._type_, t._length_) if hasattr(t, "_length_") else (f, t) for f, t in structure._fields_] == \
            [(f, t._type_, t._length_) if hasattr(t, "_length_") else (f, t) for f, t in expected], name


def test_the_event_callback_type_matches_the_header():
    ret, params = CALLBACK.search(read_header()).groups()
    assert ret == "void"
    assert list(_native.EVENT_CALLBACK._argtypes_) == [ARGUMENT_TYPES[t] for t in parameter_types(params)]
    assert _native.EVENT_CALLBACK._restype_ is None


WRONG_WIDTH = {c_int32: c_int64, c_int64: c_int32, c_uint32: c_uint64, c_int: c_int64, c_size_t: c_uint32}


def test_a_wrong_declaration_of_a_real_function_would_be_caught():
    """The comparison above, fed the binding's real declarations with one thing wrong each (an
    integer of another width, a pointer level lost, an argument dropped, another return type),
    and the real header with one parameter's type changed: each is reported."""
    prototypes = header_prototypes()
    checked = 0
    for name, (args, ret) in _native._SIGNATURES.items():
        args = list(args)
        wrong = []
        for i, t in enumerate(args):
            if t in WRONG_WIDTH:
                wrong.append(args[:i] + [WRONG_WIDTH[t]] + args[i + 1:])
            elif t is c_char_p:
                wrong.append(args[:i] + [POINTER(c_char_p)] + args[i + 1:])
        if args:
            wrong.append(args[:-1])
        for bad in wrong:
            assert signature_problems(prototypes[name], (bad, ret)) == ["arguments"], (name, bad)
            checked += 1
        other_ret = c_void_p if ret is not c_void_p else c_int
        assert signature_problems(prototypes[name], (args, other_ret)) == ["return type"], name
    assert checked >= 60, checked
    # The header side: tms_cache_get's int64_t ttl_seconds declared int32_t no longer matches.
    text = read_header()
    changed = re.sub(r"(tms_cache_get\([^)]*?)int64_t", r"\1int32_t", text, count=1)
    assert changed != text
    assert signature_problems(header_prototypes(changed)["tms_cache_get"], _native._SIGNATURES["tms_cache_get"]) == ["arguments"]


def test_the_library_exports_every_header_function():
    """The library ctypes loaded (TMS_LIB) defines each function the header declares."""
    missing = [name for name in header_prototypes() if not hasattr(_native.lib, name)]
    assert missing == []
    assert ctypes.sizeof(ARGUMENT_TYPES["size_t"]) == ctypes.sizeof(c_void_p)
