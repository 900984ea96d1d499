"""Puts pytest's own processes in the suite's JAX environment (tests/suite_env.py) before any test
module imports jax: jax reads these variables at import and when its CPU backend starts."""

import os

import pytest

import suite_env

os.environ.update(suite_env.child_env(os.environ))


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups into the test ids
def pytest_collection_modifyitems(items):
  """Keeps each module's tests that share a module-scoped fixture on one xdist worker
  (``--dist loadgroup``, pytest.ini): the fixture (a child run, a trained checkpoint) is then built
  once, not once per worker. Other tests are balanced one by one."""
  for item in items:
    defs = getattr(item, "_fixtureinfo", None)
    defs = defs.name2fixturedefs.values() if defs else ()
    if any(d[-1].scope == "module" for d in defs):
      item.add_marker(pytest.mark.xdist_group(item.module.__name__))
