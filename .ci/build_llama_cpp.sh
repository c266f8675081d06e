#!/usr/bin/env bash
# Build llama.cpp's llama-completion (CPU, portable AVX2) from the llama-cpp-python sdist on PyPI, for
# the control-vector test (tests/test_llama_cpp.py). Prints the binary's path. Cached under
# ~/.cache/interp; about 3.5 min on 2 cores the first time.
set -euo pipefail
VERSION=0.3.36
ROOT="${INTERP_CACHE:-$HOME/.cache/interp}/llama.cpp-$VERSION"
BIN="$ROOT/src/vendor/llama.cpp/build/bin/llama-completion"
if [ ! -x "$BIN" ]; then
  rm -rf "$ROOT" && mkdir -p "$ROOT"
  python3 -m pip download -q --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$ROOT" >&2
  tar xzf "$ROOT/llama_cpp_python-$VERSION.tar.gz" -C "$ROOT"
  mv "$ROOT/llama_cpp_python-$VERSION" "$ROOT/src"
  SRC="$ROOT/src/vendor/llama.cpp"
  # GGML_NATIVE=OFF: -march=native enables AMX tiles that VMs often do not grant (illegal instruction)
  cmake -S "$SRC" -B "$SRC/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON >&2
  cmake --build "$SRC/build" --target llama-completion -j"$(nproc)" >&2
fi
echo "$BIN"
