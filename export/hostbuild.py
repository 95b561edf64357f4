"""Build the generated engine for the host and compare it with the golden model."""

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from tess_keras.export import codegen
from tess_keras.export.golden import GoldenEngine
from tess_keras.export.spec import ExportError

HOST_FLAGS = ("-std=c++17", "-g", "-Wall", "-Wextra", "-Werror", "-fno-exceptions", "-fno-rtti")
SANITIZERS = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all")
DTYPES = {1: np.uint8, 2: np.int16, 4: np.int32}


def compiler():
    for name in ("g++", "c++", "clang++"):
        path = shutil.which(name)
        if path:
            return path
    raise ExportError("no host C++ compiler found (g++); install it with: apt-get install g++")


def engine_runtime(out_dir):
    """The runtime the engine in ``out_dir`` compiles with: the export's ``runtime/`` (its
    only copy), else the checkout's firmware/runtime (an engine ``codegen.write_engine`` wrote alone)."""
    own = Path(out_dir) / "runtime"
    return own if (own / codegen.RUNTIME_HEADER).is_file() else codegen.runtime_dir()


def compile_engine(out_dir, sources, binary, flags):
    """Compile the engine in ``out_dir`` and its runtime with ``sources`` (each holding a main) into ``binary``."""
    out_dir = Path(out_dir)
    runtime = engine_runtime(out_dir)
    command = [compiler(), *flags, "-I", str(out_dir), "-I", str(runtime),
               str(out_dir / "tess_engine.cc"), *map(str, codegen.runtime_sources(runtime)), *map(str, sources),
               "-o", str(binary)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise ExportError(f"host build failed:\n{' '.join(command)}\n{result.stderr[-4000:]}")
    return Path(binary)


def host_flags(sanitize=True):
    """-O0 keeps the instrumented build fast to compile; the plain one is optimised."""
    return (*HOST_FLAGS, "-O0", *SANITIZERS) if sanitize else (*HOST_FLAGS, "-O1")


def build_host(out_dir, spec, binary=None, sanitize=True):
    """Compile the engine in ``out_dir`` with a generated harness; returns the binary path.

    Args:
        out_dir: a directory holding tess_engine.h/.cc (and, an export, the runtime
            in runtime/; without one the checkout's firmware/runtime).
        spec: the ``EngineSpec`` they were generated from.
        binary: where to write the executable (default out_dir/host_harness).
        sanitize: add AddressSanitizer and UndefinedBehaviorSanitizer.
    """
    out_dir = Path(out_dir)
    harness = codegen.write_harness(spec, out_dir)
    return compile_engine(out_dir, [harness], binary or out_dir / "host_harness", host_flags(sanitize))


def _buffer_dtype(name, bytes_):
    if bytes_ == 1 and (name.endswith(".w")):
        return np.int8
    return DTYPES[bytes_]


def _buffer_sizes(spec):
    """name -> (count, bytes) of every buffer the harness can write."""
    context = codegen.engine_context(spec)
    return {b["name"]: (b["count"], b["bytes"]) for b in context["buffers"]}


def run_host(binary, spec, inputs, labels=None, learn=False, dump=False, frames=False):
    """Run samples through the host build.

    Args:
        binary: from ``build_host``.
        spec: the ``EngineSpec``.
        inputs: int8 ``[N, *input_shape]`` or ``[N, T, *input_shape]`` when ``frames``.
        labels: int ``[N]`` (required when ``learn``).
        learn: one TESS learning step per sample.
        dump: also return the named buffers of every step/sample.

    Returns:
        dict with ``predictions`` [N], ``hashes`` [N] and, when ``dump``, ``records``:
        per sample a dict with ``steps`` (list of name -> array), ``grads`` and ``weights``.
    """
    inputs = np.asarray(inputs, np.int8)
    count = len(inputs)
    per_sample = inputs.reshape(count, -1 if frames else 1, spec.input_size)
    labels = np.full(count, -1) if labels is None else np.asarray(labels)
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.bin", Path(tmp) / "out.bin"
        with open(src, "wb") as handle:
            handle.write(np.array([count, per_sample.shape[1], int(learn), int(dump)], "<i4").tobytes())
            for label, sample in zip(labels, per_sample):
                handle.write(np.array([label], "<i4").tobytes())
                handle.write(sample.tobytes())
        result = subprocess.run([str(binary), str(src), str(dst)], capture_output=True, text=True)
        if result.returncode != 0:
            raise ExportError(f"host engine failed (exit {result.returncode}):\n{result.stderr[-4000:]}")
        raw = dst.read_bytes()
    step_names, grad_names, weight_names = codegen.buffer_names(spec)
    sizes = _buffer_sizes(spec)
    offset = 0

    def take(names):
        nonlocal offset
        out = {}
        for name in names:
            n, b = sizes[name]
            out[name] = np.frombuffer(raw, _buffer_dtype(name, b), n, offset).copy()
            offset += n * b
        return out

    predictions, hashes, records = [], [], []
    for _ in range(count):
        record = {"steps": [], "grads": {}, "weights": {}}
        if dump:
            record["steps"] = [take(step_names) for _ in range(spec.time_steps)]
        if learn and dump:
            record["grads"] = take(grad_names)
            record["weights"] = take(weight_names)
        predictions.append(int(np.frombuffer(raw, "<i4", 1, offset)[0]))
        hashes.append(int(np.frombuffer(raw, "<u4", 1, offset + 4)[0]))
        offset += 8
        records.append(record)
    if offset != len(raw):
        raise ExportError(f"host engine output has {len(raw)} bytes, expected {offset}")
    out = {"predictions": np.array(predictions), "hashes": np.array(hashes, np.uint64)}
    if dump:
        out["records"] = records
    return out


def golden_records(spec, inputs, labels=None, learn=False, frames=False):
    """The same records as ``run_host(..., dump=True)`` from the golden model."""
    engine = GoldenEngine(spec)
    inputs = np.asarray(inputs, np.int8)
    labels = np.full(len(inputs), -1) if labels is None else np.asarray(labels)
    predictions, hashes, records = [], [], []
    for label, sample in zip(labels, inputs):
        engine.reset()
        record = {"steps": [], "grads": {}, "weights": {}}
        for t in range(spec.time_steps):
            x = sample[t % len(sample)] if frames else sample
            engine.step(x[None], np.array([label]) if learn else None)
            record["steps"].append({k: v.ravel() for k, v in engine.step_buffers().items()})
        if learn:
            record["grads"] = {k: v.ravel() for k, v in engine.grad_buffers().items()}
            engine.apply_update()
            record["weights"] = {k: v.ravel() for k, v in engine.weight_buffers().items()}
        predictions.append(int(engine.predict()[0]))
        hashes.append(engine.state_hash())
        records.append(record)
    return {"predictions": np.array(predictions), "hashes": np.array(hashes, np.uint64), "records": records}


def first_mismatch(golden, host):
    """None when both runs agree bit for bit, else a description of the first difference."""
    for index, (g, h) in enumerate(zip(golden["records"], host["records"])):
        for t, (gs, hs) in enumerate(zip(g["steps"], h["steps"])):
            for name in gs:
                if not np.array_equal(gs[name].astype(np.int64), hs[name].astype(np.int64)):
                    diff = np.flatnonzero(gs[name].astype(np.int64) != hs[name].astype(np.int64))
                    return f"sample {index} step {t} buffer {name}: {len(diff)} differ, first at {diff[0]}: golden {gs[name][diff[0]]} host {hs[name][diff[0]]}"
        for part in ("grads", "weights"):
            for name in g[part]:
                if not np.array_equal(g[part][name].astype(np.int64), h[part][name].astype(np.int64)):
                    diff = np.flatnonzero(g[part][name].astype(np.int64) != h[part][name].astype(np.int64))
                    return f"sample {index} {part} {name}: {len(diff)} differ, first at {diff[0]}: golden {g[part][name][diff[0]]} host {h[part][name][diff[0]]}"
    if not np.array_equal(golden["predictions"], host["predictions"]):
        return "predictions differ"
    if not np.array_equal(golden["hashes"], host["hashes"]):
        return "state hashes differ"
    return None
