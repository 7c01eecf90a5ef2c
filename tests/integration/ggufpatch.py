"""ggufpatch: patch one scalar key of a GGUF file in place (same type, same size), for tests
that need a hostile model: a negative epsilon, a block_count that disagrees with the tensors.
Stdlib only; reads only the header."""
import struct

_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}


def _skip_value(buf, off, typ):
    if typ in _SCALAR:
        return off + struct.calcsize(_SCALAR[typ])
    if typ == 8:  # string
        (n,) = struct.unpack_from("<Q", buf, off)
        return off + 8 + n
    if typ == 9:  # array
        (et,) = struct.unpack_from("<I", buf, off)
        (n,) = struct.unpack_from("<Q", buf, off + 4)
        off += 12
        if et in _SCALAR:
            return off + n * struct.calcsize(_SCALAR[et])
        for _ in range(n):
            off = _skip_value(buf, off, et)
        return off
    raise ValueError("unknown GGUF type %d" % typ)


def find_key(buf, key):
    """(offset of the value, type) of `key`, or None."""
    if buf[:4] != b"GGUF":
        raise ValueError("not a GGUF file")
    _, _, n_kv = struct.unpack_from("<IQQ", buf, 4)
    off = 24
    for _ in range(n_kv):
        (klen,) = struct.unpack_from("<Q", buf, off)
        k = bytes(buf[off + 8:off + 8 + klen]).decode()
        off += 8 + klen
        (typ,) = struct.unpack_from("<I", buf, off)
        off += 4
        if k == key:
            return off, typ
        off = _skip_value(buf, off, typ)
    return None


def patch(path, key, value):
    """Sets scalar `key` of the GGUF at path to value (kept in the key's own type)."""
    with open(path, "r+b") as f:
        buf = bytearray(f.read(1 << 22))  # the header of a small model fits
        found = find_key(buf, key)
        if not found:
            raise KeyError(key)
        off, typ = found
        if typ not in _SCALAR:
            raise TypeError("%s is not a scalar" % key)
        f.seek(off)
        f.write(struct.pack(_SCALAR[typ], value))


def get(path, key):
    with open(path, "rb") as f:
        buf = f.read(1 << 22)
    off, typ = find_key(buf, key)
    return struct.unpack_from(_SCALAR[typ], buf, off)[0]
