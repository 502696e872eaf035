"""One benchmark step in its own process: ``python -m benchmarks.child '<json>'``.

The JSON names a module of this package (``sys_aisopod``, ``sys_raw``, ``sys_openai``, …), a
function in it and its keyword arguments. Only that module is imported, so the systems never
share a process; the function's result is printed as one ``RESULT {json}`` line, together with
the module's ``versions()``. The parent measures the process's peak RSS when it is reaped.
"""

from __future__ import annotations

import importlib
import json
import sys
import warnings


def main() -> None:
    spec = json.loads(sys.argv[1])
    warnings.simplefilter("ignore")  # peers' deprecation notices would only add noise
    module = importlib.import_module(f"benchmarks.{spec['module']}")
    result = getattr(module, spec["func"])(**spec.get("kwargs", {}))
    result = dict(result or {})
    result["versions"] = module.versions()
    sys.stdout.write("RESULT " + json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
