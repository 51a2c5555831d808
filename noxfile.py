"""Sessions a newcomer can guess: tests, tests_speedups, lint, typecheck, docs, bench, dlt,
dagster."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.default_venv_backend = "venv"

PYTHON = "3.11"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """Run the test suite with branch coverage."""
    session.install("-e", ".[test]")
    session.run(
        "python",
        "-m",
        "pytest",
        "--cov=r9s_async",
        "--cov-report=term-missing:skip-covered",
        *session.posargs,
    )


@nox.session(python=PYTHON)
def tests_speedups(session: nox.Session) -> None:
    """The test suite with the speedups extra (msgspec): both decoders, compared."""
    session.install("-e", ".[test,speedups]")
    # Fails here, not silently in pure mode, if msgspec did not install or import.
    session.run(
        "python",
        "-c",
        "from r9s_async._speedups import speedups_enabled; "
        "assert speedups_enabled(), 'msgspec is not used'",
    )
    session.run("python", "-m", "pytest", "-p", "no:cacheprovider", "--no-cov", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package, the tests and this file."""
    session.install("-e", ".[dlt-test,speedups]", "mypy", "nox")
    session.run("mypy", "--strict")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the docs (HTML) and run their examples as doctests; any warning fails."""
    session.install("-e", ".[docs]")
    for builder in ("html", "doctest"):
        session.run(
            "sphinx-build",
            "-E",  # read every page again, so no warning hides in a cached environment
            "-W",
            "--keep-going",
            "-n",
            "-b",
            builder,
            "docs",
            f"docs/_build/{builder}",
            *session.posargs,
        )


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """The benchmark suite against its peers (`nox -s bench -- --quick` for a short run).

    The speedups extra is installed; the parse rows run with and without it in one process.
    """
    session.install(".[speedups]", "requests")
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session(python=PYTHON)
def dlt(session: nox.Session) -> None:
    """The dlt source on DuckDB and a PostgreSQL server the tests start (tests/integration)."""
    session.install("-e", ".[dlt-test]")
    _integration_tests(session, "tests/integration", {"R9S_INTEGRATION": "1"})


@nox.session(python=PYTHON)
def dagster(session: nox.Session) -> None:
    """The Dagster recipe of docs/examples: three daily partitions, materialized twice."""
    session.install("-e", ".[dlt-test]", "dagster>=1.8")
    env = {"R9S_INTEGRATION": "1", "R9S_DAGSTER": "1"}
    _integration_tests(session, "tests/integration/test_dagster_recipe.py", env)


def _integration_tests(session: nox.Session, path: str, env: dict[str, str]) -> None:
    # Exit code 5 (nothing collected) fails the session like any other.
    session.run(
        "python",
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "--no-cov",
        path,
        *session.posargs,
        env=env,
    )
