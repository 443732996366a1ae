"""A seeded mutation fuzzer in plain Python: byte-level mutations (flips, interesting integers, cuts, copies,
insertions) and, for JSON inputs, structural ones (a value replaced by an odd one of another type, a key dropped
or duplicated). Deterministic for a seed, so a finding can be replayed."""
import copy
import json
import random
import struct

INTERESTING_INTS = [0, -1, 1, 2, 255, 256, 2**15, 2**16, 2**31 - 1, 2**31, -2**31, 2**32, 2**63 - 1, 2**64 - 1]
ODD_VALUES = [None, True, False, 0, -1, 1, 2**31 - 1, 2**63, -2**63, 1e-300, 1e308, float("nan"), float("inf"),
              -float("inf"), 0.5, "", "a", "\ud800", [], [1, 2], {}, {"a": 1}, [[1]], "2", 3.7]


def mutate_bytes(rng, data):
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(7)
        if not data:
            data += bytes([rng.randrange(256)])
            continue
        at = rng.randrange(len(data))
        if choice == 0:  # bit flip
            data[at] ^= 1 << rng.randrange(8)
        elif choice == 1:  # random byte
            data[at] = rng.randrange(256)
        elif choice == 2 and len(data) > 8:  # an interesting integer, little-endian
            value = rng.choice(INTERESTING_INTS) & 0xFFFFFFFFFFFFFFFF
            width = rng.choice((1, 2, 4, 8))
            data[at:at + width] = struct.pack("<Q", value)[:width]
        elif choice == 3:  # cut
            end = min(len(data), at + rng.randint(1, 64))
            del data[at:end]
        elif choice == 4:  # copy a chunk elsewhere
            end = min(len(data), at + rng.randint(1, 64))
            chunk = data[at:end]
            where = rng.randrange(len(data))
            data[where:where] = chunk
        elif choice == 5:  # truncate
            del data[at:]
        else:  # insert ASCII digits or JSON punctuation
            data[at:at] = rng.choice([b"9999999999", b"-1", b"{", b"}", b"[", b"]", b",", b'"', b"\\u0000", b"1e999"])
    return bytes(data)


def _paths(node, path=()):
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, path + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node[:50]):
            yield from _paths(value, path + (i,))


def mutate_json(rng, data):
    try:
        root = json.loads(data)
    except (ValueError, RecursionError):
        return None
    paths = list(_paths(root))
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(paths)
        if not path:
            continue
        parent = root
        try:
            for key in path[:-1]:
                parent = parent[key]
            choice = rng.randrange(4)
            if choice == 0 or not isinstance(parent, dict):
                parent[path[-1]] = copy.deepcopy(rng.choice(ODD_VALUES))  # shared, a value could come to hold itself
            elif choice == 1:
                del parent[path[-1]]
            elif choice == 2:
                value = parent[path[-1]]
                parent[path[-1]] = [value] * rng.randint(2, 40) if not isinstance(value, list) else value * 3
            else:
                parent[path[-1]] = json.loads(json.dumps(parent))  # nesting
        except (KeyError, IndexError, TypeError):
            continue
    try:
        text = json.dumps(root, ensure_ascii=rng.random() < 0.5)
    except ValueError:  # a circular structure: no text to try
        return None
    if rng.random() < 0.1 and text.startswith("{") and len(text) > 2:  # a key twice
        first_key = text[1:text.find(":") + 1] if ":" in text else None
        if first_key:
            text = "{" + first_key + " 1, " + text[1:]
    return text.encode("utf-8", errors="surrogatepass")


def mutate_safetensors(rng, data):
    """The JSON header mutated and framed again with its true length, so that the checks behind it are reached."""
    if len(data) < 8:
        return None
    (length,) = struct.unpack("<Q", data[:8])
    header = mutate_json(rng, data[8:8 + length])
    if header is None:
        return None
    return struct.pack("<Q", len(header)) + header + data[8 + length:]


STRUCTURED = {"json": mutate_json, "safetensors": mutate_safetensors}


def mutations(seeds, seed, iterations, structured):
    """Yields `iterations` inputs mutated from the seeds (and from earlier mutations), reproducibly; structured:
    None or a key of STRUCTURED, the format-aware mutation tried first for most inputs."""
    rng = random.Random(seed)
    pool = [data for _, data in seeds]
    for _ in range(iterations):
        base = rng.choice(pool)
        data = STRUCTURED[structured](rng, base) if structured and rng.random() < 0.6 else None
        if data is None:
            data = mutate_bytes(rng, base)
        if len(pool) < 64 and rng.random() < 0.05:
            pool.append(data)
        yield data
