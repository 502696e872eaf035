# Sourced by the scripts in this folder: makes .venv under the repo and keeps it in step with
# pyproject.toml. The stamp holds a hash of pyproject.toml, so an edited dependency list
# reinstalls on the next run and an unchanged one costs nothing.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
extras=${AISOPOD_EXTRAS:-dev}
stamp=.venv/.installed-$extras
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  rm -f "$stamp"
  if ! { .venv/bin/python -m pip install --quiet --upgrade pip &&
         .venv/bin/python -m pip install --quiet -e ".[$extras]"; }; then
    echo "error: installing the environment failed (see above)" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
fi
export PATH="$repo/.venv/bin:$PATH"
