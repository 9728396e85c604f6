#!/usr/bin/env python3
"""Mutation fuzzing of the Python readers of seqgan files, which libFuzzer cannot reach:
python/seqgan_torch's safetensors reader and its model-file loaders.

    python3 tools/fuzz_python_readers.py SECONDS [MODEL_FILE ...]

Inputs are mutated from the seed corpus of the C++ safetensors target (fuzz/corpus/safetensors)
and from the given model files (a tokenizer.safetensors and a transformer.safetensors of seqgan):
bytes flipped, inserted, removed or truncated anywhere, and, for model files, their metadata and
configuration rewritten with values of other types, other numbers and missing keys. Every input
must either load or raise ValueError; any other exception, or an input that takes over 20 s, is a
finding, written to fuzz/crash-python-N with its traceback, and the script exits with status 1.
As libFuzzer's -rss_limit_mb does for the C++ targets, the process's address space is limited
(4 GiB): a damaged configuration that describes a model too large to allocate must be refused,
not swap the machine. Prints the count of inputs run, how many loaded and how many were refused."""
import glob
import json
import os
import random
import resource
import signal
import struct
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
import torch  # noqa: E402

from seqgan_torch import load_tokenizer, load_transformer  # noqa: E402
from seqgan_torch.safetensors_io import read_safetensors  # noqa: E402

torch.set_num_threads(1)


def split(data):
    """(header dict, data bytes) of a well-formed safetensors file, else None."""
    try:
        (n,) = struct.unpack("<Q", data[:8])
        return json.loads(data[8:8 + n]), data[8 + n:]
    except Exception:  # noqa: BLE001 - a seed that is not well formed is mutated by bytes only
        return None


def join(header, body):
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + body


ODD_VALUES = [None, True, -1, 0, 1, 2, 3, 7, 2 ** 31, 2 ** 63, -2 ** 40, 1e308, -0.5, 0.5, "", "x", "0_1",
              [], [0], [1, 2], [-1, 1000000], {}, {"a": 1}]


def mutate_value(v, rng):
    if isinstance(v, dict) and v and rng.random() < 0.7:
        k = rng.choice(list(v))
        if rng.random() < 0.2:
            del v[k]
        else:
            v[k] = mutate_value(v[k], rng)
        return v
    if isinstance(v, list) and v and rng.random() < 0.5:
        i = rng.randrange(len(v))
        v[i] = mutate_value(v[i], rng)
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool) and rng.random() < 0.5:
        return type(v)(v * rng.choice([0, -1, 2, 1000])) if abs(v) < 1e300 else 0
    return rng.choice(ODD_VALUES)


def mutate_structure(data, rng):
    """A model file with its metadata (the configuration included) or a tensor's header rewritten."""
    parts = split(data)
    if parts is None:
        return None
    header, body = parts
    meta = header.setdefault("__metadata__", {})
    if rng.random() < 0.6 and "config" in meta:
        config = json.loads(meta["config"])
        for _ in range(rng.randint(1, 3)):
            section = rng.choice([k for k in config if isinstance(config[k], dict)] or ["data"])
            config[section] = mutate_value(config.get(section, {}), rng)
        meta["config"] = json.dumps(config)
    elif rng.random() < 0.5:
        key = rng.choice(list(meta) + ["step", "phase", "kind", "num_classes", "length", "null_class", "class_names",
                                       "ema_decay", "seqgan.crc32", "format_version"])
        value = rng.choice(ODD_VALUES)
        if rng.random() < 0.2:
            meta.pop(key, None)
        else:
            meta[key] = value if isinstance(value, str) else json.dumps(value)
    else:
        names = [k for k in header if k != "__metadata__"]
        if names:
            header[rng.choice(names)] = mutate_value(dict(header[rng.choice(names)]), rng)
    return join(header, body)


def mutate_bytes(data, rng):
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(4)
        at = rng.randrange(len(b) + 1) if rng.random() < 0.5 or len(b) < 64 else rng.randrange(min(len(b), 4096) + 1)
        if op == 0 and b:
            b[min(at, len(b) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            b[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif op == 2 and b:
            del b[at:at + rng.randint(1, 16)]
        else:
            del b[at:]
    return bytes(b)


def main(argv):
    seconds = float(argv[1]) if len(argv) > 1 else 60
    models = argv[2:]
    corpus = sorted(glob.glob(os.path.join(ROOT, "fuzz", "corpus", "safetensors", "*")))
    seeds = [(open(p, "rb").read(), None) for p in corpus]
    for p in models:
        data = open(p, "rb").read()
        kind = split(data)[0]["__metadata__"]["kind"]
        seeds.append((data, load_tokenizer if kind == "tokenizer" else load_transformer))
    limit = 4 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    def too_slow(signum, frame):
        raise TimeoutError("the input took over 20 s")

    signal.signal(signal.SIGALRM, too_slow)
    rng = random.Random(0)
    runs = loaded = refused = 0
    deadline = time.monotonic() + seconds
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "input.safetensors")
        while time.monotonic() < deadline:
            data, loader = seeds[rng.randrange(len(seeds))] if not models or rng.random() < 0.5 else \
                seeds[len(corpus) + rng.randrange(len(models))]
            mutated = (mutate_structure(data, rng) if loader and rng.random() < 0.8 else None) or mutate_bytes(data, rng)
            with open(path, "wb") as f:
                f.write(mutated)
            runs += 1
            signal.alarm(20)
            try:
                (loader or read_safetensors)(path)
                loaded += 1
            except ValueError:
                refused += 1
            except Exception:  # noqa: BLE001 - anything but ValueError is a finding
                crash = os.path.join(ROOT, "fuzz", f"crash-python-{runs}")
                with open(crash, "wb") as f:
                    f.write(mutated)
                with open(crash + ".txt", "w") as f:
                    f.write(traceback.format_exc())
                print(f"finding: {crash} ({(loader or read_safetensors).__name__})\n{traceback.format_exc()}")
                return 1
            finally:
                signal.alarm(0)
    print(f"fuzz_python_readers: {runs} inputs in {seconds:.0f} s ({len(corpus)} corpus seeds, {len(models)} model "
          f"files): {loaded} loaded, {refused} refused with ValueError, 0 other exceptions")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
