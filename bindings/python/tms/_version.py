# The version of this package, which is the version of libtms it belongs to (Cargo.toml is the
# source). The wheel build and tests/python/test_packaging.py refuse any difference, and the
# loader refuses a libtms whose tms_version() is another: bump this with Cargo.toml.
__version__ = "0.1.0"
