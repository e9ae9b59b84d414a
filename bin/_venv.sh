# Sourced by bin/up and bin/test: a project virtualenv with the project installed, made on
# first use and refreshed when pyproject.toml changes. Needs only Python 3.11+.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
  echo "doc_runs needs Python 3.11 or newer; $PYTHON is $("$PYTHON" --version 2>&1)" >&2
  exit 1
}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.doc_runs-installed
wanted=$( { sha256sum pyproject.toml; echo compat; } | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "Installing doc_runs and its dependencies into .venv (once, or when pyproject.toml changes)..." >&2
  # The build's own chatter (setuptools notes on editable installs) is shown only on failure.
  # compat: the checkout goes on sys.path as a path, where the `doc_runs` package beats the
  # checkout folder itself (also named doc_runs) seen from its parent as a namespace package;
  # setuptools' default import hook comes after that folder, so a code server started from the
  # parent folder (python -m puts the current folder first) imported the folder instead.
  if ! log=$( { .venv/bin/python -m pip install --quiet --upgrade pip &&
                .venv/bin/python -m pip install --quiet -e ".[dev]" \
                  --config-settings editable_mode=compat; } 2>&1 ); then
    echo "$log" >&2
    echo "installing into .venv failed (above)" >&2
    exit 1
  fi
  echo "$wanted" > "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"
